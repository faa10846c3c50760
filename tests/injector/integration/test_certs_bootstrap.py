"""`certs` against the local cluster, as a ServiceAccount holding exactly the certs identity's
RBAC (manifests/base/certs.yaml): creates the CA and TLS Secrets, patches every webhook's
caBundle, reuses good material, renews under the same CA (the bundle never changes), rotates
the CA keeping the old one trusted, upgrades from a release that kept no CA key, and two
processes racing end with one CA and one certificate."""

from __future__ import annotations

import base64
import copy
import datetime
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from injector.operations.authority import Policy
from injector.operations.certs import KeyPair, generate_ca, issue_serving_cert, reissue_reason
from injector.operations.certs import service_dns_names as dns_names
from injector.operations.certs_bootstrap import (
    BootstrapResult,
    BootstrapTarget,
    bootstrap,
    renew_forever,
)

pytestmark = pytest.mark.cluster
RBAC = Path(__file__).resolve().parents[3] / "manifests" / "base" / "certs.yaml"
SECRET = "sakura-secrets-injector-tls"
CA_SECRET = "sakura-secrets-injector-ca"


@pytest.fixture(scope="module")
def admin() -> k8s.ApiClient:
    if not os.environ.get("KUBECONFIG"):
        pytest.fail('KUBECONFIG is not set: run scripts/test or `eval "$(e2e/cluster.sh up)"`')
    api: k8s.ApiClient = k8s_config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    return api


@pytest.fixture
def world(admin: k8s.ApiClient) -> Iterator[tuple[BootstrapTarget, k8s.ApiClient]]:
    suffix = uuid.uuid4().hex[:6]
    namespace, webhook_config = f"certs-{suffix}", f"certs-test-{suffix}"
    core, rbac = k8s.CoreV1Api(admin), k8s.RbacAuthorizationV1Api(admin)
    admission = k8s.AdmissionregistrationV1Api(admin)
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        admission.create_mutating_webhook_configuration(_webhook_configuration(webhook_config))
        roles = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
        cluster_role = copy.deepcopy(next(d for d in roles if d["kind"] == "ClusterRole"))
        cluster_role["metadata"]["name"] = webhook_config
        for rule in cluster_role["rules"]:
            if "resourceNames" in rule:
                rule["resourceNames"] = [webhook_config]
        rbac.create_cluster_role(cluster_role)
        subject = [{"kind": "ServiceAccount", "name": "certs", "namespace": namespace}]
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": webhook_config},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": webhook_config,
                },
                "subjects": subject,
            }
        )
        role = copy.deepcopy(next(d for d in roles if d["kind"] == "Role"))
        role["metadata"]["namespace"] = namespace
        rbac.create_namespaced_role(namespace, role)
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "certs"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": role["metadata"]["name"],
                },
                "subjects": subject,
            },
        )
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "certs"}})
        target = BootstrapTarget(
            namespace, "sakura-secrets-injector", SECRET, webhook_config, CA_SECRET
        )
        yield target, _as_service_account(admin, namespace, "certs")
    finally:
        for delete in (
            lambda: admission.delete_mutating_webhook_configuration(webhook_config),
            lambda: rbac.delete_cluster_role_binding(webhook_config),
            lambda: rbac.delete_cluster_role(webhook_config),
            lambda: core.delete_namespace(namespace),
        ):
            try:
                delete()
            except ApiException:
                pass


def test_bootstrap_creates_reuses_renews_and_rotates(
    world: tuple[BootstrapTarget, k8s.ApiClient], admin: k8s.ApiClient
) -> None:
    target, certs = world
    names = dns_names(target.service, target.namespace)

    # two processes starting together
    results: list[BootstrapResult] = []
    threads = [
        threading.Thread(target=lambda: results.append(bootstrap(certs, target))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2
    stored = _secret(admin, target)
    assert stored["type"] == "kubernetes.io/tls"
    pair = KeyPair(stored["tls.crt"], stored["tls.key"])
    authority = _secret(admin, target, CA_SECRET)
    assert authority["type"] == "Opaque"
    assert stored["ca.crt"] == authority["ca.crt"]  # one CA, kept with its key
    assert b"PRIVATE KEY" in authority["ca.key"] and b"PRIVATE KEY" not in stored["ca.crt"]
    assert reissue_reason(stored["ca.crt"], pair, names) is None
    assert {r.ca_bundle_pem for r in results} == {stored["ca.crt"]}
    assert _ca_bundles(admin, target) == [stored["ca.crt"], stored["ca.crt"]]

    # good material is reused, nothing is patched
    again = bootstrap(certs, target)
    assert (again.issued, again.patched_webhooks) == (False, ())
    assert _secret(admin, target) == stored

    # a (forced) renewal: a new serving certificate under the same CA, the bundle unchanged
    renewed = bootstrap(certs, target, policy=Policy(renew_before=datetime.timedelta(days=9999)))
    assert renewed.issued and not renewed.ca_rotated and renewed.patched_webhooks == ()
    new = _secret(admin, target)
    assert new["tls.crt"] != stored["tls.crt"] and new["ca.crt"] == stored["ca.crt"]
    assert reissue_reason(stored["ca.crt"], KeyPair(new["tls.crt"], new["tls.key"]), names) is None
    assert _secret(admin, target, CA_SECRET) == authority

    # material the stored CA did not sign is replaced, under the same CA
    wrong = issue_serving_cert(generate_ca(), ["elsewhere"])
    _patch(admin, target, SECRET, {"tls.crt": wrong.cert_pem, "tls.key": wrong.key_pem})
    fixed = bootstrap(certs, target)
    assert fixed.issued is True and "not signed by the stored CA" in fixed.reason
    assert _secret(admin, target)["ca.crt"] == stored["ca.crt"]

    # a CA rotation: both trusted at once, the old CA's certificate still served
    before = _secret(admin, target)
    rotated = bootstrap(certs, target, rotate_ca=True)
    assert rotated.ca_rotated and not rotated.issued and len(rotated.patched_webhooks) == 2
    after = _secret(admin, target)
    assert after["tls.crt"] == before["tls.crt"]
    assert after["ca.crt"].endswith(before["ca.crt"]) and after["ca.crt"] != before["ca.crt"]
    assert _ca_bundles(admin, target) == [after["ca.crt"], after["ca.crt"]]


def test_an_upgrade_from_a_release_without_a_kept_ca_key(
    world: tuple[BootstrapTarget, k8s.ApiClient], admin: k8s.ApiClient
) -> None:
    """Earlier releases stored only the TLS Secret: its CA stays trusted, its pair served."""
    target, certs = world
    old_ca = generate_ca()
    old = issue_serving_cert(old_ca, dns_names(target.service, target.namespace))
    k8s.CoreV1Api(admin).create_namespaced_secret(
        target.namespace,
        {
            "metadata": {"name": SECRET},
            "type": "kubernetes.io/tls",
            "data": _b64(
                {"tls.crt": old.cert_pem, "tls.key": old.key_pem, "ca.crt": old_ca.cert_pem}
            ),
        },
    )
    upgraded = bootstrap(certs, target)
    assert upgraded.ca_rotated and not upgraded.issued and "no CA key stored" in upgraded.reason
    stored = _secret(admin, target)
    assert (stored["tls.crt"], stored["tls.key"]) == (old.cert_pem, old.key_pem)
    authority = _secret(admin, target, CA_SECRET)
    assert stored["ca.crt"] == authority["ca.crt"] + old_ca.cert_pem
    assert authority["retired.crt"] == old_ca.cert_pem


def test_the_renewal_loop_checks_every_interval_and_retries_failures_sooner(
    world: tuple[BootstrapTarget, k8s.ApiClient],
    admin: k8s.ApiClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target, certs = world
    slept: list[float] = []
    caplog.set_level(logging.INFO, "injector.operations.certs_bootstrap")
    renew_forever(certs, target, interval=3600, rounds=2, sleep=slept.append)
    assert slept == [3600, 3600]
    assert "serving certificate valid until" in caplog.text
    # an identity without the certs RBAC: each round fails loudly and is retried sooner
    k8s.CoreV1Api(admin).create_namespaced_service_account(
        target.namespace, {"metadata": {"name": "nobody"}}
    )
    nobody = _as_service_account(admin, target.namespace, "nobody")
    slept.clear()
    renew_forever(nobody, target, interval=3600, rounds=3, sleep=slept.append)
    assert slept == [30, 60, 120]
    assert "certificate renewal failed" in caplog.text and "forbidden" in caplog.text


def _webhook_configuration(name: str) -> dict[str, Any]:
    """Two webhooks that can never match anything (label nobody has, failurePolicy Ignore)."""

    def webhook(index: int) -> dict[str, Any]:
        return {
            "name": f"w{index}.{name}.sakura-secrets.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "clientConfig": {"url": f"https://127.0.0.1:1/{name}"},
            "rules": [
                {
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["configmaps"],
                }
            ],
            "namespaceSelector": {"matchLabels": {"never-matches": name}},
        }

    return {"metadata": {"name": name}, "webhooks": [webhook(1), webhook(2)]}


def _as_service_account(admin: k8s.ApiClient, namespace: str, name: str) -> k8s.ApiClient:
    """An API client that authenticates with the ServiceAccount's (1.20 legacy) token."""
    core = k8s.CoreV1Api(admin)
    deadline = time.monotonic() + 30
    while True:
        account = core.read_namespaced_service_account(name, namespace)
        if account.secrets:
            break
        assert time.monotonic() < deadline, "the token controller made no token Secret"
        time.sleep(0.2)
    token_secret = core.read_namespaced_secret(account.secrets[0].name, namespace)
    token = base64.b64decode(token_secret.data["token"]).decode()
    configuration = copy.copy(admin.configuration)
    configuration.api_key = {"BearerToken": f"Bearer {token}"}
    configuration.api_key_prefix = {}
    configuration.cert_file = None
    configuration.key_file = None
    configuration.username = configuration.password = None
    return k8s.ApiClient(configuration)


def _b64(data: dict[str, bytes]) -> dict[str, str]:
    return {key: base64.b64encode(value).decode() for key, value in data.items()}


def _patch(
    admin: k8s.ApiClient, target: BootstrapTarget, name: str, data: dict[str, bytes]
) -> None:
    k8s.CoreV1Api(admin).patch_namespaced_secret(name, target.namespace, {"data": _b64(data)})


def _secret(admin: k8s.ApiClient, target: BootstrapTarget, name: str = SECRET) -> dict[str, Any]:
    secret = k8s.CoreV1Api(admin).read_namespaced_secret(name, target.namespace)
    data = {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}
    return {"type": secret.type, **data}


def _ca_bundles(admin: k8s.ApiClient, target: BootstrapTarget) -> list[bytes]:
    config = k8s.AdmissionregistrationV1Api(admin).read_mutating_webhook_configuration(
        target.webhook_configuration
    )
    bundles = [w.client_config.ca_bundle for w in config.webhooks]
    return [base64.b64decode(b) if isinstance(b, str) else bytes(b) for b in bundles]
