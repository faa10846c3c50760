"""One process-wide cache in front of Sakura, so a rollout costs a handful of API calls.

- A pinned version (`NAME@3`) never changes while its secret lives: it is kept until the LRU
  bound pushes it out, and served while the vault's listing (the inventory's, at most its
  lifetime old; re-listed in the reader's turn when older) still shows the secret with a
  latest version at or above the pin and not below the latest seen before. A secret gone from
  the listing (deleted) or whose latest version went down (deleted and re-created: versions are
  never deleted one by one) loses every copy held of it.
- The latest version is reused for `latest_ttl` seconds, then read again.
- Identical concurrent reads (same vault, name and version) share one Sakura call.
- Sakura calls go through one rate limiter shared by the whole process; `tenant` (the
  namespace) is the line a read waits in there: when a tenant has too many reads waiting,
  the read fails with `NamespaceCrowded` (or a stale copy is served).
- What does not exist is remembered for a short while (`VaultInventory.known_missing`); a
  pinned version is checked against the vault's listing first, so asking for many missing
  versions costs one listing, not an unveil each.
- When Sakura throttles or fails, a copy known current at most `stale_for` seconds ago (a
  latest value read, a pinned one shown by a listing) is served instead; otherwise the read
  fails with `SecretsUnavailable` (when to retry), or `CredentialsRejected` when Sakura
  refused the injector's key. Once a stale copy has been served,
  Sakura is left alone for that secret for `retry_after` seconds (or Sakura's own
  Retry-After): during an outage, pods get the copy at once instead of each waiting out
  retries that spend the quota.

Values live in memory only. They are never logged and never part of an error or a metric.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from injector.broker.errors import CredentialsRejected, NamespaceCrowded, SecretsUnavailable
from injector.broker.inventory import VaultInventory
from injector.broker.memo import SingleFlight
from sakura import (
    Crowded,
    NotFound,
    SakuraError,
    SakuraReader,
    Throttled,
    Unauthorized,
    Unveiled,
)

log = logging.getLogger(__name__)

CacheKey = tuple[str, str, int | None]


@dataclass(frozen=True)
class CacheSettings:
    """How long values are reused; see docs/broker.md for what each means to users."""

    latest_ttl: float = 30.0
    """Seconds a latest value is reused before Sakura is asked again."""
    stale_for: float = 300.0
    """When Sakura fails: serve a latest value fetched at most this many seconds ago."""
    pinned_entries: int = 4096
    """Pinned versions kept (least recently used pushed out first)."""
    latest_entries: int = 4096
    """Latest values kept."""
    retry_after: float = 10.0
    """Retry-After (seconds) when Sakura failed without saying when to come back; also how
    long a stale copy, once served, is served without asking Sakura again."""

    def __post_init__(self) -> None:
        if self.latest_ttl < 0 or self.stale_for < 0 or self.retry_after <= 0:
            raise ValueError("latest_ttl and stale_for must be >= 0, retry_after > 0")
        if self.stale_for < self.latest_ttl:
            raise ValueError(
                f"stale_for ({self.stale_for:g}s) must be at least latest_ttl "
                f"({self.latest_ttl:g}s)"
            )
        if self.pinned_entries < 1 or self.latest_entries < 1:
            raise ValueError("pinned_entries and latest_entries must be at least 1")


@dataclass(frozen=True)
class _Held:
    """A copy of a value, as Sakura answered it, and what is known of its freshness."""

    copy: Unveiled
    known_at: float
    """When the copy was last known current: read from Sakura, or (pinned) shown by a listing."""
    seen_latest: int
    """The secret's latest version when it was last known current (pinned copies): a listing
    showing less means the secret was re-created."""
    quiet_until: float = 0.0
    """After a failure: serve this copy (within the staleness bound) without asking Sakura."""


class CacheMetrics:
    """Counters labelled by outcome only: no secret names, no vaults, never values."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        where = REGISTRY if registry is None else registry
        self.reads = Counter(
            "sakura_secrets_broker_cache_reads",
            "Secret reads by how they were answered: hit, miss (Sakura called), coalesced "
            "(shared a concurrent call), stale (served past its TTL because Sakura failed), "
            "absent (known missing, Sakura not called), failed",
            ["outcome"],
            registry=where,
        )
        self.sakura_calls = Counter(
            "sakura_secrets_broker_sakura_calls",
            "Calls of Sakura's unveil by result: ok, not_found, throttled, rejected (Sakura "
            "refused the injector's credentials), failed",
            ["outcome"],
            registry=where,
        )


class SecretCache:
    """Reads secret values through the cache; one instance per process."""

    def __init__(
        self,
        client: SakuraReader,
        *,
        settings: CacheSettings | None = None,
        registry: CollectorRegistry | None = None,
        inventory: VaultInventory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`inventory`: the one shared with the admission check (default: its own)."""
        self.client = client
        self.settings = settings if settings is not None else CacheSettings()
        self.metrics = CacheMetrics(registry)
        self.inventory = inventory if inventory is not None else VaultInventory(client, clock=clock)
        self._clock = clock
        self._pinned: OrderedDict[CacheKey, _Held] = OrderedDict()
        self._latest: OrderedDict[CacheKey, _Held] = OrderedDict()
        self._flight: SingleFlight[CacheKey, Unveiled] = SingleFlight()

    async def read(
        self, vault_id: str, name: str, version: int | None = None, *, tenant: str | None = None
    ) -> Unveiled:
        """The value of `name` (latest, or the pinned `version`) in `vault_id`.

        Raises sakura.NotFound, or SecretsUnavailable (or its kinds: errors.py).
        """
        key: CacheKey = (vault_id, name, version)
        try:
            held = self._fresh(key) if version is None else await self._confirmed(key, tenant)
        except NotFound:
            self.metrics.reads.labels("failed").inc()
            raise
        except SakuraError as exc:  # the listing that would confirm a pinned copy failed
            return self._stale_or_fail(key, exc)
        if held is not None:
            self.metrics.reads.labels("hit").inc()
            return held.copy
        held = self._resting(key)
        if held is not None:
            self.metrics.reads.labels("stale").inc()
            return held.copy
        missing = self.known_missing(vault_id, name, version)
        if missing is not None:
            raise missing
        try:
            result, shared = await self._flight.run(key, lambda: self._fetch(key, tenant))
        except (SecretsUnavailable, NotFound):
            self.metrics.reads.labels("failed").inc()
            raise
        if shared:
            self.metrics.reads.labels("coalesced").inc()
        return result

    def known_missing(self, vault_id: str, name: str, version: int | None) -> NotFound | None:
        """Why the read would be answered 404 from memory (Sakura not called), or None.

        Cheap and synchronous: a request naming many missing secrets is refused without a
        task per secret.
        """
        missing = self.inventory.known_missing(vault_id, name, version)
        if missing is not None:
            self.metrics.reads.labels("absent").inc()
        return missing

    def _fresh(self, key: CacheKey) -> _Held | None:
        """The latest value, if read within `latest_ttl`."""
        held = self._latest.get(key)
        if held is None:
            return None
        if self._clock() - held.known_at >= self.settings.latest_ttl:
            return None
        self._latest.move_to_end(key)
        return held

    async def _confirmed(self, key: CacheKey, tenant: str | None) -> _Held | None:
        """The pinned copy, if the vault's listing still shows it current (module docstring).

        None when nothing is held, when Sakura is being left alone after a failure (then
        `_resting` decides), or when the secret was deleted or re-created (its copies are
        dropped). Raises what the listing raises: NotFound, or SakuraError for `_stale_or_fail`.
        """
        held = self._pinned.get(key)
        if held is None or self._clock() < held.quiet_until:
            return None
        vault_id, name, _ = key
        try:
            listing = await self.inventory.latest(vault_id, tenant=tenant)
            if _disproves(listing, name, held) and self._listed_before(vault_id, held):
                # a listing older than the copy cannot disprove it: ask for one as new
                newer = self._clock() - held.known_at
                listing = await self.inventory.latest(vault_id, max_age=newer, tenant=tenant)
        except NotFound:
            self._forget(vault_id, name)
            raise
        if _disproves(listing, name, held):
            self._forget(vault_id, name)
            return None
        if self._pinned.get(key) is not held:  # read again or dropped while listing: newer
            return self._pinned.get(key)
        held = replace(held, known_at=self._clock(), seen_latest=listing[name])
        _put(self._pinned, key, held, self.settings.pinned_entries)
        return held

    def _listed_before(self, vault_id: str, held: _Held) -> bool:
        """Whether the vault's held listing was taken before `held` was last known current."""
        listed = self.inventory.listing(vault_id)
        return listed is not None and self._clock() - listed[0] < held.known_at

    def _forget(self, vault_id: str, name: str) -> None:
        """Drop every copy of a secret that was deleted or re-created."""
        for store in (self._pinned, self._latest):
            for key in [k for k in store if k[0] == vault_id and k[1] == name]:
                del store[key]

    def _resting(self, key: CacheKey) -> _Held | None:
        """The stale copy while Sakura is being left alone after a failure, if still usable."""
        held = self._store(key).get(key)
        if held is None:
            return None
        now = self._clock()
        if now >= held.quiet_until or now - held.known_at > self.settings.stale_for:
            return None
        return held

    def _store(self, key: CacheKey) -> OrderedDict[CacheKey, _Held]:
        return self._latest if key[2] is None else self._pinned

    async def _fetch(self, key: CacheKey, tenant: str | None) -> Unveiled:
        """Ask Sakura (the single flight's leader only); fall back to a recent value."""
        vault_id, name, version = key
        label = _label(key)
        if version is not None:
            try:
                await self._listed(vault_id, name, version, tenant)
            except NotFound:
                raise
            except SakuraError as exc:
                return self._stale_or_fail(key, exc)
        try:
            got = await self.client.unveil(vault_id, name, version, tenant=tenant)
        except NotFound as exc:
            self.metrics.sakura_calls.labels("not_found").inc()
            self._latest.pop(key, None)
            self.inventory.note_missing(vault_id, exc)
            raise
        except Crowded as exc:  # refused by our own limiter: Sakura was not called
            return self._stale_or_fail(key, exc)
        except SakuraError as exc:
            self.metrics.sakura_calls.labels(_outcome(exc)).inc()
            return self._stale_or_fail(key, exc)
        self.metrics.sakura_calls.labels("ok").inc()
        self.metrics.reads.labels("miss").inc()
        if got.name != name or (version is not None and got.version != version):
            raise SecretsUnavailable(
                f"Sakura answered for {got.name}@{got.version} when asked for secret "
                f"{label!r} in vault {vault_id}; not serving it",
                retry_after=self.settings.retry_after,
            )
        self._keep(key, got)
        return got

    async def _listed(self, vault_id: str, name: str, version: int, tenant: str | None) -> None:
        """Raise NotFound unless the vault's listing shows `name@version` (one listing per
        vault serves every pinned read; a listing that lacks it is trusted `negative_ttl`)."""
        held = self.inventory.listing(vault_id)
        if held is None or _lacks(held[1], name, version):
            max_age = None if held is None else self.inventory.negative_ttl
            await self.inventory.latest(vault_id, max_age=max_age, tenant=tenant)
        missing = self.inventory.known_missing(vault_id, name, version)
        if missing is not None:
            raise missing

    def _keep(self, key: CacheKey, got: Unveiled) -> None:
        vault_id, name, version = key
        listed = self.inventory.listing(vault_id)  # a pinned read was just checked against it
        seen = got.version if listed is None else listed[1].get(name, got.version)
        held = _Held(got, self._clock(), max(seen, got.version))
        if version is None:
            _put(self._latest, key, held, self.settings.latest_entries)
        # the latest value is also that version, pinned
        _put(self._pinned, (vault_id, name, got.version), held, self.settings.pinned_entries)

    def _stale_or_fail(self, key: CacheKey, error: SakuraError) -> Unveiled:
        vault_id = key[0]
        label = _label(key)
        retry_after = self.settings.retry_after
        if isinstance(error, Throttled) and error.retry_after is not None:
            retry_after = max(1.0, error.retry_after)
        crowded = isinstance(error, Crowded)
        store = self._store(key)
        held = store.get(key)
        if held is not None:
            now = self._clock()
            age = now - held.known_at
            if age <= self.settings.stale_for:
                if not crowded:  # Sakura itself failed: leave it alone for a while
                    store[key] = replace(held, quiet_until=now + retry_after)
                self.metrics.reads.labels("stale").inc()
                log.warning(
                    "serving secret %r of vault %s last known current %.0fs ago: %s; not "
                    "asking Sakura again for %gs",
                    label,
                    vault_id,
                    age,
                    type(error).__name__,
                    retry_after,
                )
                return held.copy
        if isinstance(error, Crowded):
            raise NamespaceCrowded(
                f"secret {label!r} of vault {vault_id} is not read now: Sakura's quota is "
                f"shared fairly between namespaces and this namespace already has "
                f"{error.waiting} read(s) waiting for it, as many as it may; retry in "
                f"{math.ceil(retry_after)}s",
                retry_after=retry_after,
            )
        if isinstance(error, Unauthorized):
            raise CredentialsRejected(
                f"Sakura rejected the injector's credentials reading secret {label!r} of vault "
                f"{vault_id} ({error.message}); the injector's operator must fix its API key",
                retry_after=retry_after,
            )
        raise SecretsUnavailable(
            f"secret {label!r} of vault {vault_id} cannot be read now and no copy known current "
            f"within the last {self.settings.stale_for:g}s is held ({error.message}); "
            f"retry in {retry_after:g}s",
            retry_after=retry_after,
        )


def _disproves(listing: dict[str, int], name: str, held: _Held) -> bool:
    """The secret is gone from the listing, or its latest version went down (re-created)."""
    latest = listing.get(name)
    return latest is None or latest < held.seen_latest


def _label(key: CacheKey) -> str:
    return key[1] if key[2] is None else f"{key[1]}@{key[2]}"


def _lacks(listing: dict[str, int], name: str, version: int) -> bool:
    latest = listing.get(name)
    return latest is None or version > latest


def _outcome(error: SakuraError) -> str:
    if isinstance(error, Throttled):
        return "throttled"
    return "rejected" if isinstance(error, Unauthorized) else "failed"


def _put(store: OrderedDict[CacheKey, _Held], key: CacheKey, held: _Held, bound: int) -> None:
    store[key] = held
    store.move_to_end(key)
    while len(store) > bound:
        store.popitem(last=False)
