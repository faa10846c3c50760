"""The resource annotations -> requests and limits of each container the webhook adds.

The init container reads `cpu-request`, `cpu-limit`, `memory-request`, `memory-limit`; the
refresh container reads its own `refresh-` keys, falling back to the shared ones, then to its
own small defaults (`pod.resources.REFRESH_DEFAULTS`). A request above its limit is refused
naming where each amount came from and the key that fixes it.
"""

from __future__ import annotations

from collections.abc import Mapping

from contract.annotations import (
    CPU_LIMIT,
    CPU_REQUEST,
    MEMORY_LIMIT,
    MEMORY_REQUEST,
    REFRESH_CPU_LIMIT,
    REFRESH_CPU_REQUEST,
    REFRESH_MEMORY_LIMIT,
    REFRESH_MEMORY_REQUEST,
    short_name,
)
from injector.webhook.errors import Denied
from injector.webhook.pod.resources import REFRESH_DEFAULTS, Resources
from injector.webhook.quantity import parse_quantity

SHARED = {
    "cpu_request": CPU_REQUEST,
    "cpu_limit": CPU_LIMIT,
    "memory_request": MEMORY_REQUEST,
    "memory_limit": MEMORY_LIMIT,
}
"""The init container's keys (a `Resources` field -> its annotation)."""
REFRESH = {
    "cpu_request": REFRESH_CPU_REQUEST,
    "cpu_limit": REFRESH_CPU_LIMIT,
    "memory_request": REFRESH_MEMORY_REQUEST,
    "memory_limit": REFRESH_MEMORY_LIMIT,
}
"""The refresh container's own keys."""


def init_resources(ours: Mapping[str, str]) -> Resources:
    """The init container's requests and limits."""
    return _resources(ours, (SHARED,), Resources(), whose="")


def refresh_resources(ours: Mapping[str, str]) -> Resources:
    """The refresh container's: its own keys, else the shared ones, else its defaults."""
    return _resources(ours, (REFRESH, SHARED), REFRESH_DEFAULTS, whose="refresh container's ")


def _resources(
    ours: Mapping[str, str],
    chain: tuple[dict[str, str], ...],
    defaults: Resources,
    *,
    whose: str,
) -> Resources:
    chosen: dict[str, str] = {}
    source: dict[str, str | None] = {}
    amounts = {}
    for attr in chain[0]:
        key = next((keys[attr] for keys in chain if keys[attr] in ours), None)
        text = (getattr(defaults, attr) if key is None else ours[key]).strip()
        try:
            amounts[attr] = parse_quantity(text)
        except ValueError as exc:  # never a default's
            raise Denied(f"annotation {key}: {exc}") from None
        chosen[attr], source[attr] = text, key
    for kind in ("cpu", "memory"):
        request, limit = f"{kind}_request", f"{kind}_limit"
        if amounts[request] > amounts[limit]:
            given = [k for k in (source[request], source[limit]) if k is not None]
            raise Denied(
                f"annotation {given[0]}: the {whose}{kind} request "
                f"{chosen[request]}{_origin(source[request], chain, default='')} exceeds the "
                f"{kind} limit {chosen[limit]}{_origin(source[limit], chain)}; "
                f"set {chain[0][limit]} at least as high as {source[request] or chain[0][request]}"
            )
    return Resources(**chosen)


def _origin(
    key: str | None, chain: tuple[dict[str, str], ...], default: str = " (the default)"
) -> str:
    """Where an amount came from, when it is not the container's own annotation."""
    if key is None:
        return default
    return "" if key in chain[0].values() else f" (from {short_name(key)})"
