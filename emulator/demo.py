"""`scripts/demo` (`python -m emulator.demo`): the whole secret path on one machine, no cluster,
no account. It lives beside the emulator, outside the product: the image ships neither.

It starts the Sakura emulator with sample secrets, sends a sample pod through the real webhook
served over TLS, then runs the real init fetcher (`python -m sidecar`) with the environment the
webhook gave its init container, and prints the mutated pod and the files an app would read.
Without a cluster there is no TokenReview to verify a broker token, so the sample pod uses
direct mode (`credentials-secret`) and the demo plays the kubelet's part of resolving that
Secret; the admission check is the offline one `render` uses, which says it checked nothing.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import httpx
import yaml

from contract import annotations as keys
from contract.pod import ENV_TERMINATION_LOG, INIT_CONTAINER
from emulator.app import Emulator, EmulatorConfig
from emulator.server import run_in_thread
from injector.operations.certs import KeyPair, generate_ca, issue_serving_cert
from injector.operations.render import OfflineCheck
from injector.operations.reviews import patched, pod_create_review
from injector.serving.app import create_apps
from injector.serving.server import Listener, serving_in_thread
from injector.serving.tls import ReloadingTLS
from injector.webhook.settings import WebhookSettings

VAULT_ID = "110000000001"
DEMO_TOKEN = "demo-access-token"  # noqa: S105 (the emulator's made-up credentials)
DEMO_TOKEN_SECRET = "demo-access-token-secret"  # noqa: S105
SAMPLE_SECRETS: dict[str, Any] = {
    "db-password": ["first-password", "s3cr3t-db-password"],
    "api-key": "sample-api-key-0123",
    "db": {"user": "shop", "host": "db.internal", "port": 5432},
}


def sample_pod(mount_path: str) -> dict[str, Any]:
    """A pod as a user would write it: annotations name secrets, versions, keys, a template."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "shop-api",
            "namespace": "shop",
            "annotations": {
                keys.INJECT: "true",
                keys.VAULT_ID: VAULT_ID,
                keys.MOUNT_PATH: mount_path,
                keys.CREDENTIALS_SECRET: "sakura-api-key",
                keys.SECRET_FILE + "db-password": "db-password",
                keys.SECRET_FILE + "db-password-v1": "db-password@1",
                keys.SECRET_FILE + "api-key": "api-key",
                keys.FILE_MODE_OF + "api-key": "0440",
                keys.TEMPLATE_FILE + "database.url": (
                    'postgres://{{ secret("db#user") }}:{{ secret("db-password") }}'
                    '@{{ secret("db#host") }}:{{ secret("db#port") }}/shop\n'
                ),
            },
        },
        "spec": {
            "serviceAccountName": "shop-api",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "containers": [
                {
                    "name": "app",
                    "image": "example/shop-api:1.0",
                    "command": ["sh", "-c", f"cat {mount_path}/database.url && sleep 3600"],
                }
            ],
        },
    }


def run(out: TextIO = sys.stdout) -> int:
    """Run the demo, printing to `out`; returns the init fetcher's exit status."""
    with tempfile.TemporaryDirectory(prefix="sakura-demo-") as work:
        root = Path(work)
        tls_files = _write_tls(root, generate_ca("sakura-secrets-demo-ca"))
        mount = root / "sakura" / "secrets"
        mount.mkdir(parents=True)
        emulator = Emulator(
            EmulatorConfig(
                DEMO_TOKEN,
                DEMO_TOKEN_SECRET,
                seed={"vaults": [{"id": VAULT_ID, "name": "demo", "secrets": SAMPLE_SECRETS}]},
            )
        )
        with run_in_thread(emulator) as sakura_url:
            settings = WebhookSettings(
                image="sakura-secrets-injector:demo",
                broker_url="https://sakura-secrets-injector.sakura-secrets.svc",
                broker_ca_pem=tls_files.ca.read_text(),
                default_vault_id=VAULT_ID,
                sakura_endpoint=sakura_url,
            )
            app = create_apps(settings, check=OfflineCheck()).webhook
            tls = ReloadingTLS(tls_files.cert, tls_files.key)
            with serving_in_thread([Listener("webhook", app, tls, 0)]) as [webhook_url]:
                pod = sample_pod(str(mount))
                out.write(f"== Sakura emulator at {sakura_url}, webhook at {webhook_url}\n")
                mutated, warnings = _admit(webhook_url, tls_files.ca, pod)
                for warning in warnings:
                    out.write(f"# warning: {warning}\n")
                out.write("== the pod as the webhook admitted it\n")
                out.write(yaml.safe_dump(mutated, sort_keys=False, width=100))
                status = _run_init_container(mutated, root, out)
                if status == 0:
                    _show_files(mount, out)
                calls = emulator.knobs.calls["total"]
                out.write(f"== Sakura API calls made: {calls}\n")
        return status


class _TlsFiles:
    def __init__(self, root: Path) -> None:
        self.ca = root / "ca.crt"
        self.cert = root / "tls.crt"
        self.key = root / "tls.key"


def _write_tls(root: Path, ca: KeyPair) -> _TlsFiles:
    files = _TlsFiles(root)
    serving = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    files.ca.write_bytes(ca.cert_pem)
    files.cert.write_bytes(serving.cert_pem)
    files.key.write_bytes(serving.key_pem)
    files.key.chmod(0o600)
    return files


def _admit(url: str, ca: Path, pod: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """POST the pod as the API server would and apply the JSON patch it answers with."""
    review = pod_create_review(
        pod, namespace=pod["metadata"]["namespace"], uid=str(uuid.uuid4()), username="demo"
    )
    with httpx.Client(verify=_trusting(ca)) as client:
        answer = client.post(f"{url}/mutate", json=review, timeout=30).json()
    response = answer["response"]
    if not response["allowed"]:
        raise SystemExit(f"the webhook denied the sample pod: {response['status']['message']}")
    return patched(pod, response), list(response.get("warnings", []))


def _trusting(ca: Path) -> Any:
    import ssl

    return ssl.create_default_context(cafile=str(ca))


def _run_init_container(pod: dict[str, Any], root: Path, out: TextIO) -> int:
    """Run `python -m sidecar` with the init container's env, resolving its secretKeyRefs."""
    init = next(c for c in pod["spec"]["initContainers"] if c["name"] == INIT_CONTAINER)
    credentials = {
        "SAKURA_ACCESS_TOKEN": DEMO_TOKEN,
        "SAKURA_ACCESS_TOKEN_SECRET": DEMO_TOKEN_SECRET,
    }
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update(_container_env(init, {"sakura-api-key": credentials}))
    termination_log = root / "termination-log"
    env[ENV_TERMINATION_LOG] = str(termination_log)
    out.write(f"== running the init container: {' '.join(init['command'])}\n")
    command = [sys.executable, *init["command"][1:]]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    out.write(result.stderr)
    if result.returncode != 0:
        message = termination_log.read_text() if termination_log.exists() else "(none)"
        out.write(f"init container failed with exit {result.returncode}: {message}\n")
    return result.returncode


def _container_env(
    container: Mapping[str, Any], secrets: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """What the kubelet would put into the container's environment."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            value = secrets[ref["name"]].get(ref["key"])
            if value is None and not ref.get("optional"):
                raise KeyError(f"Secret {ref['name']} has no key {ref['key']}")
            if value is not None:  # an optional key the Secret lacks: unset, as the kubelet does
                env[item["name"]] = value
    return env


def _show_files(mount: Path, out: TextIO) -> None:
    out.write(f"== the files an app reads under {mount}\n")
    for path in sorted(mount.iterdir()):
        if path.name.startswith(".."):  # the writer's `..data` link and set directories
            continue
        info = path.stat()
        mode = stat.filemode(info.st_mode)
        out.write(f"-- {path.name}  {mode} uid={info.st_uid} gid={info.st_gid}\n")
        out.write(path.read_text())
        if not path.read_text().endswith("\n"):
            out.write("\n")


if __name__ == "__main__":
    raise SystemExit(run())
