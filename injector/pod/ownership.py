"""Who owns the files: the uid/gid the init container runs as, so it creates them that way.

Explicit annotations win; otherwise the target containers' own securityContext (container
level over pod level) when they agree, since that is the user who must read the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from injector.checks import Denied

_PREFIX = "sakura-secrets.io/"
_MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int
    warnings: tuple[str, ...] = ()


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
    warnings: list[str] = []

    uid = run_as_user
    if uid is None:
        uid = _agreed(containers, pod_context, "runAsUser", "run-as-user")
        if uid is None:
            uid = fallback_uid
            warnings.append(
                f"sakura-secrets: no run-as-user annotation or runAsUser on the target containers; "
                f"files are owned by uid {uid}. If the app runs as another user, set "
                f"{_PREFIX}run-as-user"
            )
        elif uid == 0:
            raise Denied(
                f"annotation {_PREFIX}run-as-user: the target containers run as root (uid 0) and "
                "the init container must not run as root; set run-as-user to a non-root uid "
                "(an app running as root can still read the files)"
            )
    gid = run_as_group
    if gid is None:
        gid = _agreed(containers, pod_context, "runAsGroup", "run-as-group")
    if gid is None:
        fs_group = _valid_id(pod_context.get("fsGroup"), "the pod's securityContext.fsGroup")
        gid = fs_group if fs_group is not None else uid
    return Owner(uid=uid, gid=gid, warnings=tuple(warnings))


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
        f"annotation {_PREFIX}{key}: the target containers disagree on {field} ({shown}); set "
        f"{_PREFIX}{key} to the id that should own the files, or narrow {_PREFIX}containers"
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
