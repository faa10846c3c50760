"""Who owns the files: the uid/gid the init container runs as, so it creates them that way.

Explicit annotations win; otherwise the target containers' own securityContext (container
level over pod level) when they agree, since that is the user who must read the files. When
no uid is known (the image's USER decides), the files are made readable through a group the
app is known to be in, else by every user of the containers that mount them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contract import Plan
from contract.annotations import CONTAINERS, FILE_MODE, RUN_AS_GROUP, RUN_AS_USER, short_name
from injector.webhook.checks import Denied

_MAX_ID = 2**31 - 1
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

    def own(self, plan: Plan, explicit_modes: frozenset[str]) -> Plan:
        """`plan` with this owner, and this mode for the files not in `explicit_modes`."""
        files = plan.files
        if self.file_mode is not None:
            mode = self.file_mode
            files = tuple(
                f if f.name in explicit_modes else dataclasses.replace(f, mode=mode) for f in files
            )
        return dataclasses.replace(plan, uid=self.uid, gid=self.gid, files=files)


def resolve_owner(
    spec: dict[str, Any],
    targets: Sequence[str],
    *,
    run_as_user: int | None,
    run_as_group: int | None,
    fallback_uid: int,
) -> Owner:
    """Resolve uid and gid; raise Denied when the target containers disagree or run as root."""
    pod_context = spec.get("securityContext") or {}
    chosen = set(targets)  # a set: a pod may list thousands of containers before validation
    containers = [c for c in spec.get("containers") or () if c["name"] in chosen]

    uid = run_as_user
    if uid is None:
        uid = _agreed(containers, pod_context, "runAsUser", RUN_AS_USER)
        if uid == 0:
            raise Denied(
                f"annotation {RUN_AS_USER}: the target containers run as root (uid 0) and "
                "the init container must not run as root; "
                f"set {short_name(RUN_AS_USER)} to a non-root uid "
                "(an app running as root can still read the files)"
            )
    gid = run_as_group
    if gid is None:
        gid = _agreed(containers, pod_context, "runAsGroup", RUN_AS_GROUP)
    if gid is None:
        gid = _valid_id(pod_context.get("fsGroup"), "the pod's securityContext.fsGroup")
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


def _agreed(
    containers: Sequence[dict[str, Any]], pod_context: dict[str, Any], field: str, key: str
) -> int | None:
    """The one value of `field` all containers run with; None when none sets it."""
    effective: dict[str, int | None] = {}
    pod_value = _valid_id(pod_context.get(field), f"the pod's securityContext.{field}")
    for container in containers:
        where = f"container {container['name']!r} securityContext.{field}"
        own = _valid_id((container.get("securityContext") or {}).get(field), where)
        effective[container["name"]] = own if own is not None else pod_value
    values = set(effective.values())
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


def _valid_id(value: int | None, where: str) -> int | None:
    """An id the pod states, refused when Kubernetes would refuse it (it is not validated yet).

    Mutating webhooks see the pod before the API server validates it; a negative or huge id
    would otherwise reach the plan and fail there as an internal error.
    """
    if value is not None and not 0 <= value <= _MAX_ID:
        raise Denied(
            f"{where} is {value}, not a valid id (0 to {_MAX_ID}); fix the pod's securityContext"
        )
    return value
