"""Slow and numerous clients: header and body deadlines, and connections per port.

A real injector (both ports) on uvicorn over TLS with small deadlines. Trickling clients send
a byte more often than the deadline, so only a deadline on the whole headers (or body) closes
them, never an idle timeout. No upper bound on wall-clock time: waits are generous, and what
is asserted is that each slow connection is closed by the server and a normal review is
answered while they trickle.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from webhook_harness import Ports, RecordingCheck, admission_review, pod, write_pair

from injector.app import create_apps
from injector.certs import KeyPair, generate_ca, issue_serving_cert
from injector.connections import ConnectionLimits
from injector.server import Listener, serving_in_thread
from injector.settings import WebhookSettings
from injector.tls import ReloadingTLS

GENEROUS = 60.0
"""Seconds a slow connection may stay open before the test calls it never closed."""
TRICKLE = 0.05
"""Seconds between two bytes of a trickling client: far less than any deadline below."""


@pytest.fixture
def ca() -> KeyPair:
    return generate_ca()


@contextlib.contextmanager
def injector(tmp_path: Path, ca: KeyPair, limits: ConnectionLimits) -> Iterator[Ports]:
    write_pair(tmp_path, issue_serving_cert(ca, ["localhost"], ["127.0.0.1"]))
    tls = ReloadingTLS(tmp_path / "tls.crt", tmp_path / "tls.key")
    settings = WebhookSettings(
        image="sakura-secrets-injector:test",
        broker_url="https://sakura-secrets-injector.sakura-secrets.svc",
        broker_ca_pem=ca.cert_pem.decode(),
        default_vault_id="123456789012",
    )
    apps = create_apps(settings, check=RecordingCheck())
    listeners = [Listener("webhook", apps.webhook, tls, 0), Listener("broker", apps.broker, tls, 0)]
    with serving_in_thread(listeners, limits=limits) as [webhook, broker]:
        yield Ports(webhook, broker)


def tls_connection(url: str, ca: KeyPair) -> ssl.SSLSocket:
    """A connection whose handshake is complete (TLS 1.2: the server has finished its side)."""
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    host, port = url.removeprefix("https://").split(":")
    raw = socket.create_connection((host, int(port)), timeout=10)
    return context.wrap_socket(raw, server_hostname=host)


def closed_by_server(sock: ssl.SSLSocket, payload: bytes, every: float) -> bool:
    """Send `payload` a byte per `every` seconds (then nothing); True once the server closes."""
    sock.settimeout(every)
    deadline = time.monotonic() + GENEROUS
    sent = 0
    while time.monotonic() < deadline:
        try:
            if sent < len(payload):
                sock.sendall(payload[sent : sent + 1])
                sent += 1
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:  # reset, broken pipe, TLS alert: closed all the same
            return True
    return False


def trickle_all(
    url: str, ca: KeyPair, payloads: list[bytes]
) -> tuple[list[threading.Thread], list[bool]]:
    results: list[bool] = [False] * len(payloads)

    def run(index: int, payload: bytes) -> None:
        with tls_connection(url, ca) as sock:
            results[index] = closed_by_server(sock, payload, TRICKLE)

    threads = [
        threading.Thread(target=run, args=(i, p), daemon=True) for i, p in enumerate(payloads)
    ]
    for thread in threads:
        thread.start()
    return threads, results


HEADERS_NEVER_DONE = b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 4000
BODY_NEVER_DONE = (
    b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100000\r\n\r\n" + b'{"apiVersion": "' + b"a" * 4000
)


def test_trickling_connections_are_closed_and_a_normal_review_is_answered(
    tmp_path: Path, ca: KeyPair
) -> None:
    limits = ConnectionLimits(header_timeout=1.0, body_timeout=1.0, max_connections=64)
    with injector(tmp_path, ca, limits) as ports:
        payloads = [HEADERS_NEVER_DONE] * 6 + [BODY_NEVER_DONE] * 6 + [b""] * 4
        threads, closed = trickle_all(ports.webhook, ca, payloads)
        threads += trickle_all(ports.broker, ca, [HEADERS_NEVER_DONE, BODY_NEVER_DONE])[0]
        context = ssl.create_default_context(cadata=ca.cert_pem.decode())
        with httpx.Client(verify=context, timeout=30) as client:
            answer = client.post(
                f"{ports.webhook}/mutate", content=admission_review(pod(), uid="normal")
            )
            health = client.get(f"{ports.broker}/healthz")
        for thread in threads:
            thread.join(GENEROUS + 10)

    assert answer.status_code == 200
    assert answer.json()["response"]["uid"] == "normal"
    assert health.json() == {"status": "ok"}
    assert closed == [True] * len(payloads), "some slow connections were never closed"


def test_a_keep_alive_connection_cannot_trickle_its_next_request(
    tmp_path: Path, ca: KeyPair
) -> None:
    """After one answered request the deadline starts again for the next request's headers."""
    limits = ConnectionLimits(header_timeout=1.0, body_timeout=1.0, keep_alive=300)
    review = admission_review(pod(), uid="first")
    request = (
        b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(review)}\r\n\r\n".encode()
        + review
    )
    with injector(tmp_path, ca, limits) as ports, tls_connection(ports.webhook, ca) as sock:
        sock.sendall(request)
        sock.settimeout(30)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        assert closed_by_server(sock, HEADERS_NEVER_DONE, TRICKLE)


def test_a_port_holding_its_bound_closes_new_connections_and_the_other_port_answers(
    tmp_path: Path, ca: KeyPair
) -> None:
    limits = ConnectionLimits(header_timeout=300, body_timeout=300, max_connections=3)
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    with injector(tmp_path, ca, limits) as ports:
        held = [tls_connection(ports.webhook, ca) for _ in range(3)]
        with tls_connection(ports.webhook, ca) as extra:
            assert closed_by_server(extra, b"", 1.0)  # nothing sent: closed because of the bound
        with httpx.Client(verify=context, timeout=30) as client:
            assert client.get(f"{ports.broker}/healthz").status_code == 200  # its own bound
        held.pop().close()
        # the freed slot takes a review again (the server notices the close shortly)
        answered = None
        deadline = time.monotonic() + GENEROUS
        while answered is None and time.monotonic() < deadline:
            with httpx.Client(verify=context, timeout=30) as client:
                try:
                    answered = client.post(
                        f"{ports.webhook}/mutate", content=admission_review(pod(), uid="after")
                    )
                except httpx.TransportError:
                    time.sleep(0.1)
        for sock in held:
            sock.close()

    assert answered is not None and answered.json()["response"]["uid"] == "after"
