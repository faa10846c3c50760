"""Fixtures of the end-to-end tests: one cluster, one image, one emulator, one injector per run.

The injector runs on the host as `python -m injector serve` over TLS on 127.0.0.1, on two ports:
the webhook's is registered with the cluster by URL (and requires the API server's client
certificate when the cluster's admission configuration gives it one), the broker's is what its
init containers (the built image, in hostNetwork pods) call. See docs/e2e.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import manifests
from harness.bump import BumpWebhook
from harness.image import build_image, docker_has_image
from harness.kube import Kube, KubectlError
from harness.manifests import OTHER_VAULT_ID, VAULT_ID
from harness.processes import free_port, serving
from harness.stack import Injector, Pki, Sakura, Webhook
from harness.target import CLUSTER_SH, Target, find_target, unavailable, webhook_client_ca
from harness.webhooks import bump_webhook, injector_webhook

from emulator.app import Emulator, EmulatorConfig
from emulator.server import run_in_thread
from injector.operations.certs import generate_ca, issue_serving_cert

RUN_ID = secrets.token_hex(3)
IMAGE = os.environ.get("SAKURA_E2E_IMAGE", f"sakura-secrets-injector:e2e-{RUN_ID}")
BASE_IMAGE = os.environ.get("SAKURA_E2E_BASE", "local/python-base:bookworm")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


# ---------------------------------------------------------------- cluster and image


@pytest.fixture(scope="session")
def run_id() -> str:
    """This run's id: every object the harness makes carries it (RUN_LABEL)."""
    return RUN_ID


@pytest.fixture(scope="session")
def target() -> Target:
    return find_target()


@pytest.fixture(scope="session")
def kube(target: Target) -> Kube:
    kube = Kube(target.kubeconfig)
    try:
        kube.run("version", timeout=20)
    except (KubectlError, subprocess.TimeoutExpired) as error:
        unavailable(f"the cluster in {target.kubeconfig} does not answer: {error}")
    return kube


@pytest.fixture(scope="session")
def node(kube: Kube) -> str:
    """A Ready node, for scenarios whose pods must run (admission-only ones do without)."""
    for item in kube.get("nodes")["items"]:
        conditions = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
        if conditions.get("Ready") == "True":
            return str(item["metadata"]["name"])
    unavailable("no Ready node: pods cannot run (local cluster: `e2e/cluster.sh node`)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def image(target: Target) -> Iterator[str]:
    """The project's image in the node's docker: built once per run, removed afterwards.

    $SAKURA_E2E_IMAGE names an image the nodes already have (e.g. `kind load docker-image`).
    """
    if "SAKURA_E2E_IMAGE" in os.environ:
        yield IMAGE
        return
    if not docker_has_image(BASE_IMAGE):
        if not target.local:
            unavailable(
                f"base image {BASE_IMAGE} is missing; set SAKURA_E2E_BASE or SAKURA_E2E_IMAGE"
            )
        subprocess.run([str(CLUSTER_SH), "base-image"], check=True)
    build_image(IMAGE, BASE_IMAGE)
    yield IMAGE
    subprocess.run(["docker", "rmi", "-f", IMAGE], capture_output=True)


# ---------------------------------------------------------------- TLS, Sakura, injector


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA the API server and the init containers trust, and the injector's serving pair."""
    directory = tmp_path_factory.mktemp("pki")
    ca = generate_ca("sakura-e2e-ca")
    serving_pair = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    files = {
        "ca.crt": ca.cert_pem,
        "tls.crt": serving_pair.cert_pem,
        "tls.key": serving_pair.key_pem,
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    (directory / "tls.key").chmod(0o600)
    return Pki(ca, directory / "ca.crt", directory / "tls.crt", directory / "tls.key")


@pytest.fixture(scope="session")
def sakura() -> Iterator[Sakura]:
    tag = secrets.token_hex(8)
    values: dict[str, Any] = {
        "db-password": f"db-pw-{tag}",
        "api-key": f"api-key-{tag}",
        "rotated": [f"rot-v1-{tag}", f"rot-v2-{tag}"],
        "db-config": {"user": f"user-{tag}", "password": f"cfg-pw-{tag}"},
        "forbidden": f"forbidden-{tag}",
        "job-token": f"job-token-{tag}",
    }
    # the same name in a second vault the injector's key sees: no grant in any test opens it
    # (test_e2e_admission's `pairs` opens this vault, but only its pair for stripe-key)
    other_vault = {"db-password": f"other-vault-pw-{tag}", "stripe-key": f"stripe-{tag}"}
    token, token_secret = secrets.token_hex(8), secrets.token_hex(16)
    config = EmulatorConfig(
        access_token=token,
        access_token_secret=token_secret,
        seed={
            "vaults": [
                {"id": VAULT_ID, "name": "e2e", "secrets": values},
                {"id": OTHER_VAULT_ID, "name": "e2e-other", "secrets": other_vault},
            ]
        },
    )
    app = Emulator(config)
    with run_in_thread(app) as url:
        yield Sakura(url, app, VAULT_ID, values, token, token_secret, other_vault)


def injector_command(
    ports: tuple[int, int], image: str, pki: Pki, client_ca: Path | None = None
) -> list[str]:
    """The injector as an operator would start it, on the host's loopback."""
    webhook_port, broker_port = ports
    command = [
        sys.executable, "-m", "injector", "serve",
        "--host", "127.0.0.1",
        "--port", str(webhook_port),
        "--broker-port", str(broker_port),
        "--probe-port", str(free_port()),  # not the default 8081: runs share this host
        "--tls-cert-file", str(pki.cert_file),
        "--tls-key-file", str(pki.key_file),
        "--init-image", image,
        "--image-pull-policy", "Never",
        "--broker-url", f"https://127.0.0.1:{broker_port}",
        "--broker-ca-file", str(pki.ca_file),
        "--default-vault-id", VAULT_ID,
        # no such Service: this one process has the whole budget (not a share with a
        # real installation's replicas on the same cluster)
        "--service", f"sakura-e2e-{RUN_ID}",
        "--log-level", "info",
    ]  # fmt: skip
    if client_ca is not None:
        command += ["--webhook-client-ca-file", str(client_ca)]
    return command


@contextlib.contextmanager
def running_injector(
    target: Target, image: str, pki: Pki, sakura: Sakura, log: Path, client_ca: Path | None
) -> Iterator[Injector]:
    """An injector process on two free loopback ports, stopped when the block ends."""
    ports = (free_port(), free_port())
    env = {
        "SAKURA_ACCESS_TOKEN": sakura.token,
        "SAKURA_ACCESS_TOKEN_SECRET": sakura.token_secret,
        "SAKURA_ENDPOINTS_SECRETMANAGER": sakura.url,
        "KUBECONFIG": str(target.kubeconfig),
    }
    command = injector_command(ports, image, pki, client_ca)
    with contextlib.ExitStack() as running:
        process = contextlib.ExitStack()
        running.callback(process.close)
        process.enter_context(serving(command, ports, log, env))

        def restart() -> None:
            process.close()
            process.enter_context(serving(command, ports, log, env))

        yield Injector(
            f"https://127.0.0.1:{ports[0]}",
            f"https://127.0.0.1:{ports[1]}",
            log,
            client_ca,
            restart,
        )


@pytest.fixture(scope="session")
def injector(
    target: Target, kube: Kube, image: str, pki: Pki, sakura: Sakura,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Injector]:  # fmt: skip
    """The run's injector; its webhook port requires the API server's client certificate
    whenever the cluster is known to present one (always on the local cluster)."""
    log = tmp_path_factory.mktemp("injector") / "injector.log"
    client_ca, _ = webhook_client_ca(target)
    with running_injector(target, image, pki, sakura, log, client_ca) as running:
        yield running
    sys.stderr.write(f"\n[e2e] injector log: {log}\n")


# ---------------------------------------------------------------- registration and namespaces


@pytest.fixture(scope="session")
def webhook(kube: Kube, injector: Injector, pki: Pki, target: Target) -> Iterator[Webhook]:
    config_name = f"sakura-e2e-{RUN_ID}"
    url = f"{injector.webhook_url}/mutate"
    kube.apply(injector_webhook(config_name, url, pki.ca.cert_pem, RUN_ID))
    hook = Webhook(kube, RUN_ID, config_name, pki, injector)
    try:
        _probe_reachability(hook, target)
        yield hook
    finally:
        kube.delete("mutatingwebhookconfiguration", config_name)
        for name in hook.created:
            kube.delete("namespace", name)


def _probe_reachability(hook: Webhook, target: Target) -> None:
    """A server-side dry run through the webhook: proves the API server reaches 127.0.0.1."""
    ns = hook.namespace("probe")
    probe = manifests.pod("probe", ns, manifests.pod_spec("true"))
    deadline_error = ""
    for _ in range(10):  # the API server picks up a new configuration within a second or so
        proc = hook.kube.run(
            "create", "--dry-run=server", "-o", "json", "-f", "-",
            stdin=json.dumps(probe), check=False,
        )  # fmt: skip
        if proc.returncode == 0:
            return
        deadline_error = proc.stderr.strip()
        if "failed calling webhook" not in deadline_error:
            break
        time.sleep(1)
    reason = (
        f"the API server of {target.kubeconfig} cannot call the injector at "
        f"{hook.injector.webhook_url}: {deadline_error}. The harness runs the injector on this "
        "host's 127.0.0.1, so the API server must share that loopback (true for e2e/cluster.sh; "
        "not for kind or a remote cluster) - see docs/e2e.md"
    )
    if target.local:
        pytest.fail(reason, pytrace=False)
    unavailable(reason)


@pytest.fixture(scope="session")
def bump(kube: Kube, webhook: Webhook, pki: Pki) -> Iterator[BumpWebhook]:
    """A second mutating webhook after the injector's, to force its reinvocation."""
    app = BumpWebhook()
    serving_pair = issue_serving_cert(pki.ca, ["localhost"], ["127.0.0.1"])
    directory = pki.ca_file.parent
    (directory / "bump.crt").write_bytes(serving_pair.cert_pem)
    (directory / "bump.key").write_bytes(serving_pair.key_pem)
    name = f"{webhook.config_name}-zbump"
    with run_in_thread(
        app.app,
        ssl_certfile=str(directory / "bump.crt"),
        ssl_keyfile=str(directory / "bump.key"),
    ) as url:
        url = url.replace("http://", "https://")
        kube.apply(bump_webhook(name, f"{url}/mutate", pki.ca.cert_pem, RUN_ID))
        try:
            time.sleep(2)  # let the API server load the new configuration
            yield app
        finally:
            kube.delete("mutatingwebhookconfiguration", name)
