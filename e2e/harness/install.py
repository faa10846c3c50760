"""Installing manifests/ on the local cluster: what `kubectl apply -k manifests/` applies.

The loopback cluster has no pod network, no kube-proxy and no cluster DNS, so the rendered
Deployment gets JSON patches for only what that takes, and nothing of what the install is
meant to prove (the certs bootstrap, RBAC, Service, probes, webhook configuration):

- the injector runs with hostNetwork and one replica (two would want the same host port), and
  so does the certs Deployment (no pod network to reach the API server);
- it reaches the API server at the kubeconfig's address instead of the `kubernetes` Service's
  ClusterIP, which nothing routes here;
- the broker URL carries the broker's container port (9443): kube-proxy would map the Service's
  443 (the webhook's Service port needs nothing: the API server dials the endpoint itself);
- the image is the one the run built, never pulled;
- the webhook's namespaceSelector also asks for INSTALL_LABEL=RUN_ID, so pods of other runs
  sharing the cluster (whose namespaces carry the injection label too) never go through it. Not
  the harness's RUN_LABEL: the run's own webhook selects that one, and would inject first.

The patches are applied here with jsonpatch rather than in a kustomize overlay, so any kubectl
that can render manifests/ will do (kubectl 1.20's kustomize has no inline patches).
The API server reaches the webhook through the Service because e2e/cluster.sh runs it with
`--enable-aggregator-routing` (Service -> endpoint IP, TLS checked against the Service's name).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonpatch
import yaml

from harness import manifests
from harness.kube import Kube
from harness.stack import Sakura
from harness.target import Target, local_api_server_has, local_kubeconfig, unavailable
from harness.webhooks import INJECTION_LABEL

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "sakura-secrets"
NAME = "sakura-secrets-injector"
BROKER_PORT = 9443
"""The Deployment's `broker` container port, which hostNetwork puts on the host."""
PORT = 8443
"""The Deployment's `webhook` container port (no client certificate asked in manifests/)."""
INSTALL_LABEL = "sakura-e2e/install"
"""The installed webhook selects only namespaces with this label set to the run's id."""
CERTS = "sakura-secrets-certs"
"""The certs Deployment and its ServiceAccount (manifests/base/certs.yaml)."""
BROKER_HOST = f"{NAME}.{NAMESPACE}.svc"
"""Test pods map this name to 127.0.0.1 with hostAliases (no cluster DNS here)."""


def rendered(kube: Kube, image: str, run_id: str) -> list[dict[str, Any]]:
    """manifests/ as `kubectl kustomize` renders it, adapted to the local cluster and scoped to
    the namespaces of run `run_id`."""
    # the Kubernetes 1.20 variant: the local cluster is 1.20 (README, "Kubernetes versions")
    out = kube.run("kustomize", str(REPO / "manifests" / "legacy-1.20")).stdout
    objects = [obj for obj in yaml.safe_load_all(out) if obj]
    api = urlsplit(api_server(kube))
    if not (api.hostname and api.port):
        raise ValueError(f"the kubeconfig's server {api.geturl()!r} has no host and port")
    container = "/spec/template/spec/containers/0"
    local: list[dict[str, Any]] = [
        {"op": "replace", "path": "/spec/replicas", "value": 1},
        {"op": "add", "path": "/spec/template/spec/hostNetwork", "value": True},
        {"op": "replace", "path": f"{container}/image", "value": image},
        {"op": "replace", "path": f"{container}/imagePullPolicy", "value": "Never"},
        _env(container, "KUBERNETES_SERVICE_HOST", api.hostname),
        _env(container, "KUBERNETES_SERVICE_PORT", str(api.port)),
    ]
    [deployment] = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == NAME
    ]
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    image_at = [e["name"] for e in env].index("SAKURA_SECRETS_INIT_IMAGE")
    ops = [
        *local,
        # the init container's image is an env var, which kustomize's `images:` does not reach
        {"op": "replace", "path": f"{container}/env/{image_at}/value", "value": image},
        _env(container, "SAKURA_SECRETS_BROKER_URL", f"https://{BROKER_HOST}:{BROKER_PORT}"),
        _env(container, "SAKURA_SECRETS_IMAGE_PULL_POLICY", "Never"),
    ]
    run_only = [
        {
            "op": "add",
            "path": f"/webhooks/0/namespaceSelector/matchLabels/{INSTALL_LABEL.replace('/', '~1')}",
            "value": run_id,
        }
    ]
    patches = {NAME: ops, CERTS: local}

    def patched(obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "Deployment":
            return jsonpatch.apply_patch(obj, patches[obj["metadata"]["name"]])  # type: ignore[no-any-return]
        if obj["kind"] == "MutatingWebhookConfiguration":
            return jsonpatch.apply_patch(obj, run_only)  # type: ignore[no-any-return]
        return obj

    return [patched(obj) for obj in objects]


def _env(container: str, name: str, value: str) -> dict[str, Any]:
    return {"op": "add", "path": f"{container}/env/-", "value": {"name": name, "value": value}}


def api_server(kube: Kube) -> str:
    """The API server's URL as the kubeconfig's current context names it."""
    return kube.run(
        "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"
    ).stdout.strip()


def wait_until_gone(kube: Kube, namespace: str, timeout: float = 120) -> None:
    """A namespace left by an earlier run must finish terminating before it is made again."""
    kube.delete("namespace", namespace)
    kube.wait_for(
        f"namespace {namespace} to be gone",
        lambda: kube.run("get", "namespace", namespace, check=False).returncode != 0,
        timeout=timeout,
        every=2,
    )


def local_api_server_routes_to_endpoints() -> bool:
    """Whether the running local API server has --enable-aggregator-routing (older copies of
    cluster.sh started it without, and a running cluster is reused, never restarted)."""
    return local_api_server_has("--enable-aggregator-routing")


def require_installable(target: Target, what: str) -> None:
    """Skip (or fail, under SAKURA_E2E_REQUIRE) unless manifests/ can be installed here: on
    e2e/cluster.sh's cluster, whose API server calls a webhook through its Service."""
    if not target.local:
        unavailable(f"{what} adapts manifests/ to e2e/cluster.sh's loopback cluster only")
    if not local_api_server_routes_to_endpoints():
        unavailable(
            "the local API server runs without --enable-aggregator-routing, so it cannot call "
            "a webhook through its Service; restart it: e2e/cluster.sh down; e2e/cluster.sh up "
            "--node"
        )


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One install at a time on this machine's local cluster: its names are fixed, and a second
    run would delete the first one's namespace under it."""
    with open(local_kubeconfig().parent / "install.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def api_key_secret(sakura: Sakura) -> list[dict[str, Any]]:
    """What docs/webhook.md asks for before the apply: the namespace and the Sakura API key
    Secret, here the emulator's."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sakura-api-key", "namespace": NAMESPACE},
            "stringData": {
                "SAKURA_ACCESS_TOKEN": sakura.token,
                "SAKURA_ACCESS_TOKEN_SECRET": sakura.token_secret,
                "SAKURA_ENDPOINTS_SECRETMANAGER": sakura.url,
                "SAKURA_SECRETS_DEFAULT_VAULT_ID": sakura.vault_id,
            },
        },
    ]


def uninstall(kube: Kube, objects: list[dict[str, Any]], app_namespace: str) -> None:
    """The webhook first (it must not touch the pods of the scenarios that run after), then
    everything applied, and the app's namespace."""
    kube.delete("mutatingwebhookconfiguration", NAME, wait=True)
    listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    kube.run("delete", "-f", "-", "--ignore-not-found", "--wait=false", stdin=listed, check=False)
    kube.delete("namespace", app_namespace)


def app_namespace(
    name: str, run_id: str, service_account: str, *secrets: str
) -> list[dict[str, Any]]:
    """A namespace the installed webhook selects (INSTALL_LABEL=run_id), with a ServiceAccount
    granted `secrets` of the default vault."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {INJECTION_LABEL: "enabled", INSTALL_LABEL: run_id},
            },
        },
        manifests.service_account(service_account, name),
        *manifests.grant(f"read-{secrets[0]}", name, service_account, manifests.pairs(*secrets)),
    ]
