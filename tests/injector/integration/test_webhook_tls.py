"""The webhook over real TLS on loopback: real AdmissionReview bodies, patches applied with
jsonpatch, health and readiness on the broker's port, /mutate only on the webhook's, and a
certificate replaced on disk while the server runs."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import kubernetes_validate
import pytest
from cryptography import x509
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from support.webhook_harness import (
    Ports,
    RecordingCheck,
    admission_review,
    pod,
    serving,
    write_pair,
)

from contract import Plan
from injector.operations.certs import KeyPair, generate_ca, issue_serving_cert
from injector.serving.app import BrokerCaFile, create_apps
from injector.serving.tls import ReloadingTLS
from injector.webhook.settings import WebhookSettings

VAULT = "123456789012"


def serial(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


def served_serial(url: str) -> int:
    """The serial of the certificate the server presents on a fresh handshake (no SNI)."""
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def client_for(ca: KeyPair) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cadata=ca.cert_pem.decode()), timeout=10)


@pytest.fixture
def ca() -> KeyPair:
    return generate_ca()


@pytest.fixture
def tls_dir(tmp_path: Path, ca: KeyPair) -> Path:
    write_pair(tmp_path, issue_serving_cert(ca, ["localhost"], ["127.0.0.1"]))
    return tmp_path


@pytest.fixture
def settings(ca: KeyPair) -> WebhookSettings:
    return WebhookSettings(
        image="sakura-secrets-injector:test",
        broker_url="https://sakura-secrets-injector.sakura-secrets.svc",
        broker_ca_pem=ca.cert_pem.decode(),
        default_vault_id=VAULT,
    )


@pytest.fixture
def check() -> RecordingCheck:
    return RecordingCheck(denied=frozenset({"forbidden-secret"}))


@pytest.fixture
def tls(tls_dir: Path) -> ReloadingTLS:
    return ReloadingTLS(tls_dir / "tls.crt", tls_dir / "tls.key", check_interval=0.05)


@pytest.fixture
def server(settings: WebhookSettings, check: RecordingCheck, tls: ReloadingTLS) -> Iterator[Ports]:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"route": "extra"})

    apps = create_apps(
        settings,
        check=check,
        routes=[Route("/v1/secrets", echo, methods=["POST"])],
        readiness=[tls.readiness],
        max_body_bytes=256 * 1024,
    )
    with serving(apps, tls) as ports:
        yield ports


def mutate(client: httpx.Client, url: str, body: bytes) -> dict[str, Any]:
    response = client.post(
        f"{url}/mutate", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    return answer["response"]  # type: ignore[no-any-return]


def test_mutate_returns_a_patch_that_injects_the_pod(
    server: Ports, ca: KeyPair, check: RecordingCheck
) -> None:
    original = pod()
    with client_for(ca) as client:
        response = mutate(client, server.webhook, admission_review(original, uid="uid-1"))

    assert response["uid"] == "uid-1"
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    mutated = jsonpatch.apply_patch(original, patch)

    kubernetes_validate.validate(mutated, "1.25.0", strict=True)
    assert mutated["metadata"]["annotations"]["sakura-secrets.io/status"] == "injected"
    init = mutated["spec"]["initContainers"][0]
    assert init["name"] == "sakura-secrets-init"
    assert init["image"] == "sakura-secrets-injector:test"
    env = {e["name"]: e.get("value") for e in init["env"]}
    plan = Plan.from_json(env["SAKURA_SECRETS_PLAN"])
    assert plan.vault_id == VAULT
    assert {ref.name for ref in plan.secrets()} == {"db-password", "api-keys"}
    assert env["SAKURA_SECRETS_BROKER_CA"] == ca.cert_pem.decode()
    volumes = {v["name"]: v for v in mutated["spec"]["volumes"]}
    assert volumes["sakura-secrets"]["emptyDir"]["medium"] == "Memory"
    for container in mutated["spec"]["containers"]:
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["sakura-secrets"]["readOnly"] is True
        assert "sakura-secrets-token" not in mounts
    # the check saw the pod's identity and its plan
    assert [(ns, sa) for ns, sa, _ in check.calls] == [("shop", "shop-api")]


def test_second_pass_over_an_injected_pod_changes_nothing(server: Ports, ca: KeyPair) -> None:
    original = pod()
    with client_for(ca) as client:
        first = mutate(client, server.webhook, admission_review(original))
        mutated = jsonpatch.apply_patch(original, json.loads(base64.b64decode(first["patch"])))
        second = mutate(client, server.webhook, admission_review(mutated, uid="again"))

    assert second["uid"] == "again"
    assert second["allowed"] is True
    if "patch" in second:
        assert json.loads(base64.b64decode(second["patch"])) == []


def test_denial_from_the_check_reaches_the_api_server(server: Ports, ca: KeyPair) -> None:
    denied_pod = pod({"sakura-secrets.io/secret-x": "forbidden-secret"})
    with client_for(ca) as client:
        response = mutate(client, server.webhook, admission_review(denied_pod, uid="uid-deny"))

    assert response["uid"] == "uid-deny"
    assert response["allowed"] is False
    assert "patch" not in response
    assert response["status"]["code"] == 403
    assert "forbidden-secret" in response["status"]["message"]


def test_invalid_annotation_is_denied_with_its_name(server: Ports, ca: KeyPair) -> None:
    bad = pod({"sakura-secrets.io/secret-../etc": "db"})
    with client_for(ca) as client:
        response = mutate(client, server.webhook, admission_review(bad))

    assert response["allowed"] is False
    assert "sakura-secrets.io/secret-../etc" in response["status"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json at all",
        b"[1, 2, 3]",
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}',
    ],
    ids=["empty", "not-json", "array", "no-request", "uid-not-string"],
)
def test_malformed_review_is_a_400_with_a_json_error(
    server: Ports, ca: KeyPair, body: bytes
) -> None:
    with client_for(ca) as client:
        response = client.post(f"{server.webhook}/mutate", content=body)

    assert response.status_code == 400
    assert response.json()["error"]


def test_oversized_body_is_refused_before_it_is_parsed(server: Ports, ca: KeyPair) -> None:
    huge = pod({"sakura-secrets.io/padding": "x" * (300 * 1024)})
    with client_for(ca) as client:
        response = client.post(f"{server.webhook}/mutate", content=admission_review(huge))

    assert response.status_code == 413
    assert "larger than" in response.json()["error"]


def test_unexpected_failure_is_a_denial_not_a_500(
    settings: WebhookSettings, tls: ReloadingTLS, ca: KeyPair
) -> None:
    apps = create_apps(settings, check=RecordingCheck(explode=True))
    with serving(apps, tls) as url, client_for(ca) as client:
        response = client.post(
            f"{url.webhook}/mutate", content=admission_review(pod(), uid="uid-boom")
        )

    assert response.status_code == 200
    answer = response.json()["response"]
    assert answer["uid"] == "uid-boom"
    assert answer["allowed"] is False
    assert "kaboom" not in json.dumps(answer)


def test_health_readiness_and_extra_routes(server: Ports, ca: KeyPair) -> None:
    with client_for(ca) as client:
        assert client.get(f"{server.broker}/healthz").json() == {"status": "ok"}
        ready = client.get(f"{server.broker}/readyz")
        extra = client.post(f"{server.broker}/v1/secrets", json={})
        wrong_method = client.get(f"{server.webhook}/mutate")

    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    assert extra.json() == {"route": "extra"}
    assert wrong_method.status_code == 405


def test_each_port_serves_only_its_own_paths(server: Ports, ca: KeyPair) -> None:
    """/mutate only on the webhook's port (it may require client certificates); the broker,
    probes and metrics only on the broker's (the kubelet and Prometheus have no client cert)."""
    with client_for(ca) as client:
        on_broker = client.post(f"{server.broker}/mutate", content=admission_review(pod()))
        on_webhook = [
            client.get(f"{server.webhook}/healthz"),
            client.get(f"{server.webhook}/readyz"),
            client.get(f"{server.webhook}/metrics"),
            client.post(f"{server.webhook}/v1/secrets", json={}),
        ]
        assert mutate(client, server.webhook, admission_review(pod()))["allowed"] is True

    assert on_broker.status_code == 404
    assert [response.status_code for response in on_webhook] == [404, 404, 404, 404]


def test_readyz_reports_every_failing_check(
    settings: WebhookSettings, tls: ReloadingTLS, ca: KeyPair
) -> None:
    down = ["sakura: unreachable"]

    async def sakura_down() -> str | None:
        return down[0] if down else None

    apps = create_apps(
        settings,
        check=RecordingCheck(),
        readiness=[tls.readiness, sakura_down, lambda: "kubernetes: no token"],
    )
    with serving(apps, tls) as url, client_for(ca) as client:
        before = client.get(f"{url.broker}/metrics").text
        ready = client.get(f"{url.broker}/readyz")
        healthy = client.get(f"{url.broker}/healthz")
        not_ready = client.get(f"{url.broker}/metrics").text

    assert ready.status_code == 503
    assert ready.json()["reasons"] == ["sakura: unreachable", "kubernetes: no token"]
    assert healthy.status_code == 200
    # what the alert on no ready replica reads: the last /readyz answer (none yet: 0)
    assert "\nsakura_secrets_ready 0.0\n" in before
    assert "\nsakura_secrets_ready 0.0\n" in not_ready


def test_the_ready_gauge_follows_the_last_readiness_answer(
    settings: WebhookSettings, tls: ReloadingTLS, ca: KeyPair
) -> None:
    problems: list[str | None] = [None]
    apps = create_apps(settings, check=RecordingCheck(), readiness=[lambda: problems[0]])
    with serving(apps, tls) as url, client_for(ca) as client:
        answers = []
        for problem in (None, "sakura: unreachable", None):
            problems[0] = problem
            status = client.get(f"{url.broker}/readyz").status_code
            scrape = client.get(f"{url.broker}/metrics").text
            answers.append((status, "\nsakura_secrets_ready 1.0\n" in scrape))
    assert answers == [(200, True), (503, False), (200, True)]


def test_renewed_certificate_is_served_without_restart(
    server: Ports, ca: KeyPair, tls_dir: Path, tls: ReloadingTLS
) -> None:
    first = served_serial(server.webhook)
    assert first == serial((tls_dir / "tls.crt").read_bytes())

    # a renewal from a new CA (rotation): both files replaced while the server keeps running
    new_ca = generate_ca("rotated-ca")
    renewed = issue_serving_cert(new_ca, ["localhost"], ["127.0.0.1"])
    write_pair(tls_dir, renewed)

    deadline = time.monotonic() + 5
    while served_serial(server.webhook) == first:
        assert time.monotonic() < deadline, "the renewed certificate was not picked up"
        time.sleep(0.05)
    assert served_serial(server.webhook) == serial(renewed.cert_pem)
    assert tls.loaded is not None and tls.loaded.serial_number == serial(renewed.cert_pem)

    # clients that trust only the new CA now get a verified connection to the same server
    with client_for(new_ca) as client:
        assert client.get(f"{server.broker}/readyz").status_code == 200
        answer = mutate(client, server.webhook, admission_review(pod()))
    assert answer["allowed"] is True
    with client_for(ca) as old_client, pytest.raises(httpx.ConnectError):
        old_client.get(f"{server.broker}/healthz")


def test_half_written_renewal_keeps_the_previous_certificate(
    server: Ports, ca: KeyPair, tls_dir: Path
) -> None:
    first = served_serial(server.webhook)
    renewed = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    staging = tls_dir / ".tls.crt.new"
    staging.write_bytes(renewed.cert_pem)
    os.replace(staging, tls_dir / "tls.crt")  # the key is not there yet

    time.sleep(0.2)
    assert served_serial(server.webhook) == first
    with client_for(ca) as client:
        assert client.get(f"{server.broker}/readyz").status_code == 200

    write_pair(tls_dir, renewed)
    deadline = time.monotonic() + 5
    while served_serial(server.webhook) != serial(renewed.cert_pem):
        assert time.monotonic() < deadline, "the completed renewal was not picked up"
        time.sleep(0.05)


def test_server_starts_before_its_certificate_exists(
    tmp_path: Path, settings: WebhookSettings, ca: KeyPair
) -> None:
    """The Secret volume may be filled after the container starts (first install)."""
    tls = ReloadingTLS(tmp_path / "tls.crt", tmp_path / "tls.key", check_interval=0.05)
    reason = tls.readiness()
    assert reason is not None and "tls.crt" in reason
    apps = create_apps(settings, check=RecordingCheck(), readiness=[tls.readiness])
    with serving(apps, tls) as url, client_for(ca) as client:
        with pytest.raises(httpx.ConnectError):
            client.get(f"{url.broker}/healthz")
        write_pair(tmp_path, issue_serving_cert(ca, ["localhost"], ["127.0.0.1"]))
        time.sleep(0.1)
        assert client.get(f"{url.broker}/readyz").json() == {"status": "ready"}


def test_pods_admitted_after_a_ca_rotation_trust_the_new_ca(
    settings: WebhookSettings, tls: ReloadingTLS, ca: KeyPair, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.crt"
    bundle.write_bytes(ca.cert_pem)
    apps = create_apps(settings, check=RecordingCheck(), broker_ca=BrokerCaFile(bundle))
    new_ca = generate_ca("rotated-ca")
    with serving(apps, tls) as url, client_for(ca) as client:
        before = mutate(client, url.webhook, admission_review(pod()))
        staging = tmp_path / ".ca.crt.new"
        staging.write_bytes(new_ca.cert_pem + ca.cert_pem)
        os.replace(staging, bundle)
        after = mutate(client, url.webhook, admission_review(pod()))

    def broker_ca(response: dict[str, Any]) -> str:
        mutated = jsonpatch.apply_patch(pod(), json.loads(base64.b64decode(response["patch"])))
        env = mutated["spec"]["initContainers"][0]["env"]
        return next(e["value"] for e in env if e["name"] == "SAKURA_SECRETS_BROKER_CA")  # type: ignore[no-any-return]

    assert broker_ca(before) == ca.cert_pem.decode()
    assert broker_ca(after) == (new_ca.cert_pem + ca.cert_pem).decode()


def test_the_refresh_containers_shape_follows_the_native_sidecars_answer(
    settings: WebhookSettings, tls: ReloadingTLS, ca: KeyPair, tmp_path: Path
) -> None:
    """`serve --native-sidecars=auto` hands the app its answer, asked on each review; the CA
    file is still read alongside it."""
    bundle = tmp_path / "ca.crt"
    bundle.write_bytes(ca.cert_pem)
    answer = [False]
    apps = create_apps(
        settings,
        check=RecordingCheck(),
        broker_ca=BrokerCaFile(bundle),
        native_sidecars=lambda: answer[0],
    )
    refreshing = pod({"sakura-secrets.io/refresh-interval": "30s"})
    new_ca = generate_ca("rotated-ca")

    def shape(response: dict[str, Any]) -> tuple[list[str], list[str], str]:
        patch = json.loads(base64.b64decode(response["patch"]))
        spec = jsonpatch.apply_patch(refreshing, patch)["spec"]
        env = spec["initContainers"][0]["env"]
        return (
            [c["name"] for c in spec["initContainers"]],
            [c["name"] for c in spec["containers"]],
            next(e["value"] for e in env if e["name"] == "SAKURA_SECRETS_BROKER_CA"),
        )

    with serving(apps, tls) as url, client_for(ca) as client:
        plain = shape(mutate(client, url.webhook, admission_review(refreshing)))
        answer[0] = True
        native = shape(mutate(client, url.webhook, admission_review(refreshing)))
        os.replace(bundle, tmp_path / "old.crt")
        (tmp_path / "ca.crt").write_bytes(new_ca.cert_pem)
        rotated = shape(mutate(client, url.webhook, admission_review(refreshing)))
        answer[0] = False
        back = shape(mutate(client, url.webhook, admission_review(refreshing)))

    init, refresh, old_ca = "sakura-secrets-init", "sakura-secrets-refresh", ca.cert_pem.decode()
    assert plain == ([init], ["app", "proxy", refresh], old_ca)
    assert native == ([init, refresh], ["app", "proxy"], old_ca)
    assert rotated == ([init, refresh], ["app", "proxy"], new_ca.cert_pem.decode())
    assert back == ([init], ["app", "proxy", refresh], new_ca.cert_pem.decode())


def test_metrics_count_reviews_by_outcome_reason_and_namespace_and_name_no_secret(
    server: Ports, ca: KeyPair
) -> None:
    denied_pod = pod({"sakura-secrets.io/secret-x": "forbidden-secret"})
    with client_for(ca) as client:
        mutate(client, server.webhook, admission_review(pod()))
        mutate(client, server.webhook, admission_review(denied_pod))
        assert client.post(f"{server.webhook}/mutate", content=b"{").status_code == 400
        scrape = client.get(f"{server.broker}/metrics")

    assert scrape.status_code == 200
    counts = {
        line.split("{", 1)[1].split("}", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in scrape.text.splitlines()
        if line.startswith("sakura_secrets_admission_reviews_total{")
    }
    assert counts == {
        'namespace="shop",outcome="injected",reason="injected"': 1.0,
        'namespace="shop",outcome="denied",reason="unauthorized"': 1.0,
        'namespace="",outcome="malformed",reason="malformed"': 1.0,
    }
    assert "sakura_secrets_admission_seconds_count 3.0" in scrape.text
    assert "sakura_secrets_admission_queue_waiting 0.0" in scrape.text
    # the namespace is a label (namespaces are not secret); no pod, secret or vault is
    for name in ("forbidden-secret", "db-password", "api-keys", '"web"', "110000000001"):
        assert name not in scrape.text


def test_env_variables_follow_the_env_files_answer(
    settings: WebhookSettings, tls: ReloadingTLS, ca: KeyPair
) -> None:
    """`serve --env-files=auto` hands the app its answer (the API server's version is 1.35+),
    asked on each review: refused before, `fileKeyRef` entries after."""
    answer = [False]
    apps = create_apps(settings, check=RecordingCheck(), env_files=lambda: answer[0])
    with_env = pod({"sakura-secrets.io/env-DB_PASSWORD": "db"})
    with serving(apps, tls) as url, client_for(ca) as client:
        before = mutate(client, url.webhook, admission_review(with_env))
        answer[0] = True
        after = mutate(client, url.webhook, admission_review(with_env))
    assert before["allowed"] is False
    assert "need Kubernetes 1.35 or later" in before["status"]["message"]
    assert after["allowed"] is True
    spec = jsonpatch.apply_patch(with_env, json.loads(base64.b64decode(after["patch"])))["spec"]
    (entry,) = spec["containers"][0]["env"]
    assert entry["valueFrom"]["fileKeyRef"]["key"] == "DB_PASSWORD"
