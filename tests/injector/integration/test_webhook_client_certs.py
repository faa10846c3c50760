"""`--webhook-client-ca-file`: the webhook port refuses, at the TLS handshake, every caller
without a client certificate signed by that CA; the broker port never asks for one.

Real uvicorn over TLS on loopback, real certificates; the admission check records its calls,
so a refused caller is shown never to have reached it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.client_certs import issue_client_cert
from support.webhook_harness import Ports, RecordingCheck, admission_review, pod, write_pair

from injector.operations.certs import KeyPair, generate_ca, issue_serving_cert
from injector.serving.app import create_apps
from injector.serving.server import Listener, serving_in_thread
from injector.serving.tls import ReloadingTLS
from injector.webhook.settings import WebhookSettings


def client_context(
    server_ca: KeyPair, tmp_path: Path, pair: KeyPair | None, *, tls12: bool = False
) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=server_ca.cert_pem.decode())
    if tls12:  # the server's verdict arrives inside the handshake itself
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if pair is not None:
        cert, key = tmp_path / f"client-{id(pair)}.crt", tmp_path / f"client-{id(pair)}.key"
        cert.write_bytes(pair.cert_pem)
        key.write_bytes(pair.key_pem)
        context.load_cert_chain(cert, key)
    return context


def handshake(url: str, context: ssl.SSLContext) -> None:
    host, port = url.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.do_handshake()


@pytest.fixture
def server_ca() -> KeyPair:
    return generate_ca("serving-ca")


@pytest.fixture
def client_ca() -> KeyPair:
    return generate_ca("webhook-client-ca")


@pytest.fixture
def check() -> RecordingCheck:
    return RecordingCheck()


@pytest.fixture
def ports(
    tmp_path: Path, server_ca: KeyPair, client_ca: KeyPair, check: RecordingCheck
) -> Iterator[Ports]:
    write_pair(tmp_path, issue_serving_cert(server_ca, ["localhost"], ["127.0.0.1"]))
    (tmp_path / "client-ca.crt").write_bytes(client_ca.cert_pem)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    settings = WebhookSettings(
        image="sakura-secrets-injector:test",
        broker_url="https://sakura-secrets-injector.sakura-secrets.svc",
        broker_ca_pem=server_ca.cert_pem.decode(),
        default_vault_id="123456789012",
    )
    apps = create_apps(settings, check=check)
    webhook_tls = ReloadingTLS(cert, key, client_ca_file=tmp_path / "client-ca.crt")
    listeners = [
        Listener("webhook", apps.webhook, webhook_tls, 0),
        Listener("broker", apps.broker, ReloadingTLS(cert, key), 0),
    ]
    with serving_in_thread(listeners) as [webhook, broker]:
        yield Ports(webhook, broker)


def test_a_caller_without_a_client_certificate_is_refused_at_the_handshake(
    ports: Ports, server_ca: KeyPair, tmp_path: Path, check: RecordingCheck
) -> None:
    with pytest.raises(ssl.SSLError):
        handshake(ports.webhook, client_context(server_ca, tmp_path, None, tls12=True))
    # TLS 1.3 (what httpx negotiates): the refusal arrives with the first read
    with httpx.Client(verify=client_context(server_ca, tmp_path, None), timeout=10) as client:
        with pytest.raises(httpx.TransportError):
            client.post(f"{ports.webhook}/mutate", content=admission_review(pod()))
    assert check.calls == []  # no review was read, no check ran


def test_the_api_servers_certificate_gets_its_answer(
    ports: Ports, server_ca: KeyPair, client_ca: KeyPair, tmp_path: Path, check: RecordingCheck
) -> None:
    pair = issue_client_cert(client_ca, "kube-apiserver-webhook-client")
    handshake(ports.webhook, client_context(server_ca, tmp_path, pair, tls12=True))
    with httpx.Client(verify=client_context(server_ca, tmp_path, pair), timeout=10) as client:
        response = client.post(
            f"{ports.webhook}/mutate", content=admission_review(pod(), uid="uid-mtls")
        )
    assert response.status_code == 200
    assert response.json()["response"]["uid"] == "uid-mtls"
    assert response.json()["response"]["allowed"] is True
    assert len(check.calls) == 1


def test_a_certificate_from_another_ca_is_refused(
    ports: Ports, server_ca: KeyPair, tmp_path: Path, check: RecordingCheck
) -> None:
    stranger = issue_client_cert(generate_ca("webhook-client-ca"), "kube-apiserver-webhook-client")
    with pytest.raises(ssl.SSLError):
        handshake(ports.webhook, client_context(server_ca, tmp_path, stranger, tls12=True))
    with httpx.Client(verify=client_context(server_ca, tmp_path, stranger), timeout=10) as client:
        with pytest.raises(httpx.TransportError):
            client.post(f"{ports.webhook}/mutate", content=admission_review(pod()))
    assert check.calls == []


def test_the_broker_port_never_asks_for_a_client_certificate(
    ports: Ports, server_ca: KeyPair, tmp_path: Path
) -> None:
    handshake(ports.broker, client_context(server_ca, tmp_path, None, tls12=True))
    with httpx.Client(verify=client_context(server_ca, tmp_path, None), timeout=10) as client:
        assert client.get(f"{ports.broker}/healthz").json() == {"status": "ok"}
        assert client.get(f"{ports.broker}/readyz").status_code == 200
