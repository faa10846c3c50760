"""Installing manifests/ on the local cluster: what `kubectl apply -k manifests/` applies.

The loopback cluster has no pod network, no kube-proxy and no cluster DNS, so the rendered
Deployment gets JSON patches for only what that takes, and nothing of what the install is
meant to prove (the certs bootstrap, RBAC, Service, probes, webhook configuration):

- the injector runs with hostNetwork and one replica (two would want the same host port), and
  so does the certs Deployment (no pod network to reach the API server);
- it reaches the API server at the kubeconfig's address instead of the `kubernetes` Service's
  ClusterIP, which nothing routes here;
- the broker URL carries the container port (8443): kube-proxy would map the Service's 443;
- the image is the one the run built, never pulled.

The patches are applied here with jsonpatch rather than in a kustomize overlay, so any kubectl
that can render manifests/ will do (kubectl 1.20's kustomize has no inline patches).
The API server reaches the webhook through the Service because e2e/cluster.sh runs it with
`--enable-aggregator-routing` (Service -> endpoint IP, TLS checked against the Service's name).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonpatch
import yaml

from harness.kube import Kube
from harness.target import local_kubeconfig

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "sakura-secrets"
NAME = "sakura-secrets-injector"
CERTS = "sakura-secrets-certs"
"""The certs Deployment and its ServiceAccount (manifests/base/certs.yaml)."""
PORT = 8443
BROKER_HOST = f"{NAME}.{NAMESPACE}.svc"
"""Test pods map this name to 127.0.0.1 with hostAliases (no cluster DNS here)."""


def rendered(kube: Kube, image: str) -> list[dict[str, Any]]:
    """manifests/ as `kubectl kustomize` renders it, adapted to the local cluster."""
    out = kube.run("kustomize", str(REPO / "manifests")).stdout
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
    ops = [
        *local,
        # the init container's image is an env var, which kustomize's `images:` does not reach
        {"op": "test", "path": f"{container}/env/6/name", "value": "SAKURA_SECRETS_INIT_IMAGE"},
        {"op": "replace", "path": f"{container}/env/6/value", "value": image},
        _env(container, "SAKURA_SECRETS_BROKER_URL", f"https://{BROKER_HOST}:{PORT}"),
        _env(container, "SAKURA_SECRETS_IMAGE_PULL_POLICY", "Never"),
    ]
    patches = {NAME: ops, CERTS: local}
    return [
        jsonpatch.apply_patch(obj, patches[obj["metadata"]["name"]])
        if obj["kind"] == "Deployment"
        else obj
        for obj in objects
    ]


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
    pid_file = local_kubeconfig().parent / "run" / "apiserver.pid"
    try:
        cmdline = Path("/proc", pid_file.read_text().strip(), "cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"--enable-aggregator-routing=true" in cmdline.split(b"\0")


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One install at a time on this machine's local cluster: its names are fixed, and a second
    run would delete the first one's namespace under it."""
    with open(local_kubeconfig().parent / "install.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
