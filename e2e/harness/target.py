"""Which cluster the e2e tests use, and whether a test may skip when something is missing."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parents[1]
CLUSTER_SH = E2E / "cluster.sh"
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
