"""What secrets a vault holds (names and latest versions, never values), listed rarely.

Admission asks this for every pod, and the broker for every read (a latest version is the
listing's; a pinned one must be shown by it); one `list_secrets` call per vault serves all
pods of a rollout, and every refresh, for `ttl` seconds, and concurrent askers share that one
call.

It also remembers, for `negative_ttl` seconds, what does not exist: a vault Sakura said is
unknown, a secret an unveil found missing, and whatever a listing younger than that lacks (a
secret, or a version above the latest; versions are never deleted one by one). So asking again
and again for something missing costs Sakura nothing until then. A newer listing is the
latest word: it replaces what was remembered about its vault.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

from injector.broker.memo import SingleFlight
from sakura import NotFound, SakuraReader

NEGATIVE_TTL = 10.0

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class VaultInventory:
    """Remembers each vault's listing; `latest(vault, max_age)` re-lists when it is older."""

    def __init__(
        self,
        client: SakuraReader,
        *,
        ttl: float = 30.0,
        negative_ttl: float = NEGATIVE_TTL,
        max_vaults: int = 256,
        max_missing: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < negative_ttl <= ttl:
            raise ValueError(
                f"negative_ttl ({negative_ttl:g}s) must be above 0 and at most the listing's "
                f"ttl ({ttl:g}s)"
            )
        self.client = client
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_vaults = max_vaults
        self.max_missing = max_missing
        self._clock = clock
        self._held: OrderedDict[str, tuple[float, dict[str, int]]] = OrderedDict()
        self._flight: SingleFlight[str, tuple[float, dict[str, int]]] = SingleFlight()
        self._gone_vaults: OrderedDict[str, tuple[float, NotFound]] = OrderedDict()
        self._gone_secrets: OrderedDict[tuple[str, str], tuple[float, NotFound]] = OrderedDict()

    async def latest(
        self, vault_id: str, *, max_age: float | None = None, tenant: str | None = None
    ) -> dict[str, int]:
        """Secret name -> latest version, at most `max_age` (default `ttl`) seconds old.

        Raises sakura.NotFound (kind "vault") without asking Sakura while the vault is
        remembered missing. `tenant`: whose call it is, for the rate limiter.
        """
        _, listing = await self.listed(vault_id, max_age=max_age, tenant=tenant)
        return listing

    async def listed(
        self, vault_id: str, *, max_age: float | None = None, tenant: str | None = None
    ) -> tuple[float, dict[str, int]]:
        """`latest`, with when (the clock's time) the listing was taken."""
        limit = self.ttl if max_age is None else min(max_age, self.ttl)
        held = self._held.get(vault_id)
        if held is not None and self._clock() - held[0] < limit:
            return held
        gone = self._remembered(self._gone_vaults, vault_id)
        if gone is not None:
            raise _again(gone)
        listed, _ = await self._flight.run(vault_id, lambda: self._list(vault_id, tenant))
        return listed

    def listing(self, vault_id: str) -> tuple[float, dict[str, int]] | None:
        """The held listing and its age in seconds, if younger than `ttl`; never calls Sakura."""
        held = self._held.get(vault_id)
        if held is None:
            return None
        age = self._clock() - held[0]
        return (age, held[1]) if age < self.ttl else None

    def known_missing(self, vault_id: str, name: str, version: int | None) -> NotFound | None:
        """Why `name` (`@version`) is known not to exist now, or None if it may exist."""
        gone = self._remembered(self._gone_vaults, vault_id)
        if gone is not None:
            return _again(gone)
        gone = self._remembered(self._gone_secrets, (vault_id, name))
        if gone is not None:
            return _again(gone)
        held = self.listing(vault_id)
        if held is None or held[0] >= self.negative_ttl:
            return None
        age, listing = held
        latest = listing.get(name)
        if latest is None:
            return absent_secret(vault_id, name, age)
        if version is not None and version > latest:
            return NotFound(  # never the latest version: a denial must not tell it
                f"secret {name!r} has no version {version} in vault {vault_id} (listed "
                f"{age:.0f}s ago)",
                kind="version",
                name=f"{name}@{version}",
            )
        return None

    def note_missing(self, vault_id: str, error: NotFound) -> None:
        """Remember what Sakura just said does not exist (a vault, or a secret)."""
        now = self._clock()
        if error.kind == "vault":
            self._held.pop(vault_id, None)
            _put(self._gone_vaults, vault_id, (now, error), self.max_vaults)
        elif error.kind == "secret":
            _put(self._gone_secrets, (vault_id, error.name), (now, error), self.max_missing)

    def _remembered(
        self, store: OrderedDict[_K, tuple[float, NotFound]], key: _K
    ) -> NotFound | None:
        entry = store.get(key)
        if entry is None:
            return None
        if self._clock() - entry[0] >= self.negative_ttl:
            del store[key]
            return None
        return entry[1]

    async def _list(self, vault_id: str, tenant: str | None) -> tuple[float, dict[str, int]]:
        try:
            secrets = await self.client.list_secrets(vault_id, tenant=tenant)
        except NotFound as exc:
            self.note_missing(vault_id, exc)
            raise
        listed = (self._clock(), {s.name: s.latest_version for s in secrets})
        # a vault listed again moves to the end: the listing pushed out is the oldest one
        _put(self._held, vault_id, listed, self.max_vaults)
        # the newest word on this vault: what was remembered missing in it is superseded
        self._gone_vaults.pop(vault_id, None)
        for key in [k for k in self._gone_secrets if k[0] == vault_id]:
            del self._gone_secrets[key]
        return listed


def _put(store: OrderedDict[_K, _V], key: _K, entry: _V, bound: int) -> None:
    """Keep `entry` as the newest; push the oldest out beyond `bound`."""
    store[key] = entry
    store.move_to_end(key)
    while len(store) > bound:
        store.popitem(last=False)


def absent_secret(vault_id: str, name: str, age: float) -> NotFound:
    """The 404 for a secret that a listing of its vault, taken `age` seconds ago, lacks."""
    return NotFound(
        f"secret {name!r} does not exist in vault {vault_id} (listed {age:.0f}s ago)",
        kind="secret",
        name=name,
    )


def _again(error: NotFound) -> NotFound:
    """A fresh exception with the same meaning (re-raising one object grows its traceback)."""
    again = NotFound(error.message, kind=error.kind, name=error.name, status=error.status)
    again.sakura_text = error.sakura_text
    return again
