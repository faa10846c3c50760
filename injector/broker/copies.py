"""The copies of secret values the cache holds, each with what is known of its freshness.

Two stores, each bounded (the least recently used copy is pushed out first): every version
read, by (vault, name, version), kept for good while its secret lives (a value at a version
never changes); and the latest value of each (vault, name), as the last listing that showed
it, which is what a latest read falls back on when Sakura fails. In memory only.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from sakura import Unveiled

CacheKey = tuple[str, str, int | None]
"""(vault, name, version); version None is the latest value's key."""


@dataclass(frozen=True)
class Held:
    """A copy of a value, as Sakura answered it, and what is known of its freshness."""

    copy: Unveiled
    known_at: float
    """When the copy was last known current: read from Sakura, or shown by a listing."""
    seen_latest: int
    """The secret's latest version when the copy was last known current: a listing showing
    less means the secret was re-created."""
    quiet_until: float = 0.0
    """After a failure: serve this copy (within the staleness bound) without asking Sakura."""

    def disproved_by(self, latest: int | None) -> bool:
        """The secret is gone from a listing (`latest` None), or its latest version went
        down (re-created)."""
        return latest is None or latest < self.seen_latest


class Copies:
    """The versions read and the latest values, each store bounded by its own count."""

    def __init__(self, *, pinned_entries: int, latest_entries: int) -> None:
        self._bounds = {True: latest_entries, False: pinned_entries}
        self._stores: dict[bool, OrderedDict[CacheKey, Held]] = {
            True: OrderedDict(),
            False: OrderedDict(),
        }

    def get(self, key: CacheKey) -> Held | None:
        return self._stores[key[2] is None].get(key)

    def keep(self, key: CacheKey, held: Held) -> None:
        """Keep `held` as the most recently used; push the oldest out beyond the bound."""
        latest = key[2] is None
        store = self._stores[latest]
        store[key] = held
        store.move_to_end(key)
        while len(store) > self._bounds[latest]:
            store.popitem(last=False)

    def forget(self, vault_id: str, name: str) -> None:
        """Drop every copy of a secret that was deleted or re-created."""
        for store in self._stores.values():
            for key in [k for k in store if k[0] == vault_id and k[1] == name]:
                del store[key]
