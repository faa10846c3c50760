"""What secrets a vault holds (names and latest versions, never values), listed rarely.

Admission asks this for every pod; one `list_secrets` call per vault serves all pods of a
rollout for `ttl` seconds, and concurrent askers share that one call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from injector.broker.memo import SingleFlight
from sakura import SecretInfo


class Lister(Protocol):
    async def list_secrets(self, vault_id: str) -> list[SecretInfo]: ...


class VaultInventory:
    """Remembers each vault's listing; `latest(vault, max_age)` re-lists when it is older."""

    def __init__(
        self,
        client: Lister,
        *,
        ttl: float = 30.0,
        max_vaults: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.max_vaults = max_vaults
        self._clock = clock
        self._held: dict[str, tuple[float, dict[str, int]]] = {}
        self._flight: SingleFlight[str, dict[str, int]] = SingleFlight()

    async def latest(self, vault_id: str, *, max_age: float | None = None) -> dict[str, int]:
        """Secret name -> latest version, at most `max_age` (default `ttl`) seconds old."""
        limit = self.ttl if max_age is None else min(max_age, self.ttl)
        held = self._held.get(vault_id)
        if held is not None and self._clock() - held[0] < limit:
            return held[1]
        listing, _ = await self._flight.run(vault_id, lambda: self._list(vault_id))
        return listing

    async def _list(self, vault_id: str) -> dict[str, int]:
        listing = {s.name: s.latest_version for s in await self.client.list_secrets(vault_id)}
        if vault_id not in self._held and len(self._held) >= self.max_vaults:
            self._held.pop(next(iter(self._held)))
        self._held[vault_id] = (self._clock(), listing)
        return listing
