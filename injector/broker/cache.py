"""One process-wide cache in front of Sakura, so a rollout, and every refresh after it, costs
a handful of API calls.

- A value at a version never changes while its secret lives: every value read (pinned, or
  the latest one at the time) is kept by vault, name and version until the LRU bound pushes
  it out.
- The latest version is the vault's listing's (the inventory's `list_secrets`, one call for
  every secret of the vault, at most `latest_ttl` old; listed again in the reader's turn when
  older), and only a version not held is unveiled: however many pods read or refresh, a vault
  costs one listing per `latest_ttl` and one unveil per new version. A refresh that holds the
  latest version already (`refresh(..., held)`) is answered unchanged: no value, no unveil.
- A pinned version is served while the listing (at most its own lifetime old) still shows
  the secret with a latest version at or above the pin and not below the latest seen before.
  A secret gone from the listing (deleted) or whose latest version went down (deleted and
  re-created: versions are never deleted one by one) loses every copy held of it.
- Identical concurrent reads share one Sakura call: the vault's listing, or the unveil of
  one version.
- Sakura calls go through one rate limiter shared by the whole process; `tenant` (the
  namespace) is the line a read waits in there: when a tenant has too many reads waiting,
  the read fails with `NamespaceCrowded` (or a stale copy is served).
- What does not exist is remembered for a short while (`VaultInventory.known_missing`); every
  read is checked against the vault's listing first, so asking for many missing names or
  versions costs one listing, not an unveil each.
- When Sakura throttles or fails, a copy known current at most `stale_for` seconds ago (the
  latest value as of the last listing that showed it, a pinned one shown by a listing) is
  served instead; otherwise the read fails with `SecretsUnavailable` (when to retry), or
  `CredentialsRejected` when Sakura refused the injector's key. Once a stale copy has been
  served, Sakura is left alone for that secret for `retry_after` seconds (or Sakura's own
  Retry-After): during an outage, pods get the copy at once instead of each waiting out
  retries that spend the quota.

Values live in memory only. They are never logged and never part of an error or a metric.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from injector.broker.copies import CacheKey, Copies, Held
from injector.broker.errors import CredentialsRejected, NamespaceCrowded, SecretsUnavailable
from injector.broker.inventory import VaultInventory, absent_secret
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


@dataclass(frozen=True)
class CacheSettings:
    """How long values are reused; see docs/broker.md for what each means to users."""

    latest_ttl: float = 30.0
    """Seconds a vault's listing answers which version is the latest before it is listed
    again (how long a new version may take to be served)."""
    stale_for: float = 300.0
    """When Sakura fails: serve a copy known current at most this many seconds ago."""
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


class CacheMetrics:
    """Counters labelled by outcome only: no secret names, no vaults, never values (the Sakura
    calls themselves are counted where they all pass: `injector.broker.metrics`)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        where = REGISTRY if registry is None else registry
        self.reads = Counter(
            "sakura_secrets_broker_cache_reads",
            "Secret reads by how they were answered: hit, miss (Sakura called), coalesced "
            "(shared a concurrent call), unchanged (a refresh already holds the latest "
            "version: no value sent), stale (served past its TTL because Sakura failed), "
            "absent (known missing, Sakura not called), failed",
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
        self._copies = Copies(
            pinned_entries=self.settings.pinned_entries,
            latest_entries=self.settings.latest_entries,
        )
        self._flight: SingleFlight[CacheKey, Unveiled] = SingleFlight()

    async def read(
        self, vault_id: str, name: str, version: int | None = None, *, tenant: str | None = None
    ) -> Unveiled:
        """The value of `name` (latest, or the pinned `version`) in `vault_id`.

        Raises sakura.NotFound, or SecretsUnavailable (or its kinds: errors.py).
        """
        if version is None:
            got = await self.refresh(vault_id, name, None, tenant=tenant)
            assert got is not None  # only a held version is answered unchanged
            return got
        key: CacheKey = (vault_id, name, version)
        try:
            held = await self._confirmed(key, tenant)
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
            seen = await self._listed(vault_id, name, version, tenant)
            return await self._unveiled(key, tenant, seen)
        except (SecretsUnavailable, NotFound):
            self.metrics.reads.labels("failed").inc()
            raise
        except SakuraError as exc:
            return self._stale_or_fail(key, exc)

    async def refresh(
        self, vault_id: str, name: str, held: int | None, *, tenant: str | None = None
    ) -> Unveiled | None:
        """The latest value of `name` in `vault_id`, or None when that is the `held` version:
        the caller has it, so no value is read (or sent). Raises as `read` does."""
        key: CacheKey = (vault_id, name, None)
        missing = self.known_missing(vault_id, name, None)
        if missing is not None:
            raise missing
        try:
            got = await self._current(key, held, tenant)
        except NotFound:  # the vault, the secret or the version listed went away
            self._copies.forget(vault_id, name)
            self.metrics.reads.labels("failed").inc()
            raise
        except SecretsUnavailable:
            self.metrics.reads.labels("failed").inc()
            raise
        except SakuraError as exc:
            got = self._stale_or_fail(key, exc)
        return None if got is None or got.version == held else got

    async def _current(
        self, key: CacheKey, held: int | None, tenant: str | None
    ) -> Unveiled | None:
        """The latest version's value by the vault's listing; None when that is `held`.

        While Sakura is left alone after a failure, the stale copy. A version not held is
        unveiled (once for all concurrent readers); raises what the listing or unveil raise.
        """
        resting = self._resting(key)
        if resting is not None:
            self.metrics.reads.labels("stale").inc()
            return resting.copy
        vault_id, name, _ = key
        taken, version = await self._latest_listed(vault_id, name, held, tenant)
        pinned_key: CacheKey = (vault_id, name, version)
        latest, pinned = self._copies.get(key), self._copies.get(pinned_key)
        if any(h is not None and h.disproved_by(version) for h in (latest, pinned)):
            self._copies.forget(vault_id, name)  # its latest version went down: re-created
            latest = pinned = None
        if version == held:
            if latest is not None and latest.copy.version == version:
                self._copies.keep(key, replace(latest, known_at=taken))
            self.metrics.reads.labels("unchanged").inc()
            return None
        if pinned is None:
            got = await self._unveiled(pinned_key, tenant, version)
        else:
            self.metrics.reads.labels("hit").inc()
            self._copies.keep(pinned_key, pinned)
            got = pinned.copy
        self._copies.keep(key, Held(got, taken, version))
        return got

    async def _latest_listed(
        self, vault_id: str, name: str, held: int | None, tenant: str | None
    ) -> tuple[float, int]:
        """When the vault's listing was taken, and the latest version it shows of `name`.

        A listing that lacks the name, or shows an older version than the caller `held` (it
        was served by a replica that listed later), is trusted only while younger than the
        negative TTL: listed again, so another replica's newer version is not taken back for
        longer than that. NotFound if even such a listing lacks the name.
        """
        listing = self.inventory.listed
        taken, latest = await listing(vault_id, max_age=self.settings.latest_ttl, tenant=tenant)
        if latest.get(name, 0) < (held or 1):
            max_age = self.inventory.negative_ttl
            taken, latest = await listing(vault_id, max_age=max_age, tenant=tenant)
        if name not in latest:
            raise absent_secret(vault_id, name, self._clock() - taken)
        return taken, latest[name]

    def known_missing(self, vault_id: str, name: str, version: int | None) -> NotFound | None:
        """Why the read would be answered 404 from memory (Sakura not called), or None.

        Cheap and synchronous: a request naming many missing secrets is refused without a
        task per secret.
        """
        missing = self.inventory.known_missing(vault_id, name, version)
        if missing is not None:
            self.metrics.reads.labels("absent").inc()
        return missing

    async def _confirmed(self, key: CacheKey, tenant: str | None) -> Held | None:
        """The pinned copy, if the vault's listing still shows it current (module docstring).

        None when nothing is held, when Sakura is being left alone after a failure (then
        `_resting` decides), or when the secret was deleted or re-created (its copies are
        dropped). Raises what the listing raises: NotFound, or SakuraError for `_stale_or_fail`.
        """
        held = self._copies.get(key)
        if held is None or self._clock() < held.quiet_until:
            return None
        vault_id, name, _ = key
        try:
            listing = await self.inventory.latest(vault_id, tenant=tenant)
        except NotFound:
            self._copies.forget(vault_id, name)
            raise
        if held.disproved_by(listing.get(name)):
            self._copies.forget(vault_id, name)
            return None
        if self._copies.get(key) is not held:  # read again or dropped while listing: newer
            return self._copies.get(key)
        held = replace(held, known_at=self._clock(), seen_latest=listing[name])
        self._copies.keep(key, held)
        return held

    def _resting(self, key: CacheKey) -> Held | None:
        """The stale copy while Sakura is being left alone after a failure, if still usable."""
        held = self._copies.get(key)
        if held is None:
            return None
        now = self._clock()
        if now >= held.quiet_until or now - held.known_at > self.settings.stale_for:
            return None
        return held

    async def _unveiled(self, key: CacheKey, tenant: str | None, seen: int) -> Unveiled:
        """The value at `key`'s version, unveiled once for every concurrent reader of it;
        `seen`: the secret's latest version in the listing the read was checked against."""
        got, shared = await self._flight.run(key, lambda: self._unveil(key, tenant, seen))
        if shared:
            self.metrics.reads.labels("coalesced").inc()
        return got

    async def _unveil(self, key: CacheKey, tenant: str | None, seen: int) -> Unveiled:
        """Ask Sakura (the single flight's leader only) and keep what it answered."""
        vault_id, name, version = key
        try:
            got = await self.client.unveil(vault_id, name, version, tenant=tenant)
        except SakuraError as exc:
            if isinstance(exc, NotFound):
                self.inventory.note_missing(vault_id, exc)
            raise
        self.metrics.reads.labels("miss").inc()
        if got.name != name or got.version != version:
            raise SecretsUnavailable(
                f"Sakura answered for {got.name}@{got.version} when asked for secret "
                f"{_label(key)!r} in vault {vault_id}; not serving it",
                retry_after=self.settings.retry_after,
            )
        self._copies.keep(key, Held(got, self._clock(), max(seen, got.version)))
        return got

    async def _listed(self, vault_id: str, name: str, version: int, tenant: str | None) -> int:
        """The latest version of `name` the vault's listing shows; NotFound unless it shows
        `name@version` (one listing per vault serves every pinned read; a listing that lacks
        it is trusted `negative_ttl`)."""
        held = self.inventory.listing(vault_id)
        listing = None if held is None else held[1]
        if listing is None or _lacks(listing, name, version):
            max_age = None if held is None else self.inventory.negative_ttl
            listing = await self.inventory.latest(vault_id, max_age=max_age, tenant=tenant)
        missing = self.inventory.known_missing(vault_id, name, version)
        if missing is not None:
            raise missing
        return listing[name]  # shown: a listing lacking it is missing, or listed again above

    def _stale_or_fail(self, key: CacheKey, error: SakuraError) -> Unveiled:
        vault_id = key[0]
        label = _label(key)
        retry_after = self.settings.retry_after
        if isinstance(error, Throttled) and error.retry_after is not None:
            retry_after = max(1.0, error.retry_after)
        crowded = isinstance(error, Crowded)
        held = self._copies.get(key)
        if held is not None:
            now = self._clock()
            age = now - held.known_at
            if age <= self.settings.stale_for:
                if not crowded:  # Sakura itself failed: leave it alone for a while
                    self._copies.keep(key, replace(held, quiet_until=now + retry_after))
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
        self.metrics.reads.labels("failed").inc()
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


def _label(key: CacheKey) -> str:
    return key[1] if key[2] is None else f"{key[1]}@{key[2]}"


def _lacks(listing: dict[str, int], name: str, version: int) -> bool:
    latest = listing.get(name)
    return latest is None or version > latest
