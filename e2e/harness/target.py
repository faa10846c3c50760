"""Which cluster the e2e tests use, and whether a test may skip when something is missing."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parents[1]
CLUSTER_SH = E2E / "cluster.sh"
CLIENT_CA_ENV = "SAKURA_E2E_WEBHOOK_CLIENT_CA"
"""For a cluster other than the local one: the CA that signed the client certificate its API
server presents to webhooks (its AdmissionConfiguration's kubeConfigFile); `cluster.sh env`
prints it for the local cluster."""
REQUIRE_ENV = "SAKURA_E2E_REQUIRE"
"""Set to 1 (scripts/test does, for the local cluster) to turn every skip below into a failure."""


def local_kubeconfig() -> Path:
    return Path(os.environ.get("K8S_LOCAL_STATE", "/tmp/k8s-local")) / "kubeconfig"


@dataclass(frozen=True)
class Target:
    """A cluster: its kubeconfig and whether it is e2e/cluster.sh's loopback cluster."""

    kubeconfig: Path
    local: bool


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail with it when the run requires the e2e tests."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def webhook_client_ca(target: Target) -> tuple[Path | None, str]:
    """The CA of the client certificate the target's API server presents to webhooks, or None
    and why it is not known."""
    if target.local:
        pki = local_kubeconfig().parent / "pki" / "webhook-client-ca.crt"
        if not local_api_server_has("--admission-control-config-file"):
            return None, (
                "the local API server runs without --admission-control-config-file (started by "
                "an older e2e/cluster.sh), so it presents no client certificate to webhooks; "
                "restart it: e2e/cluster.sh down; e2e/cluster.sh up --node"
            )
        return (pki, "") if pki.is_file() else (None, f"{pki} is missing")
    configured = os.environ.get(CLIENT_CA_ENV, "")
    if configured:
        return Path(configured), ""
    return None, (
        f"{CLIENT_CA_ENV} is not set: nothing says the API server of {target.kubeconfig} "
        "presents a client certificate to webhooks (docs/webhook.md, 'Only the API server')"
    )


def local_api_server_has(flag: str) -> bool:
    """Whether the running local API server was started with `flag` (a running cluster is
    reused, never restarted, so it may come from an older copy of cluster.sh)."""
    pid_file = local_kubeconfig().parent / "run" / "apiserver.pid"
    try:
        cmdline = Path("/proc", pid_file.read_text().strip(), "cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return any(arg.split(b"=")[0] == flag.encode() for arg in cmdline.split(b"\0"))


def local_cluster_running() -> bool:
    return (
        subprocess.run([str(CLUSTER_SH), "status"], capture_output=True).returncode == 0
        and local_kubeconfig().is_file()
    )


def find_target() -> Target:
    """$KUBECONFIG when set; otherwise the local cluster if it runs; otherwise skip."""
    configured = os.environ.get("KUBECONFIG", "")
    local = local_kubeconfig()
    if configured:
        path = Path(configured.split(os.pathsep)[0]).resolve()
        return Target(path, local=path == local.resolve())
    if local_cluster_running():
        return Target(local, local=True)
    unavailable(
        "no cluster: set KUBECONFIG, or start the local one with "
        "`e2e/cluster.sh up --node && e2e/cluster.sh base-image` (scripts/test does this)"
    )
    raise AssertionError("unreachable")
