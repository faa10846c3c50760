"""The secret cache on a fake Sakura and a hand-driven clock: its public behaviour only.

test_broker_cache.py and test_broker_faults.py run it in the broker against the emulator and
the local cluster; these pin what a read returns or raises and when Sakura is asked: keys
that include the vault and the version, lifetimes, the staleness bound, the quiet period.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from support.broker_fakes import A, B, FakeSakura, cache
from support.clock import HandClock

from injector.broker.cache import CacheMetrics, CacheSettings, SecretCache
from injector.broker.errors import CredentialsRejected, SecretsUnavailable
from injector.broker.inventory import VaultInventory
from injector.broker.metrics import CountedReader
from injector.serving.broker_routes import status_of
from sakura import Crowded, NotFound, Throttled, Unauthorized, Unavailable, Unveiled


async def test_the_latest_value_is_kept_per_vault() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    assert (await secrets.read(A, "db")).value == "a-db-2"
    assert (await secrets.read(B, "db")).value == "b-db-1"  # never vault A's copy
    assert (await secrets.read(A, "db")).value == "a-db-2"
    assert sakura.calls == [(A, "db", 2), (B, "db", 1)]  # the version each listing showed
    assert sakura.listings == [A, B]


async def test_a_pinned_version_is_kept_per_vault_and_version_for_good() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    assert (await secrets.read(A, "db", 1)).value == "a-db-1"
    assert (await secrets.read(A, "db", 2)).value == "a-db-2"
    assert (await secrets.read(B, "db", 1)).value == "b-db-1"
    clock.now += 10**6
    assert (await secrets.read(A, "db", 1)).value == "a-db-1"
    assert len(sakura.calls) == 3


async def test_a_latest_read_also_pins_its_version() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    latest = await secrets.read(A, "db")
    assert (latest.name, latest.version, latest.value) == ("db", 2, "a-db-2")
    assert (await secrets.read(A, "db", 2)).value == "a-db-2"
    assert sakura.calls == [(A, "db", 2)]


async def test_the_latest_value_is_read_again_after_latest_ttl() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, latest_ttl=30)
    await secrets.read(A, "db")
    sakura.values[(A, "db")].append("a-db-3")
    clock.now += 29.9
    assert (await secrets.read(A, "db")).value == "a-db-2"
    clock.now += 0.1
    assert (await secrets.read(A, "db")).version == 3
    assert sakura.calls == [(A, "db", 2), (A, "db", 3)]
    assert sakura.listings == [A, A]


async def test_an_answer_for_another_version_or_name_is_not_served() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    sakura.answer_as = Unveiled("db", 2, "a-db-2")
    with pytest.raises(SecretsUnavailable) as caught:
        await secrets.read(A, "db", 1)
    assert caught.value.message == (
        f"Sakura answered for db@2 when asked for secret 'db@1' in vault {A}; not serving it"
    )
    assert caught.value.retry_after == 10.0
    sakura.answer_as = Unveiled("other", 2, "x")
    with pytest.raises(SecretsUnavailable, match="answered for other@2"):
        await secrets.read(A, "db")
    sakura.answer_as = None
    assert (await secrets.read(A, "db", 1)).value == "a-db-1"  # nothing wrong was kept


async def test_concurrent_reads_of_one_secret_share_one_call() -> None:
    sakura, clock, registry = FakeSakura(), HandClock(), CollectorRegistry()
    secrets = cache(sakura, clock, registry)
    sakura.gate = asyncio.Event()
    reads = [asyncio.ensure_future(secrets.read(A, "db")) for _ in range(5)]
    other = asyncio.ensure_future(secrets.read(B, "db"))
    await asyncio.sleep(0)
    sakura.gate.set()
    assert {r.value for r in await asyncio.gather(*reads)} == {"a-db-2"}
    assert (await other).value == "b-db-1"
    assert sorted(sakura.calls) == [(A, "db", 2), (B, "db", 1)]
    metrics = generate_latest(registry).decode()
    assert 'outcome="coalesced"} 4.0' in metrics


async def test_when_sakura_fails_a_recent_copy_is_served_then_sakura_is_left_alone() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, latest_ttl=30, stale_for=300, retry_after=10)
    await secrets.read(A, "db")
    sakura.fail = Unavailable("HTTP 503")
    clock.now += 31
    assert (await secrets.read(A, "db")).value == "a-db-2"  # stale, Sakura asked once
    assert len(sakura.listings) == 2
    clock.now += 9.9
    assert (await secrets.read(A, "db")).value == "a-db-2"  # quiet: Sakura not asked
    assert len(sakura.listings) == 2
    clock.now += 0.1
    assert (await secrets.read(A, "db")).value == "a-db-2"  # quiet over: asked again
    assert len(sakura.listings) == 3
    assert len(sakura.calls) == 1  # the listings failed: no unveil was tried


async def test_sakuras_retry_after_sets_the_quiet_period_and_the_503s() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    await secrets.read(A, "db")
    sakura.fail = Throttled("slow down", retry_after=20)
    clock.now += 31
    await secrets.read(A, "db")
    clock.now += 19.9
    await secrets.read(A, "db")
    assert len(sakura.listings) == 2
    with pytest.raises(SecretsUnavailable) as caught:
        await secrets.read(B, "db")
    assert caught.value.retry_after == 20
    sakura.fail = Throttled("slow down", retry_after=0.2)
    with pytest.raises(SecretsUnavailable) as caught:
        await secrets.read(A, "db", 1)
    assert caught.value.retry_after == 1.0  # never less than a second
    sakura.fail = Throttled("slow down")
    with pytest.raises(SecretsUnavailable) as caught:
        await secrets.read(B, "db", 1)
    assert caught.value.retry_after == 10.0


async def test_no_copy_older_than_stale_for_is_served() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, latest_ttl=30, stale_for=300)
    await secrets.read(A, "db")
    sakura.fail = Unavailable("HTTP 503")
    clock.now += 300
    assert (await secrets.read(A, "db")).value == "a-db-2"  # exactly at the bound: served
    clock.now += 10.1  # past the quiet period and the bound
    with pytest.raises(SecretsUnavailable) as caught:
        await secrets.read(A, "db")
    assert caught.value.message == (
        f"secret 'db' of vault {A} cannot be read now and no copy known current within the "
        "last 300s is held (HTTP 503); retry in 10s"
    )


async def test_a_pinned_version_never_falls_back_to_the_latest_copy() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    await secrets.read(A, "db")
    sakura.fail = Unavailable("HTTP 503")
    with pytest.raises(SecretsUnavailable, match=r"secret 'db@1' of vault"):
        await secrets.read(A, "db", 1)


async def test_not_found_is_raised_and_drops_the_latest_copy() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    await secrets.read(A, "db")
    del sakura.values[(A, "db")]
    clock.now += 31
    with pytest.raises(NotFound):
        await secrets.read(A, "db")
    clock.now += 11  # past the negative TTL (10 s): Sakura is asked again
    sakura.fail = Unavailable("HTTP 503")
    with pytest.raises(SecretsUnavailable):  # the deleted secret's copy is gone
        await secrets.read(A, "db")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"latest_ttl": -1}, "latest_ttl and stale_for must be >= 0, retry_after > 0"),
        ({"retry_after": 0}, "latest_ttl and stale_for must be >= 0, retry_after > 0"),
        ({"latest_ttl": 40, "stale_for": 30}, "stale_for (30s) must be at least latest_ttl (40s)"),
        ({"pinned_entries": 0}, "pinned_entries and latest_entries must be at least 1"),
        ({"latest_entries": 0}, "pinned_entries and latest_entries must be at least 1"),
    ],
)
def test_settings_are_checked(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        CacheSettings(**settings)  # type: ignore[arg-type]
    assert str(caught.value) == message


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    """`name{outcome}` (`name{operation:outcome}` for Sakura calls) -> value, zeros left out."""
    found = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.value:
                operation = sample.labels.get("operation")
                label = sample.labels["outcome"]
                label = label if operation is None else f"{operation}:{label}"
                found[f"{sample.name}{{{label}}}"] = sample.value
    return found


def counted_cache(sakura: FakeSakura, clock: HandClock, registry: CollectorRegistry) -> SecretCache:
    """A cache whose Sakura calls are counted as `serve` counts them (`CountedReader`)."""
    return SecretCache(
        CountedReader(sakura, registry),
        settings=CacheSettings(latest_ttl=30.0, stale_for=300.0, retry_after=10.0),
        registry=registry,
        clock=clock,
    )


async def test_every_read_and_sakura_call_is_counted_by_outcome() -> None:
    sakura, clock, registry = FakeSakura(), HandClock(), CollectorRegistry()
    secrets = counted_cache(sakura, clock, registry)
    await secrets.read(A, "db")  # miss, ok
    await secrets.read(A, "db")  # hit
    assert await secrets.refresh(A, "db", 2) is None  # unchanged
    with pytest.raises(NotFound):
        await secrets.read(A, "nope")  # absent: the listing lacks it, nothing unveiled
    sakura.values[(A, "db")].append("a-db-3")
    sakura.unveil_fail = Throttled("slow down")
    clock.now += 31
    await secrets.read(A, "db")  # throttled (the unveil of version 3), stale
    await secrets.read(A, "db")  # stale (quiet)
    sakura.unveil_fail = Unavailable("HTTP 503")
    with pytest.raises(SecretsUnavailable):
        await secrets.read(B, "db")  # failed, failed
    sakura.unveil_fail = NotFound("gone", kind="secret", name="db")
    with pytest.raises(NotFound):
        await secrets.read(A, "db", 1)  # not_found, failed
    reads, calls = (
        "sakura_secrets_broker_cache_reads_total",
        "sakura_secrets_sakura_calls_total",
    )
    assert _samples(registry) == {
        f"{reads}{{miss}}": 1,
        f"{reads}{{hit}}": 1,
        f"{reads}{{unchanged}}": 1,
        f"{reads}{{absent}}": 1,
        f"{reads}{{failed}}": 2,
        f"{reads}{{stale}}": 2,
        f"{calls}{{list_secrets:ok}}": 3,  # A, A again past the TTL, B
        f"{calls}{{unveil:ok}}": 1,
        f"{calls}{{unveil:not_found}}": 1,
        f"{calls}{{unveil:throttled}}": 1,
        f"{calls}{{unveil:failed}}": 1,
    }
    text = generate_latest(registry).decode()
    assert (
        "# HELP sakura_secrets_broker_cache_reads_total Secret reads by how they were answered: "
        "hit, miss (Sakura called), coalesced (shared a concurrent call), unchanged (a refresh "
        "already holds the latest version: no value sent), stale (served past its TTL because "
        "Sakura failed), absent (known missing, Sakura not called), failed\n"
    ) in text


async def test_every_path_answers_the_name_and_the_version_it_holds() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    assert await secrets.read(A, "db") == Unveiled("db", 2, "a-db-2")  # miss
    assert await secrets.read(A, "db") == Unveiled("db", 2, "a-db-2")  # hit
    assert await secrets.read(A, "db", 2) == Unveiled("db", 2, "a-db-2")  # pinned by the read
    sakura.fail = Unavailable("HTTP 503")
    clock.now += 31
    assert await secrets.read(A, "db") == Unveiled("db", 2, "a-db-2")  # stale
    assert await secrets.read(A, "db") == Unveiled("db", 2, "a-db-2")  # quiet


async def test_a_first_read_of_a_missing_secret_is_not_found() -> None:
    secrets = cache(FakeSakura(), HandClock())
    with pytest.raises(NotFound):
        await secrets.read(A, "nope")
    with pytest.raises(NotFound):
        await secrets.read(A, "db", 9)


async def test_the_stale_serve_is_logged_without_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    await secrets.read(A, "db")
    sakura.fail = Unavailable("HTTP 503")
    clock.now += 31
    with caplog.at_level("WARNING", logger="injector.broker.cache"):
        await secrets.read(A, "db")
    assert caplog.messages == [
        f"serving secret 'db' of vault {A} last known current 31s ago: Unavailable; not asking "
        "Sakura again for 10s"
    ]
    assert "a-db-2" not in caplog.text


async def test_at_the_staleness_bound_the_quiet_copy_is_still_served_without_a_call() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, latest_ttl=30, stale_for=300, retry_after=10)
    await secrets.read(A, "db")
    sakura.fail = Unavailable("HTTP 503")
    clock.now += 295
    await secrets.read(A, "db")  # stale, quiet for 10 s
    clock.now += 5  # exactly 300 s old
    await secrets.read(A, "db")
    assert len(sakura.listings) == 2


async def test_the_oldest_entries_are_pushed_out_first() -> None:
    sakura, clock = FakeSakura(), HandClock()
    sakura.values.update({(A, n): [f"a-{n}-1"] for n in ("x", "y", "z")})
    secrets = cache(sakura, clock, latest_entries=2, pinned_entries=2)
    for name in ("x", "y"):
        await secrets.read(A, name)
    await secrets.read(A, "x")  # x is now the most recent
    await secrets.read(A, "z")  # pushes out y
    sakura.calls.clear()
    for name in ("x", "z", "y"):
        await secrets.read(A, name)
    assert sakura.calls == [(A, "y", 1)]


def test_settings_bounds_that_are_allowed() -> None:
    assert CacheSettings(latest_ttl=0, stale_for=0, retry_after=1).retry_after == 1
    assert CacheSettings(latest_ttl=5, stale_for=5).stale_for == 5
    assert CacheSettings(pinned_entries=1, latest_entries=1).pinned_entries == 1
    assert SecretCache(FakeSakura(), registry=CollectorRegistry()).settings == CacheSettings()


# ------------------------------------------------ what does not exist, tenants, refusals


def _reads(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value(
        "sakura_secrets_broker_cache_reads_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_a_pinned_read_is_checked_against_the_listing_in_the_callers_turn() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    assert await secrets.read(A, "db", 1, tenant="shop") == Unveiled("db", 1, "a-db-1")
    assert sakura.tenants == [("list", "shop"), ("unveil", "shop")]
    assert sakura.listings == [A]
    await secrets.read(A, "db", 2, tenant="shop")  # the same listing shows version 2 too
    assert sakura.listings == [A]
    await secrets.read(B, "db", 1, tenant="other")  # another vault: its own listing
    assert sakura.listings == [A, B]
    assert sakura.tenants[-2:] == [("list", "other"), ("unveil", "other")]


async def test_a_version_past_the_latest_costs_one_listing_then_nothing_for_a_while() -> None:
    sakura, clock = FakeSakura(), HandClock()
    registry = CollectorRegistry()
    secrets = cache(sakura, clock, registry)
    for version in (3, 4, 3):
        with pytest.raises(NotFound):
            await secrets.read(A, "db", version)
    assert sakura.listings == [A] and sakura.calls == []  # no unveil of a missing version
    assert secrets.known_missing(A, "db", 3) is not None
    assert secrets.known_missing(A, "db", 2) is None
    assert secrets.known_missing(B, "db", 3) is None  # what vault A lacks says nothing of B
    assert _reads(registry, "absent") == 3  # reads 2 and 3, and the known_missing(A, 3) above
    sakura.values[(A, "db")].append("a-db-3")  # version 3 is created ...
    clock.now += 11  # ... and a listing older than the negative TTL (10 s) is not trusted
    assert await secrets.read(A, "db", 3) == Unveiled("db", 3, "a-db-3")
    assert sakura.listings == [A, A]
    assert secrets.known_missing(A, "db", 3) is None


async def test_a_secret_unveil_found_missing_is_remembered_for_its_vault_only() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    sakura.values[(A, "gone")] = ["x"]  # listed, but gone by the time it is unveiled
    sakura.unveil_fail = NotFound("no such secret", kind="secret", name="gone")
    with pytest.raises(NotFound):
        await secrets.read(A, "gone", tenant="t")
    assert secrets.known_missing(A, "gone", None) is not None
    assert secrets.known_missing(B, "gone", None) is None
    assert secrets.known_missing(A, "db", None) is None
    with pytest.raises(NotFound):
        await secrets.read(A, "gone")
    assert sakura.calls == [(A, "gone", 1)]  # remembered: Sakura asked once
    sakura.unveil_fail = None
    assert await secrets.read(B, "db") == Unveiled("db", 1, "b-db-1")


async def test_a_crowded_namespace_gets_a_429_with_the_limiters_retry_after() -> None:
    sakura, clock = FakeSakura(), HandClock()
    registry = CollectorRegistry()
    secrets = cache(sakura, clock, registry)
    sakura.fail = Crowded("full", retry_after=7.2, waiting=10)
    with pytest.raises(SecretsUnavailable) as refused:
        await secrets.read(A, "db", tenant="busy")
    assert status_of(refused.value) == 429
    assert refused.value.retry_after == 7.2
    assert not isinstance(refused.value, CredentialsRejected)
    assert refused.value.message == (
        f"secret 'db' of vault {A} is not read now: Sakura's quota is shared fairly between "
        "namespaces and this namespace already has 10 read(s) waiting for it, as many as it "
        "may; retry in 8s"
    )
    # nothing was asked of Sakura: no call is counted as failed
    assert registry.get_sample_value(
        "sakura_secrets_sakura_calls_total", {"outcome": "failed"}
    ) in (None, 0.0)


async def test_a_crowded_namespace_is_served_a_recent_copy_and_sakura_is_not_left_alone() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    await secrets.read(A, "db")
    clock.now += 31
    sakura.fail = Crowded("full", retry_after=5, waiting=10)
    assert await secrets.read(A, "db") == Unveiled("db", 2, "a-db-2")  # stale, not a 429
    sakura.fail = None
    sakura.values[(A, "db")].append("a-db-3")
    # a crowded limiter is not Sakura failing: no quiet period, the next read asks again
    assert await secrets.read(A, "db") == Unveiled("db", 3, "a-db-3")


async def test_a_rejected_key_is_its_own_refusal_and_outcome() -> None:
    sakura, clock = FakeSakura(), HandClock()
    registry = CollectorRegistry()
    secrets = SecretCache(
        CountedReader(sakura, registry),
        settings=CacheSettings(retry_after=12.0),
        registry=registry,
        clock=clock,
    )
    sakura.unveil_fail = Unauthorized("HTTP 401 bad key")
    with pytest.raises(SecretsUnavailable) as refused:
        await secrets.read(A, "db")
    assert isinstance(refused.value, CredentialsRejected)
    assert status_of(refused.value) == 503
    assert refused.value.retry_after == 12.0
    assert refused.value.message == (
        f"Sakura rejected the injector's credentials reading secret 'db' of vault {A} (HTTP 401 "
        "bad key); the injector's operator must fix its API key"
    )
    assert (
        registry.get_sample_value(
            "sakura_secrets_sakura_calls_total", {"operation": "unveil", "outcome": "rejected"}
        )
        == 1.0
    )


def test_unavailable_is_a_plain_503_unless_told() -> None:
    plain = SecretsUnavailable("no", retry_after=3)
    assert (status_of(plain), isinstance(plain, CredentialsRejected), plain.retry_after) == (
        503,
        False,
        3,
    )


async def test_a_listing_that_shows_the_version_is_trusted_for_its_whole_ttl() -> None:
    """Only a listing that lacks the version is re-read after the negative TTL (10 s)."""
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    await secrets.read(A, "db", 1)
    clock.now += 11  # past the negative TTL, within the listing's 30 s
    assert await secrets.read(A, "db", 2) == Unveiled("db", 2, "a-db-2")  # 2 is the latest
    assert sakura.listings == [A]
    assert sakura.calls == [(A, "db", 1), (A, "db", 2)]


async def test_the_inventory_shared_with_admission_serves_the_cache() -> None:
    sakura, clock = FakeSakura(), HandClock()
    shared = VaultInventory(sakura, clock=clock)
    await shared.latest(A)  # e.g. the admission check listed the vault
    secrets = SecretCache(sakura, registry=CollectorRegistry(), inventory=shared, clock=clock)
    assert await secrets.read(A, "db", 1) == Unveiled("db", 1, "a-db-1")
    assert sakura.listings == [A]


def test_without_a_registry_the_metrics_go_to_the_process_wide_one() -> None:
    try:
        metrics = CacheMetrics(None)
    except ValueError as exc:  # a broker in this process registered them there already
        assert "Duplicated timeseries" in str(exc)
        return
    try:
        metrics.reads.labels("hit").inc()
        sample = {"outcome": "hit"}
        assert REGISTRY.get_sample_value("sakura_secrets_broker_cache_reads_total", sample) == 1
    finally:
        REGISTRY.unregister(metrics.reads)


async def test_a_pinned_copy_is_served_while_one_listing_per_lifetime_shows_it() -> None:
    """Case 7 of issue 15: one listing per vault and lifetime confirms every pinned copy."""
    sakura, clock = FakeSakura(), HandClock()
    sakura.values[(A, "api")] = ["a-api-1"]
    registry = CollectorRegistry()
    secrets = cache(sakura, clock, registry)
    await secrets.read(A, "db", 1)
    await secrets.read(A, "api", 1)
    assert (sakura.listings, len(sakura.calls)) == ([A], 2)
    clock.now += 29.9  # within the listing's lifetime (30 s): nothing asked
    for name in ("db", "api", "db"):
        assert (await secrets.read(A, name, 1, tenant="shop")).version == 1
    assert (sakura.listings, len(sakura.calls)) == ([A], 2)
    clock.now += 0.1  # the listing is 30 s old: listed again, once, in the reader's turn
    reads = [secrets.read(A, n, 1, tenant="shop") for n in ("db", "api", "db", "api")]
    assert [r.value for r in await asyncio.gather(*reads)] == ["a-db-1", "a-api-1"] * 2
    assert (sakura.listings, len(sakura.calls)) == ([A, A], 2)
    assert sakura.tenants[-1] == ("list", "shop")
    assert _reads(registry, "hit") == 7


async def test_a_deleted_secrets_pinned_copies_are_dropped_once_a_listing_lacks_it() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    await secrets.read(A, "db")  # the latest (2), pinned too
    await secrets.read(A, "db", 1)
    await secrets.read(B, "db", 1)  # the same name in another vault stays
    del sakura.values[(A, "db")]
    clock.now += 29  # within the lifetime the deletion is not seen yet
    assert (await secrets.read(A, "db", 1)).value == "a-db-1"
    clock.now += 1
    for version in (1, 2):
        with pytest.raises(NotFound) as caught:
            await secrets.read(A, "db", version)
        assert (caught.value.kind, caught.value.name) == ("secret", "db")
    assert sakura.listings == [A, B, A]
    sakura.values[(A, "db")] = ["a-db-new-1", "a-db-new-2"]  # re-created with as many versions
    clock.now += 30
    assert (await secrets.read(A, "db", 1)).value == "a-db-new-1"  # the copy was dropped
    assert (await secrets.read(A, "db")).value == "a-db-new-2"  # the latest copy too
    assert (await secrets.read(B, "db", 1)).value == "b-db-1"
    assert sakura.calls.count((B, "db", 1)) == 1


async def test_a_re_created_secret_whose_latest_went_down_loses_its_copies() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    sakura.values[(A, "db")] = ["old-1", "old-2", "old-3"]
    await secrets.read(A, "db", 1)  # listed: latest 3
    await secrets.read(A, "db", 2)
    sakura.values[(A, "db")] = ["new-1", "new-2"]  # deleted and re-created: latest 2 < 3
    clock.now += 30
    assert await secrets.read(A, "db", 2) == Unveiled("db", 2, "new-2")
    assert (await secrets.read(A, "db", 1)).value == "new-1"  # every version's copy went
    assert sakura.calls.count((A, "db", 1)) == 2
    sakura.values[(A, "db")] = ["newer-1"]  # and again, now below the pin
    clock.now += 30
    with pytest.raises(NotFound) as caught:
        await secrets.read(A, "db", 2)
    assert (caught.value.kind, caught.value.name) == ("version", "db@2")
    assert "latest" not in str(caught.value)
    assert (await secrets.read(A, "db", 1)).value == "newer-1"


async def test_a_listing_that_grew_is_the_mark_a_later_one_must_not_fall_below() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    await secrets.read(A, "db", 1)  # latest 2
    sakura.values[(A, "db")].extend(["a-db-3", "a-db-4"])
    clock.now += 30
    assert (await secrets.read(A, "db", 1)).value == "a-db-1"  # confirmed: latest 4 now
    sakura.values[(A, "db")] = ["new-1", "new-2", "new-3"]  # 3: above the first mark, below 4
    clock.now += 30
    assert (await secrets.read(A, "db", 1)).value == "new-1"


async def test_a_vault_gone_from_sakura_drops_the_copy_and_is_not_found() -> None:
    sakura, clock = FakeSakura(), HandClock()
    registry = CollectorRegistry()
    secrets = cache(sakura, clock, registry)
    await secrets.read(A, "db", 1)
    sakura.fail = NotFound("no such vault", kind="vault", name=A)
    clock.now += 30
    with pytest.raises(NotFound) as caught:
        await secrets.read(A, "db", 1)
    assert caught.value.kind == "vault"
    assert _reads(registry, "failed") == 1
    sakura.fail = None
    clock.now += 30
    assert (await secrets.read(A, "db", 1)).value == "a-db-1"
    assert sakura.calls.count((A, "db", 1)) == 2  # the copy was dropped: read again


async def test_when_the_listing_fails_a_recently_confirmed_copy_is_served_then_left_alone() -> None:
    sakura, clock = FakeSakura(), HandClock()
    registry = CollectorRegistry()
    secrets = cache(sakura, clock, registry, stale_for=100, retry_after=10)
    await secrets.read(A, "db", 1)
    clock.now += 60
    await secrets.read(A, "db", 1)  # confirmed by a second listing at 60 s
    sakura.fail = Unavailable("HTTP 503")
    clock.now += 90  # a failing listing: the copy was known current 90 s ago
    assert (await secrets.read(A, "db", 1)).value == "a-db-1"
    assert sakura.listings == [A, A, A]
    clock.now += 9.9  # the quiet period (10 s): served without listing
    assert (await secrets.read(A, "db", 1)).value == "a-db-1"
    assert sakura.listings == [A, A, A]
    assert _reads(registry, "stale") == 2
    clock.now += 0.2  # past the quiet period and 100 s past the last confirmation
    with pytest.raises(SecretsUnavailable) as caught:
        await secrets.read(A, "db", 1)
    assert caught.value.message.startswith(
        f"secret 'db@1' of vault {A} cannot be read now and no copy known current within the "
        "last 100s is held"
    )
    sakura.fail = None
    assert (await secrets.read(A, "db", 1)).value == "a-db-1"  # kept: it was not disproved
    assert len(sakura.calls) == 1


async def test_a_crowded_namespace_is_served_a_confirmed_pinned_copy() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    await secrets.read(A, "db", 1)
    sakura.fail = Crowded("too many waiting", waiting=10, retry_after=3)
    clock.now += 30
    assert (await secrets.read(A, "db", 1, tenant="shop")).value == "a-db-1"
    assert (await secrets.read(A, "db", 1, tenant="shop")).value == "a-db-1"
    assert sakura.listings == [A, A, A]  # never left alone: the limiter refused, not Sakura


async def test_a_copy_dropped_while_the_listing_is_awaited_is_read_again() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, pinned_entries=1)
    await secrets.read(A, "db", 1)
    clock.now += 30
    await secrets.inventory.latest(B)  # listed before the gate: B's reads need not list
    sakura.list_gate = asyncio.Event()
    pinned = asyncio.create_task(secrets.read(A, "db", 1))
    await asyncio.sleep(0)
    sakura.values[(A, "db")] = ["x-1", "x-2"]
    await secrets.read(B, "db")  # pins b-db-1 and pushes A's db@1 out (one pinned entry)
    sakura.list_gate.set()
    assert (await pinned).value == "x-1"


async def test_a_secret_newer_than_the_held_listing_is_kept_at_the_version_read() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    await secrets.read(A, "db", 1)  # the listing: db only
    sakura.values[(A, "new")] = ["new-1"]
    clock.now += 11  # past the negative TTL: the listing's silence on "new" is not trusted
    assert await secrets.read(A, "new", tenant="shop") == Unveiled("new", 1, "new-1")
    assert sakura.tenants[-2:] == [("list", "shop"), ("unveil", "shop")]  # listed again
    # the newer listing shows it: the pinned reads of it cost nothing more
    assert await secrets.read(A, "new", 1) == Unveiled("new", 1, "new-1")
    assert sakura.listings == [A, A] and sakura.calls == [(A, "db", 1), (A, "new", 1)]


async def test_at_the_end_of_the_quiet_period_the_listing_confirms_without_an_unveil() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, retry_after=10)
    await secrets.read(A, "db", 1)
    sakura.fail = Unavailable("HTTP 503")
    clock.now += 30
    assert (await secrets.read(A, "db", 1)).value == "a-db-1"  # stale: quiet for 10 s
    sakura.fail = None
    clock.now += 10  # exactly the end of the quiet period: the listing is asked again
    assert (await secrets.read(A, "db", 1)).value == "a-db-1"
    assert (len(sakura.listings), len(sakura.calls)) == (3, 1)


async def test_a_listing_newer_than_the_copy_is_trusted_without_asking_again() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    await secrets.read(A, "db", 1)  # listed and read at the same instant
    del sakura.values[(A, "db")]
    await secrets.inventory.latest(A, max_age=0)  # e.g. admission lists again, same instant
    with pytest.raises(NotFound):
        await secrets.read(A, "db", 1)
    assert sakura.listings == [A, A]


# ------------------------------------------------ refreshes: the listing says what changed


async def test_many_refreshes_cost_one_listing_per_ttl_and_one_unveil_per_new_version() -> None:
    sakura, clock = FakeSakura(), HandClock()
    names = ("db", "api", "cache", "smtp", "tls")
    sakura.values.update({(A, n): [f"{n}-1"] for n in names[1:]})
    secrets = cache(sakura, clock, latest_ttl=30)
    held = {n: 0 for n in names}  # pods that hold nothing yet

    async def pod() -> dict[str, int]:
        mine = dict(held)
        for name in names:
            got = await secrets.refresh(A, name, mine[name] or None, tenant="shop")
            if got is not None:
                mine[name] = got.version
        return mine

    sakura.list_gate = asyncio.Event()
    first = [asyncio.ensure_future(pod()) for _ in range(50)]
    await asyncio.sleep(0)
    sakura.list_gate.set()
    pods = await asyncio.gather(*first)
    assert (len(sakura.listings), len(sakura.calls)) == (1, 5)  # one listing, one unveil each
    held = pods[0]
    for _ in range(3):  # refreshes within the TTL: nothing asked at all
        clock.now += 9
        assert await asyncio.gather(*(pod() for _ in range(50))) == [held] * 50
    assert (len(sakura.listings), len(sakura.calls)) == (1, 5)
    sakura.values[(A, "api")].append("api-2")  # one secret changes
    clock.now += 9  # 36 s: the listing is past its TTL
    for _ in range(3):
        assert {p["api"] for p in await asyncio.gather(*(pod() for _ in range(50)))} == {2}
        clock.now += 9
    assert sakura.listings == [A, A]
    assert sakura.calls[5:] == [(A, "api", 2)]  # one unveil for the new version, no more
    assert sakura.tenants[-1] == ("unveil", "shop")


async def test_a_refresh_holding_the_latest_is_unchanged_without_any_unveil() -> None:
    sakura, clock, registry = FakeSakura(), HandClock(), CollectorRegistry()
    secrets = cache(sakura, clock, registry)
    # e.g. a broker restarted: it never read the value the pod holds, and need not
    assert await secrets.refresh(A, "db", 2, tenant="shop") is None
    assert (sakura.listings, sakura.calls) == ([A], [])
    assert sakura.tenants == [("list", "shop")]
    assert await secrets.refresh(A, "db", 1) == Unveiled("db", 2, "a-db-2")  # an older one held
    assert await secrets.refresh(A, "db", 3) == Unveiled("db", 2, "a-db-2")  # a version unknown
    assert await secrets.refresh(A, "db", None) == Unveiled("db", 2, "a-db-2")
    assert sakura.calls == [(A, "db", 2)]
    assert (_reads(registry, "unchanged"), _reads(registry, "miss"), _reads(registry, "hit")) == (
        1,
        1,
        2,
    )


async def test_a_changed_secret_is_served_at_its_new_version_once_listed() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, latest_ttl=20)
    assert await secrets.refresh(A, "db", 1) == Unveiled("db", 2, "a-db-2")
    sakura.values[(A, "db")].append("a-db-3")
    clock.now += 19.9  # the listing still says 2
    assert await secrets.refresh(A, "db", 2) is None
    clock.now += 0.1
    assert await secrets.refresh(A, "db", 2) == Unveiled("db", 3, "a-db-3")
    assert await secrets.refresh(A, "db", 3) is None
    assert await secrets.read(A, "db", 2) == Unveiled("db", 2, "a-db-2")  # still kept


async def test_when_the_listing_fails_a_refresh_is_answered_from_the_stale_copy() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, latest_ttl=30, stale_for=300, retry_after=10)
    await secrets.read(A, "db")
    sakura.fail = Unavailable("HTTP 503")
    clock.now += 31
    assert await secrets.refresh(A, "db", 2) is None  # the stale copy is the one held
    assert await secrets.refresh(A, "db", 1) == Unveiled("db", 2, "a-db-2")  # quiet period
    assert sakura.listings == [A, A]
    clock.now += 300
    with pytest.raises(SecretsUnavailable):  # nothing known current within 300 s
        await secrets.refresh(A, "db", 2)


async def test_a_new_version_that_cannot_be_unveiled_leaves_the_last_one_served() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, retry_after=10)
    await secrets.read(A, "db")
    sakura.values[(A, "db")].append("a-db-3")
    sakura.unveil_fail = Throttled("slow down", retry_after=15)
    clock.now += 30
    assert await secrets.refresh(A, "db", 2) is None  # version 2 is what can be served
    assert await secrets.read(A, "db") == Unveiled("db", 2, "a-db-2")
    assert sakura.calls == [(A, "db", 2), (A, "db", 3)]  # quiet for 15 s after the failure
    sakura.unveil_fail = None
    clock.now += 15
    assert await secrets.refresh(A, "db", 2) == Unveiled("db", 3, "a-db-3")


async def test_a_re_created_secret_is_read_again_even_at_a_version_held() -> None:
    sakura, clock = FakeSakura(), HandClock()
    sakura.values[(A, "db")] = ["old-1", "old-2", "old-3"]
    secrets = cache(sakura, clock)
    await secrets.read(A, "db", 2)
    assert (await secrets.read(A, "db")).value == "old-3"
    sakura.values[(A, "db")] = ["new-1", "new-2"]  # deleted and re-created: latest 2 < 3
    clock.now += 30
    assert await secrets.refresh(A, "db", 3) == Unveiled("db", 2, "new-2")  # not old-2
    assert sakura.calls.count((A, "db", 2)) == 2


async def test_a_re_created_secrets_old_latest_is_never_served_stale() -> None:
    sakura, clock = FakeSakura(), HandClock()
    sakura.values[(A, "db")] = ["old-1", "old-2", "old-3"]
    secrets = cache(sakura, clock)
    assert (await secrets.read(A, "db")).value == "old-3"
    sakura.values[(A, "db")] = ["new-1", "new-2"]  # re-created: latest 2 < 3
    sakura.unveil_fail = Throttled("slow down")
    clock.now += 30
    with pytest.raises(SecretsUnavailable):  # the old secret's value is gone, not a stale copy
        await secrets.refresh(A, "db", None)


async def test_a_deleted_secret_refresh_is_not_found_and_its_copies_go() -> None:
    sakura, clock, secrets_registry = FakeSakura(), HandClock(), CollectorRegistry()
    secrets = cache(sakura, clock, secrets_registry)
    await secrets.read(A, "db")
    del sakura.values[(A, "db")]
    clock.now += 30
    with pytest.raises(NotFound) as caught:
        await secrets.refresh(A, "db", 2)
    assert caught.value.message == f"secret 'db' does not exist in vault {A} (listed 0s ago)"
    assert _reads(secrets_registry, "failed") == 1
    clock.now += 30
    sakura.fail = Unavailable("HTTP 503")
    with pytest.raises(SecretsUnavailable):  # no copy of the deleted secret is served
        await secrets.refresh(A, "db", 2)


async def test_a_name_a_listing_lacks_is_listed_again_past_the_negative_ttl() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, latest_ttl=30)
    await secrets.read(A, "db")
    sakura.values[(A, "new")] = ["new-1"]
    clock.now += 9.9  # within the negative TTL: the listing is believed
    with pytest.raises(NotFound):
        await secrets.refresh(A, "new", None)
    clock.now += 0.1
    assert await secrets.refresh(A, "new", None) == Unveiled("new", 1, "new-1")
    assert sakura.listings == [A, A]


async def test_a_refresh_listing_refused_is_a_429_or_a_rejected_key() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock)
    sakura.fail = Crowded("full", retry_after=4, waiting=10)
    with pytest.raises(SecretsUnavailable) as refused:
        await secrets.refresh(A, "db", 1, tenant="busy")
    assert status_of(refused.value) == 429
    assert sakura.tenants == [("list", "busy")]
    sakura.fail = Unauthorized("HTTP 401 bad key")
    with pytest.raises(CredentialsRejected):
        await secrets.refresh(A, "db", 1)


async def test_listings_are_counted_as_sakura_calls_by_outcome() -> None:
    sakura, clock, registry = FakeSakura(), HandClock(), CollectorRegistry()
    secrets = counted_cache(sakura, clock, registry)
    await secrets.read(A, "db", 1)
    sakura.fail = Unauthorized("HTTP 401 bad key")
    with pytest.raises(CredentialsRejected):
        await secrets.read(B, "db")
    sakura.fail = NotFound("no such vault", kind="vault", name="110000000003")
    with pytest.raises(NotFound):
        await secrets.read("110000000003", "db")
    sakura.fail = Crowded("full", retry_after=1, waiting=10)  # our limiter: nothing sent
    with pytest.raises(SecretsUnavailable):
        await secrets.read("110000000004", "db")
    found = _samples(registry)
    calls = "sakura_secrets_sakura_calls_total"
    assert {k: v for k, v in found.items() if k.startswith(calls)} == {
        f"{calls}{{list_secrets:ok}}": 1,
        f"{calls}{{unveil:ok}}": 1,  # db@1
        f"{calls}{{list_secrets:rejected}}": 1,
        f"{calls}{{list_secrets:not_found}}": 1,
        f"{calls}{{list_secrets:limited}}": 1,
    }


async def test_an_unchanged_refresh_keeps_the_latest_copy_known_current() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, latest_ttl=30, stale_for=300)
    await secrets.read(A, "db")  # listed at 0 s
    clock.now += 250
    assert await secrets.refresh(A, "db", 2) is None  # listed again at 250 s: still 2
    sakura.fail = Unavailable("HTTP 503")
    clock.now += 290  # 540 s after the read, 290 s after the listing that showed it
    assert await secrets.refresh(A, "db", 1) == Unveiled("db", 2, "a-db-2")


async def test_a_refresh_answered_for_another_secret_is_a_failed_read() -> None:
    sakura, clock, registry = FakeSakura(), HandClock(), CollectorRegistry()
    secrets = cache(sakura, clock, registry)
    sakura.answer_as = Unveiled("other", 2, "x")
    with pytest.raises(
        SecretsUnavailable, match="answered for other@2 when asked for secret 'db@2'"
    ):
        await secrets.refresh(A, "db", 1)
    assert _reads(registry, "failed") == 1


async def test_a_held_version_newer_than_the_listing_is_listed_again_past_the_negative_ttl() -> (
    None
):
    """Another replica listed later and served version 3: this one's older listing says 2."""
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, latest_ttl=30)
    await secrets.read(A, "db")  # listed: 2
    sakura.values[(A, "db")].append("a-db-3")
    clock.now += 9.9  # a listing younger than the negative TTL is believed
    assert await secrets.refresh(A, "db", 3) == Unveiled("db", 2, "a-db-2")
    assert sakura.listings == [A]
    clock.now += 0.1  # no longer: listed again, and the pod keeps its version
    assert await secrets.refresh(A, "db", 3) is None
    # a version the fresh listing does not show either: the listing's is served
    assert await secrets.refresh(A, "db", 4) == Unveiled("db", 3, "a-db-3")
    assert sakura.listings == [A, A]


async def test_a_listing_that_shows_the_name_is_trusted_for_the_whole_latest_ttl() -> None:
    sakura, clock = FakeSakura(), HandClock()
    secrets = cache(sakura, clock, latest_ttl=30)
    assert (await secrets.read(B, "db")).version == 1  # a secret of one version
    clock.now += 29.9  # past the negative TTL, within the latest TTL
    assert await secrets.refresh(B, "db", None) == Unveiled("db", 1, "b-db-1")
    assert await secrets.refresh(B, "db", 1) is None
    assert sakura.listings == [B]
