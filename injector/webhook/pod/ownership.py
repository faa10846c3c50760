"""Who owns the files: the uid/gid the init container runs as, so it creates them that way.

Explicit annotations win; otherwise the target containers' own securityContext (container
level over pod level), which `pod_checks.check_owner` has made sure agree, since that is the
user who must read the files. When no uid is known (the image's USER decides), the files are
made readable through a group the app is known to be in, else by every user of the
containers that mount them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contract.annotations import FILE_MODE, RUN_AS_USER, short_name

MAX_ID = 2**31 - 1
GROUP_READABLE = 0o440
"""Files' mode when the app's uid is unknown but its group is: the group reads them."""
ALL_READABLE = 0o444
"""Files' mode when neither is known: any user of the containers that mount them reads them.
The tmpfs is the pod's own and mounted only into the target containers, read-only."""


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int
    file_mode: int | None = None
    """Mode of the files no annotation gives one; None keeps the default (the owner reads)."""
    warnings: tuple[str, ...] = ()


def resolve_owner(
    spec: dict[str, Any],
    targets: Sequence[str],
    *,
    run_as_user: int | None,
    run_as_group: int | None,
    fallback_uid: int,
) -> Owner:
    """The files' owner, for a pod `pod_checks.check_owner` passed."""
    uid = run_as_user
    if uid is None:
        uid = _agreed(spec, targets, "runAsUser")
    gid = run_as_group
    if gid is None:
        gid = _agreed(spec, targets, "runAsGroup")
    if gid is None:
        gid = (spec.get("securityContext") or {}).get("fsGroup")
    if uid is not None:
        return Owner(uid=uid, gid=uid if gid is None else gid)
    # The image's USER decides who the app is, which the webhook cannot see: the files must
    # be readable whoever it is, through the group when one is known (the app's processes
    # have runAsGroup as their group and fsGroup as a supplementary one).
    if gid is None:
        mode, readers = ALL_READABLE, "any user of the containers that mount them"
    else:
        mode, readers = GROUP_READABLE, f"group {gid}, which the app runs with"
    warning = (
        f"sakura-secrets: no {short_name(RUN_AS_USER)} or runAsUser (the image's USER decides "
        f"the app's uid): files without {short_name(FILE_MODE)} get uid {fallback_uid}, "
        f"mode {mode:04o}, readable by {readers}; set {RUN_AS_USER} to limit them to the app"
    )
    return Owner(
        uid=fallback_uid,
        gid=fallback_uid if gid is None else gid,
        file_mode=mode,
        warnings=(warning,),
    )


def effective_ids(spec: dict[str, Any], targets: Sequence[str], field: str) -> dict[str, Any]:
    """Each target's `field` (runAsUser, runAsGroup): its own, else the pod's, else None."""
    pod_value = (spec.get("securityContext") or {}).get(field)
    chosen = set(targets)  # a set: a pod may list thousands of containers before validation
    effective: dict[str, Any] = {}
    for container in spec.get("containers") or ():
        if container["name"] in chosen:
            own = (container.get("securityContext") or {}).get(field)
            effective[container["name"]] = own if own is not None else pod_value
    return effective


def _agreed(spec: dict[str, Any], targets: Sequence[str], field: str) -> int | None:
    """The one value of `field` all targets run with (they agree); None when none sets it."""
    values = effective_ids(spec, targets, field).values()
    return next(iter(values), None)
