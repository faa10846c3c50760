"""Which app containers get the files, and the read-only mount they get."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from contract.pod import SECRETS_VOLUME


def target_containers(
    spec: dict[str, Any], wanted: Sequence[str] | None, proxies: Collection[str]
) -> tuple[str, ...]:
    """The app containers to mount into: the `containers` annotation's list, or all of them.

    Without the annotation, these are the app containers except the mesh proxies (`proxies`,
    e.g. istio-proxy, which a mesh's webhook may have added before ours): they never read the
    files, and their own runAsUser would otherwise decide the files' owner. Empty when the
    proxies are all the pod has (`pod_checks.check_room` refuses that).
    """
    if wanted is not None:
        return tuple(wanted)
    return tuple(c["name"] for c in spec["containers"] if c["name"] not in proxies)


def read_only_mount(mount_path: str) -> dict[str, Any]:
    """The app's view of the files: read-only, so the app cannot tamper with them."""
    return {"name": SECRETS_VOLUME, "mountPath": mount_path, "readOnly": True}
