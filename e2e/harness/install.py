"""Installing manifests/ on the local cluster the way a user does: `kubectl apply -k`.

The loopback cluster has no pod network, no kube-proxy and no cluster DNS, so an overlay changes
only what that takes, and nothing of what the install is meant to prove (the certs bootstrap,
RBAC, Service, probes, webhook configuration):

- the injector runs with hostNetwork and one replica (two would want the same host port);
- it reaches the API server at the kubeconfig's address instead of the `kubernetes` Service's
  ClusterIP, which nothing routes here;
- the broker URL carries the container port (8443): kube-proxy would map the Service's 443;
- the image is the one the run built, never pulled.

The API server reaches the webhook through the Service because e2e/cluster.sh runs it with
`--enable-aggregator-routing` (Service -> endpoint IP, TLS checked against the Service's name).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

from harness.kube import Kube
from harness.target import local_kubeconfig

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "sakura-secrets"
NAME = "sakura-secrets-injector"
PORT = 8443
BROKER_HOST = f"{NAME}.{NAMESPACE}.svc"
"""Test pods map this name to 127.0.0.1 with hostAliases (no cluster DNS here)."""


def overlay(directory: Path, image: str, api_server: str) -> Path:
    """Write a kustomization over a copy of manifests/ (kustomize loads only below its root)."""
    shutil.copytree(REPO / "manifests", directory / "manifests")
    name, _, tag = image.rpartition(":")
    api = urlsplit(api_server)
    if not (api.hostname and api.port):
        raise ValueError(f"the kubeconfig's server {api_server!r} has no host and port")
    container = "/spec/template/spec/containers/0"
    init = "/spec/template/spec/initContainers/0"
    lines = [
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "resources: [manifests]",
        "images:",
        f"  - {{name: {NAME}, newName: {name}, newTag: {tag}}}",
        "patches:",
        f"  - target: {{kind: Deployment, name: {NAME}}}",
        "    patch: |-",
        "      - {op: replace, path: /spec/replicas, value: 1}",
        "      - {op: add, path: /spec/template/spec/hostNetwork, value: true}",
    ]
    for path in (init, container):
        lines += [
            f"      - {{op: replace, path: {path}/imagePullPolicy, value: Never}}",
            f"      - {{op: add, path: {path}/env/-, value: "
            f'{{name: KUBERNETES_SERVICE_HOST, value: "{api.hostname}"}}}}',
            f"      - {{op: add, path: {path}/env/-, value: "
            f'{{name: KUBERNETES_SERVICE_PORT, value: "{api.port}"}}}}',
        ]
    lines += [
        # the init container's image is an env var that kustomize's `images:` does not reach
        f"      - {{op: test, path: {container}/env/6/name, value: SAKURA_SECRETS_INIT_IMAGE}}",
        f'      - {{op: replace, path: {container}/env/6/value, value: "{image}"}}',
        f"      - {{op: add, path: {container}/env/-, value: "
        f'{{name: SAKURA_SECRETS_BROKER_URL, value: "https://{BROKER_HOST}:{PORT}"}}}}',
        f"      - {{op: add, path: {container}/env/-, value: "
        "{name: SAKURA_SECRETS_IMAGE_PULL_POLICY, value: Never}}",
    ]
    (directory / "kustomization.yaml").write_text("\n".join(lines) + "\n")
    return directory


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
