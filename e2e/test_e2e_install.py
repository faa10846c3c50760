"""The install path: what `kubectl apply -k manifests/` applies runs the injector in the
cluster, its `certs` init container bootstraps TLS, and the API server calls it through its
Service.

Only on e2e/cluster.sh's cluster: harness/install.py adapts the Deployment to a cluster without
pod network; on another cluster, install with plain `kubectl apply -k`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from harness import install, manifests
from harness.kube import Kube
from harness.stack import Sakura
from harness.target import Target, unavailable
from harness.webhooks import INJECTION_LABEL

pytestmark = pytest.mark.cluster

APP_NS = f"{install.NAMESPACE}-e2e-app"
SERVICE_ACCOUNT = "shop"
SELECTOR = f"app.kubernetes.io/name={install.NAME}"


@pytest.fixture(scope="module")
def installed(
    target: Target,
    kube: Kube,
    image: str,
    sakura: Sakura,
    node: str,
    run_id: str,
) -> Iterator[Kube]:
    if not target.local:
        unavailable("the install test adapts manifests/ to e2e/cluster.sh's loopback cluster only")
    if not install.local_api_server_routes_to_endpoints():
        unavailable(
            "the local API server runs without --enable-aggregator-routing, so it cannot call "
            "a webhook through its Service; restart it: e2e/cluster.sh down; e2e/cluster.sh up "
            "--node"
        )
    with install.exclusive():
        for ns in (install.NAMESPACE, APP_NS):
            install.wait_until_gone(kube, ns)
        objects = install.rendered(kube, image, run_id)
        # what docs/webhook.md asks for before the apply: the Sakura API key Secret
        kube.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": install.NAMESPACE}},
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "sakura-api-key", "namespace": install.NAMESPACE},
                "stringData": {
                    "SAKURA_ACCESS_TOKEN": sakura.token,
                    "SAKURA_ACCESS_TOKEN_SECRET": sakura.token_secret,
                    "SAKURA_ENDPOINTS_SECRETMANAGER": sakura.url,
                    "SAKURA_SECRETS_DEFAULT_VAULT_ID": sakura.vault_id,
                },
            },
        )
        try:
            kube.apply(*objects)
            kube.wait_for(
                "the injector Deployment to be available", lambda: _available(kube), 240, 2
            )
            kube.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": APP_NS,
                        "labels": {INJECTION_LABEL: "enabled", install.INSTALL_LABEL: run_id},
                    },
                },
                manifests.service_account(SERVICE_ACCOUNT, APP_NS),
                *manifests.grant("read-db", APP_NS, SERVICE_ACCOUNT, ["db-password"]),
            )
            yield kube
        finally:
            # the webhook first: it must not touch the pods of the scenarios that run after this one
            kube.delete("mutatingwebhookconfiguration", install.NAME, wait=True)
            listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
            kube.run(
                "delete", "-f", "-", "--ignore-not-found", "--wait=false", stdin=listed, check=False
            )
            kube.delete("namespace", APP_NS)


def _available(kube: Kube) -> bool:
    status = kube.get("deployment", install.NAME, install.NAMESPACE).get("status", {})
    if status.get("availableReplicas"):
        return True
    for pod in kube.pods(install.NAMESPACE, SELECTOR):
        for state in pod["status"].get("initContainerStatuses", []):
            terminated = state.get("lastState", {}).get("terminated") or {}
            # a failure or two is the design (the kubelet retries); OOM or a loop is a defect
            if terminated.get("reason") == "OOMKilled" or state.get("restartCount", 0) >= 3:
                raise AssertionError(
                    "the certs init container failed:\n"
                    + kube.describe("pod", pod["metadata"]["name"], install.NAMESPACE)
                )
    return False


def app_pod(name: str, secret: str) -> dict[str, Any]:
    spec = manifests.pod_spec(
        "cat /sakura/secrets/db; echo; echo DONE",
        service_account=SERVICE_ACCOUNT,
        restart="Never",
        run_as=(1000, 1000),
    )
    spec["hostAliases"] = [{"ip": "127.0.0.1", "hostnames": [install.BROKER_HOST]}]
    annotations = manifests.pod_annotations({"secret-db": secret})
    return manifests.pod(name, APP_NS, spec, annotations=annotations)


def test_certs_bootstrap_stored_the_pair_and_patched_the_webhook(installed: Kube) -> None:
    secret = installed.get("secret", "sakura-secrets-injector-tls", install.NAMESPACE)
    assert secret["type"] == "kubernetes.io/tls"
    assert {"tls.crt", "tls.key", "ca.crt"} <= set(secret["data"])
    ca_pem = base64.b64decode(secret["data"]["ca.crt"])
    webhook = installed.get("mutatingwebhookconfiguration", install.NAME)["webhooks"][0]
    assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == ca_pem
    assert webhook["clientConfig"]["service"]["name"] == install.NAME


def test_a_pod_gets_its_secret_through_the_installed_injector(
    installed: Kube, sakura: Sakura
) -> None:
    installed.apply(app_pod("shop", "db-password"))

    def phase() -> str | None:
        value = installed.get("pod", "shop", APP_NS).get("status", {}).get("phase")
        return value if value in ("Succeeded", "Failed") else None

    assert installed.wait_for("the app pod to finish", phase, 180, 2) == "Succeeded", (
        installed.describe("pod", "shop", APP_NS)
    )
    pod = installed.get("pod", "shop", APP_NS)
    assert pod["metadata"]["annotations"]["sakura-secrets.io/status"] == "injected"
    assert installed.logs(APP_NS, "shop", "app").splitlines()[:2] == [
        sakura.values["db-password"],
        "DONE",
    ]
    assert sakura.values["db-password"] not in json.dumps(pod)
    for injector in installed.pods(install.NAMESPACE, SELECTOR):
        log = installed.logs(install.NAMESPACE, injector["metadata"]["name"], "injector")
        assert "served" in log  # the broker logged the fetch (names only) ...
        assert sakura.values["db-password"] not in log  # ... and never the value


def test_the_injector_runs_at_its_priority_class(installed: Kube) -> None:
    """The admission path outranks ordinary pods: the installed class reached the pods."""
    priority_class = installed.get("priorityclass", install.NAME)
    assert priority_class["value"] > 0
    assert not priority_class.get("globalDefault")  # omitted when false
    pods = installed.pods(install.NAMESPACE, SELECTOR)
    assert pods
    for pod in pods:
        assert pod["spec"]["priorityClassName"] == install.NAME
        assert pod["spec"]["priority"] == priority_class["value"]


def test_the_installed_webhook_denies_a_secret_without_a_grant(installed: Kube) -> None:
    proc = installed.create(app_pod("nosy", "forbidden"))
    assert proc.returncode != 0
    wanted = f'{APP_NS}/{SERVICE_ACCOUNT} may not get sakura-secrets.io secrets "forbidden"'
    assert f"serviceaccount {wanted}" in proc.stderr, proc.stderr
