"""What the pod itself must allow before anything is built for it: the checks of `pod/`.

Each check refuses with a `Denied` naming the field or annotation and the fix, and computes
nothing; the builders in `pod/` then compute on a pod these checks passed. In pipeline order:
the target containers exist, the pod has room for what injection adds, the files' owner
is a valid, agreed, non-root id, and a pod that refreshes can end where it must.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

from contract.annotations import (
    CONTAINERS,
    MOUNT_PATH,
    REFRESH_INTERVAL,
    RUN_AS_GROUP,
    RUN_AS_USER,
    short_name,
)
from contract.pod import INIT_CONTAINER, REFRESH_CONTAINER, SECRETS_VOLUME, TOKEN_VOLUME
from injector.webhook.errors import Denied
from injector.webhook.pod.ownership import MAX_ID, effective_ids


def check_targets(spec: dict[str, Any], wanted: Sequence[str] | None) -> None:
    """Refuse a pod without app containers, or a `containers` annotation naming others."""
    names = tuple(c["name"] for c in spec.get("containers") or ())
    if not names:
        raise Denied("the pod has no containers (spec.containers is empty); add the app container")
    if wanted is None:
        return
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


def check_room(spec: dict[str, Any], targets: Sequence[str], mount_path: str) -> None:
    """Refuse a pod that leaves no room for what injection adds.

    `targets` are `pod.mounts.target_containers`: none when the pod's only containers are
    mesh proxies. The mount path must be free in them, and no volume or container may
    already have the name of ours (nor a container mount our volumes, which appear only with
    the patch: that mount would get our token, or a writable view of the files, into a
    container the injector did not choose).
    """
    if not targets:
        proxies = ", ".join(c["name"] for c in spec["containers"])
        raise Denied(
            f"the pod's only containers are mesh proxies ({proxies}); add the "
            f"app container, or name the proxy in {CONTAINERS}"
        )
    check_mount_path(spec, targets, mount_path)
    volumes = {v.get("name") for v in spec.get("volumes") or ()}
    for name in (SECRETS_VOLUME, TOKEN_VOLUME):
        if name in volumes:
            raise Denied(
                f"the pod already has a volume named {name!r}, which the injector adds; "
                "rename that volume"
            )
    containers = [*(spec.get("initContainers") or []), *spec["containers"]]
    taken = {c.get("name") for c in containers}
    for name in (INIT_CONTAINER, REFRESH_CONTAINER):
        if name in taken:
            raise Denied(
                f"the pod already has a container named {name!r}, which the injector adds; "
                "rename that container"
            )
    for container in containers:
        for mount in container.get("volumeMounts") or ():
            if mount.get("name") in (SECRETS_VOLUME, TOKEN_VOLUME):
                raise Denied(
                    f"container {container['name']!r} mounts volume {mount['name']!r}, which "
                    "the injector adds for its own init container; remove that volumeMount "
                    "(app containers get the files read-only through "
                    f"{CONTAINERS})"
                )


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


def check_plain_refresh(pod: dict[str, Any]) -> None:
    """Refuse a pod that must terminate, when its refresh container would be a plain one.

    Without native sidecars the refresh container is an app container that runs until it is
    stopped: a Job's pod (CronJobs' too, through their Job) or any pod whose restartPolicy is
    not Always would never complete. Native sidecars (Kubernetes 1.29+) stop with the app.
    """
    owners = (pod.get("metadata") or {}).get("ownerReferences")
    jobs = (
        [o.get("name") for o in owners if isinstance(o, dict) and o.get("kind") == "Job"]
        if isinstance(owners, list)
        else []
    )
    policy = pod["spec"].get("restartPolicy") or "Always"
    if jobs:
        why = f"belongs to Job {jobs[0]!r}, which waits for it to complete"
    elif policy != "Always":
        why = f"has restartPolicy {policy}, so it is meant to terminate"
    else:
        return
    raise Denied(
        f"annotation {REFRESH_INTERVAL}: this pod {why}, but on this cluster the refresh "
        f"container {REFRESH_CONTAINER!r} is a plain container that runs until the pod is "
        f"deleted, so the pod would never complete; remove {REFRESH_INTERVAL} (the init "
        "container still fetches the files once), or run it on Kubernetes 1.29+, where the "
        "refresh container is a native sidecar that stops when the app ends"
    )


def check_owner(
    spec: dict[str, Any],
    targets: Sequence[str],
    *,
    run_as_user: int | None,
    run_as_group: int | None,
) -> None:
    """Refuse ids Kubernetes would refuse, targets that disagree, and a root owner.

    Only what `pod.ownership.resolve_owner` would read is checked, in the order it reads it:
    the annotations win, then the targets' runAsUser/runAsGroup, then the pod's fsGroup.
    """
    pod_context = spec.get("securityContext") or {}
    uid = run_as_user
    if uid is None:
        uid = _agreed(spec, targets, "runAsUser", RUN_AS_USER)
        if uid == 0:
            raise Denied(
                f"annotation {RUN_AS_USER}: the target containers run as root (uid 0) and "
                "the init container must not run as root; "
                f"set {short_name(RUN_AS_USER)} to a non-root uid "
                "(an app running as root can still read the files)"
            )
    gid = run_as_group
    if gid is None:
        gid = _agreed(spec, targets, "runAsGroup", RUN_AS_GROUP)
    if gid is None:
        _check_id(pod_context.get("fsGroup"), "the pod's securityContext.fsGroup")


def _agreed(spec: dict[str, Any], targets: Sequence[str], field: str, key: str) -> int | None:
    """The one value of `field` the targets run with, refused when they disagree."""
    pod_context = spec.get("securityContext") or {}
    _check_id(pod_context.get(field), f"the pod's securityContext.{field}")
    chosen = set(targets)  # a set: a pod may list thousands of containers before validation
    for container in spec.get("containers") or ():
        if container["name"] in chosen:
            where = f"container {container['name']!r} securityContext.{field}"
            _check_id((container.get("securityContext") or {}).get(field), where)
    effective = effective_ids(spec, targets, field)
    values: set[int | None] = set(effective.values())
    if len(values) == 1:
        return values.pop()
    shown = ", ".join(
        f"{name}: {'image default' if value is None else value}"
        for name, value in effective.items()
    )
    raise Denied(
        f"annotation {key}: the target containers disagree on {field} ({shown}); set "
        f"{key} to the id that should own the files, or narrow {CONTAINERS}"
    )


def _check_id(value: int | None, where: str) -> None:
    """Refuse an id the pod states that Kubernetes would refuse (it is not validated yet).

    Mutating webhooks see the pod before the API server validates it; a negative or huge id
    would otherwise reach the plan and fail there as an internal error.
    """
    if value is not None and not 0 <= value <= MAX_ID:
        raise Denied(
            f"{where} is {value}, not a valid id (0 to {MAX_ID}); fix the pod's securityContext"
        )
