"""SecretCache over the real Sakura client and the emulator; a hand-driven clock for TTLs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from support.broker_world import VALUES, VAULT, sakura_config
from support.clock import HandClock
from support.emulator import EmulatorHandle

from emulator.knobs import Fault
from injector.broker.cache import CacheSettings, SecretCache
from injector.broker.errors import SecretsUnavailable
from injector.broker.metrics import CountedReader
from injector.serving.broker_routes import status_of
from sakura import NotFound, RateLimiter, SakuraClient


@pytest.fixture
async def client(emulator: EmulatorHandle) -> AsyncIterator[SakuraClient]:
    async with SakuraClient(
        sakura_config(emulator.url),
        limiter=RateLimiter(6000, 100),
        # no test here waits for the deadline (faults answer at once): it only has to be
        # long enough that a loaded machine's emulator is never mistaken for a failing one
        deadline=10.0,
        max_retries=0,
    ) as c:
        yield c


def clocked(
    client: SakuraClient, **settings: Any
) -> tuple[SecretCache, HandClock, CollectorRegistry]:
    """A cache on a hand-driven clock, with its own metrics registry."""
    clock, registry = HandClock(), CollectorRegistry()
    cache = SecretCache(client, settings=CacheSettings(**settings), registry=registry, clock=clock)
    return cache, clock, registry


def unveils(emulator: EmulatorHandle) -> int:
    return int(emulator.knobs.stats()["calls"].get("unveil", 0))


def asked(emulator: EmulatorHandle) -> int:
    """Sakura calls of any kind, failed ones too."""
    return int(emulator.knobs.stats()["calls"].get("total", 0))


def counter(cache: SecretCache, registry: CollectorRegistry, name: str, outcome: str) -> float:
    return (
        registry.get_sample_value(f"sakura_secrets_broker_{name}_total", {"outcome": outcome})
        or 0.0
    )


async def test_concurrent_identical_reads_share_one_call(
    client: SakuraClient, emulator: EmulatorHandle
) -> None:
    emulator.knobs.latency = 0.2  # keep the first call in flight while the others arrive
    registry = CollectorRegistry()
    cache = SecretCache(CountedReader(client, registry), registry=registry)
    results = await asyncio.gather(*(cache.read(VAULT, "db") for _ in range(200)))
    assert {r.value for r in results} == {VALUES["db"][1]}
    assert unveils(emulator) == 1
    assert counter(cache, registry, "cache_reads", "coalesced") == 199
    calls = "sakura_secrets_sakura_calls_total"
    for operation in ("list_secrets", "unveil"):  # what Sakura was asked, and no more
        ok = {"operation": operation, "outcome": "ok"}
        assert (
            registry.get_sample_value(calls, ok) == 1 == emulator.knobs.stats()["calls"][operation]
        )
    assert asked(emulator) == 2


async def test_latest_is_reused_for_its_ttl_then_read_again(
    client: SakuraClient, emulator: EmulatorHandle
) -> None:
    cache, clock, _ = clocked(client, latest_ttl=30)
    assert (await cache.read(VAULT, "api")).version == 1
    emulator.store.put(VAULT, "api", "api-v2-rotated-VALUE")
    clock.now += 29
    assert (await cache.read(VAULT, "api")).version == 1
    clock.now += 2
    rotated = await cache.read(VAULT, "api")
    assert (rotated.version, rotated.value) == (2, "api-v2-rotated-VALUE")
    assert unveils(emulator) == 2
    assert calls(emulator)["list_secrets"] == 2


async def test_pinned_versions_are_kept_and_lru_bounded(
    client: SakuraClient, emulator: EmulatorHandle
) -> None:
    cache, clock, _ = clocked(client, pinned_entries=2)
    await cache.read(VAULT, "db", 1)
    clock.now += 10_000  # pinned values do not expire
    assert (await cache.read(VAULT, "db", 1)).value == VALUES["db"][0]
    assert unveils(emulator) == 1
    await cache.read(VAULT, "api", 1)
    await cache.read(VAULT, "cfg", 1)  # pushes out db@1, the least recently used
    await cache.read(VAULT, "db", 1)
    assert unveils(emulator) == 4
    # a latest read also pins the version it returned
    await cache.read(VAULT, "tls")
    await cache.read(VAULT, "tls", 1)
    assert unveils(emulator) == 5


async def test_stale_value_served_within_bound_then_503(
    client: SakuraClient, emulator: EmulatorHandle
) -> None:
    cache, clock, registry = clocked(client, latest_ttl=10, stale_for=60, retry_after=7)
    await cache.read(VAULT, "db")
    emulator.knobs.set_faults([Fault(503, 1.0)])
    clock.now += 59
    assert (await cache.read(VAULT, "db")).value == VALUES["db"][1]
    assert counter(cache, registry, "cache_reads", "stale") == 1
    clock.now += 2
    with pytest.raises(SecretsUnavailable) as caught:
        await cache.read(VAULT, "db")
    assert caught.value.retry_after == 7
    assert "secret 'db' of vault 110000000001 cannot be read now" in caught.value.message
    with pytest.raises(SecretsUnavailable):
        await cache.read(VAULT, "api")  # never fetched: nothing to fall back on


async def test_after_a_failure_the_stale_copy_is_served_without_asking_again(
    client: SakuraClient, emulator: EmulatorHandle
) -> None:
    cache, clock, registry = clocked(client, latest_ttl=10, stale_for=300, retry_after=20)
    await cache.read(VAULT, "db")  # a listing and an unveil
    emulator.knobs.set_faults([Fault(503, 1.0)])
    clock.now += 11
    assert (await cache.read(VAULT, "db")).value == VALUES["db"][1]
    assert asked(emulator) == 3  # the failed listing behind the first stale answer
    clock.now += 19
    for _ in range(5):  # a rollout during the outage: answered at once, Sakura left alone
        assert (await cache.read(VAULT, "db")).value == VALUES["db"][1]
    assert asked(emulator) == 3
    assert counter(cache, registry, "cache_reads", "stale") == 6
    clock.now += 2  # the 20 s are over: Sakura is asked again (and still fails)
    assert (await cache.read(VAULT, "db")).value == VALUES["db"][1]
    assert asked(emulator) == 4
    emulator.knobs.set_faults([])
    emulator.store.put(VAULT, "db", "db-v3-after-the-outage")
    clock.now += 21
    assert (await cache.read(VAULT, "db")).value == "db-v3-after-the-outage"
    assert (await cache.read(VAULT, "db")).version == 3  # fresh again: a hit
    assert calls(emulator) == {"list_secrets": 4, "unveil": 2}


async def test_throttling_passes_sakuras_retry_after(
    client: SakuraClient, emulator: EmulatorHandle
) -> None:
    emulator.knobs.set_rate_limit(2, 60)
    cache = SecretCache(client, registry=CollectorRegistry())
    await cache.read(VAULT, "db")  # the listing and db's unveil; api's unveil is one too many
    with pytest.raises(SecretsUnavailable) as caught:
        await cache.read(VAULT, "api")
    assert 50 <= caught.value.retry_after <= 60


async def test_not_found_is_not_hidden_by_a_stale_copy(
    client: SakuraClient, emulator: EmulatorHandle
) -> None:
    cache, clock, _ = clocked(client)
    await cache.read(VAULT, "extra")
    emulator.store.delete(VAULT, "extra")
    clock.now += 31
    with pytest.raises(NotFound):
        await cache.read(VAULT, "extra")


def test_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="stale_for"):
        CacheSettings(latest_ttl=60, stale_for=10)


def calls(emulator: EmulatorHandle) -> dict[str, int]:
    got = emulator.knobs.stats()["calls"]
    assert isinstance(got, dict)
    return {k: int(v) for k, v in got.items() if k != "total"}


async def test_many_missing_pinned_versions_cost_one_listing(
    client: SakuraClient, emulator: EmulatorHandle
) -> None:
    cache, clock, registry = clocked(client)
    missing = await asyncio.gather(
        *(cache.read(VAULT, "db", v) for v in range(3, 103)), return_exceptions=True
    )
    assert all(isinstance(e, NotFound) and e.kind == "version" for e in missing)
    assert str(missing[0]) == "secret 'db' has no version 3 in vault 110000000001 (listed 0s ago)"
    assert calls(emulator) == {"list_secrets": 1}  # before: 100 unveils and 100 listings
    clock.now += 9  # remembered: asking again costs nothing
    for v in (3, 50, 1000):
        with pytest.raises(NotFound):
            await cache.read(VAULT, "db", v)
    assert calls(emulator) == {"list_secrets": 1}
    assert counter(cache, registry, "cache_reads", "absent") == 3
    clock.now += 2  # past the negative TTL (10 s): one listing again, for all of them
    await asyncio.gather(
        *(cache.read(VAULT, "db", v) for v in range(3, 50)), return_exceptions=True
    )
    assert calls(emulator) == {"list_secrets": 2}
    assert (await cache.read(VAULT, "db", 2)).value == VALUES["db"][1]  # existing: one unveil
    assert calls(emulator) == {"list_secrets": 2, "unveil": 1}


async def test_a_later_listing_corrects_a_remembered_missing_version(
    client: SakuraClient, emulator: EmulatorHandle
) -> None:
    cache, clock, _ = clocked(client)
    with pytest.raises(NotFound):
        await cache.read(VAULT, "db", 3)
    emulator.store.put(VAULT, "db", "db-v3-new-VALUE")
    clock.now += 1
    with pytest.raises(NotFound):  # still believed missing (negative TTL)
        await cache.read(VAULT, "db", 3)
    # admission re-lists a vault when a pod names what is missing: that listing is shared
    assert (await cache.inventory.latest(VAULT, max_age=0))["db"] == 3
    assert (await cache.read(VAULT, "db", 3)).value == "db-v3-new-VALUE"


async def test_a_missing_secret_is_remembered_until_a_listing_shows_it(
    client: SakuraClient, emulator: EmulatorHandle
) -> None:
    cache, clock, _ = clocked(client)
    for _ in range(5):
        with pytest.raises(NotFound) as caught:
            await cache.read(VAULT, "nope")
        assert caught.value.kind == "secret"
    assert calls(emulator) == {"list_secrets": 1}  # the listing lacks it: nothing unveiled
    emulator.store.put(VAULT, "nope", "nope-v1-VALUE")
    clock.now += 1
    with pytest.raises(NotFound):
        await cache.read(VAULT, "nope")
    assert calls(emulator) == {"list_secrets": 1}
    await cache.inventory.latest(VAULT, max_age=0)
    assert (await cache.read(VAULT, "nope")).value == "nope-v1-VALUE"
    assert calls(emulator) == {"unveil": 1, "list_secrets": 2}


async def test_an_unknown_vault_costs_one_call_per_negative_ttl(
    client: SakuraClient, emulator: EmulatorHandle
) -> None:
    cache, clock, _ = clocked(client)
    for name, version in [("a", None), ("b", 3), ("c", None)]:
        with pytest.raises(NotFound) as caught:
            await cache.read("119999999999", name, version)
        assert caught.value.kind == "vault"
    with pytest.raises(NotFound):  # the admission check asks the same inventory
        await cache.inventory.latest("119999999999")
    assert sum(calls(emulator).values()) == 1
    clock.now += 10
    with pytest.raises(NotFound):
        await cache.inventory.latest("119999999999")
    assert sum(calls(emulator).values()) == 2


async def test_a_namespace_with_too_many_reads_waiting_gets_429_others_wait_their_turn(
    emulator: EmulatorHandle,
) -> None:
    clock = HandClock()
    limiter = RateLimiter(60, 1, max_waiting=1, clock=clock)
    async with SakuraClient(
        sakura_config(emulator.url), limiter=limiter, deadline=30.0, max_retries=0
    ) as sakura:
        cache = SecretCache(sakura, registry=CollectorRegistry(), clock=clock)
        first = asyncio.create_task(cache.read(VAULT, "api"))  # the listing takes the slot
        for _ in range(20):
            await asyncio.sleep(0.01)
        clock.now += 1.0  # the next slot, for api's unveil; then api is cached
        limiter.dispatch()
        await first
        waiting = asyncio.create_task(cache.read(VAULT, "db", tenant="a"))
        other = asyncio.create_task(cache.read(VAULT, "cfg", tenant="b"))
        for _ in range(20):
            await asyncio.sleep(0.01)  # let both reach the limiter's lines
        assert (limiter.waiting("a"), limiter.waiting("b")) == (1, 1)
        with pytest.raises(SecretsUnavailable) as caught:
            await cache.read(VAULT, "tls", tenant="a")
        assert status_of(caught.value) == 429 and caught.value.retry_after >= 1
        assert "this namespace already has 1 read(s) waiting for it" in caught.value.message
        # cache hits and reads sharing a waiting call are never held back or refused
        assert (await cache.read(VAULT, "api", tenant="a")).value == VALUES["api"][0]
        shared = asyncio.create_task(cache.read(VAULT, "db", tenant="a"))
        for _ in range(2):  # one slot a second, round-robin: a's call, then b's
            clock.now += 1.0
            limiter.dispatch()
            await asyncio.sleep(0.01)
        results = await asyncio.gather(waiting, other, shared)
        assert [r.value for r in results] == [VALUES["db"][1], VALUES["cfg"][0], VALUES["db"][1]]
