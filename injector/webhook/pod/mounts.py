"""Which app containers get the files, and the read-only mount they get."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

from contract.annotations import CONTAINERS, MOUNT_PATH
from contract.pod import SECRETS_VOLUME
from injector.webhook.checks import Denied


def target_containers(spec: dict[str, Any], wanted: Sequence[str] | None) -> tuple[str, ...]:
    """The app containers to mount into: all of them, or the `containers` annotation's list."""
    names = tuple(c["name"] for c in spec.get("containers") or ())
    if not names:
        raise Denied("the pod has no containers (spec.containers is empty); add the app container")
    if wanted is None:
        return names
    known = set(names)  # sets: both lists may be long before the API server validates the pod
    unknown = [n for n in wanted if n not in known]
    if unknown:
        init_names = {c["name"] for c in spec.get("initContainers") or ()}
        extra = (
            " (init containers cannot get the mount)"
            if any(n in init_names for n in unknown)
            else ""
        )
        raise Denied(
            f"annotation {CONTAINERS} names {', '.join(map(repr, unknown))}, which is not "
            f"an app container of this pod{extra}; app containers: {', '.join(names)}"
        )
    return tuple(wanted)


def check_mount_path(spec: dict[str, Any], targets: Sequence[str], mount_path: str) -> None:
    """Refuse a mount path a target container already uses (the API server would reject it)."""
    chosen = set(targets)
    for container in spec.get("containers") or ():
        if container["name"] not in chosen:
            continue
        for mount in container.get("volumeMounts") or ():
            if posixpath.normpath(mount["mountPath"]) == mount_path:
                raise Denied(
                    f"annotation {MOUNT_PATH}: container {container['name']!r} already "
                    f"mounts volume {mount.get('name')!r} at {mount_path}; set "
                    f"{MOUNT_PATH} to a free directory"
                )


def read_only_mount(mount_path: str) -> dict[str, Any]:
    """The app's view of the files: read-only, so the app cannot tamper with them."""
    return {"name": SECRETS_VOLUME, "mountPath": mount_path, "readOnly": True}
