"""Resources of the injected containers: small defaults (their syntax: `quantity`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Resources:
    """Requests and limits of an injected container; the defaults fit a one-shot fetch."""

    cpu_request: str = "50m"
    cpu_limit: str = "500m"
    memory_request: str = "64Mi"
    memory_limit: str = "128Mi"

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


REFRESH_DEFAULTS = Resources(
    cpu_request="10m", cpu_limit="200m", memory_request="48Mi", memory_limit="128Mi"
)
"""The refresh container's: it lives as long as the pod and sleeps most of the time, so it
requests little; its limits let it do the init container's work (the same plan, the same
templates), which takes about 35 MiB of Python."""
