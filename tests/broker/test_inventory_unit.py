"""The vault inventory on the fake Sakura and a hand-driven clock: what a caller sees.

test_cache_unit.py drives it through the secret cache; these pin its own contract: how long a
listing serves and when Sakura is asked again, what is remembered missing (per vault, for
`negative_ttl`) and when a listing corrects it, its bounds, and the NotFound it gives back.
"""

from __future__ import annotations

import asyncio

import pytest
from support.broker_fakes import A, B, FakeSakura
from support.clock import HandClock

from injector.broker.inventory import VaultInventory
from sakura import NotFound

START = 1000.0


def inventory(sakura: FakeSakura, clock: HandClock, **settings: float) -> VaultInventory:
    return VaultInventory(sakura, clock=clock, **settings)  # type: ignore[arg-type]


def vault_missing(vault_id: str, status: int | None = 404) -> NotFound:
    error = NotFound(
        f"list secrets: vault {vault_id} not found (Sakura said: no such vault)",
        kind="vault",
        name=vault_id,
        status=status,
    )
    error.sakura_text = "no such vault"
    return error


def secret_missing(name: str, status: int | None = 404) -> NotFound:
    error = NotFound(f"unveil: secret {name!r} not found", kind="secret", name=name, status=status)
    error.sakura_text = "no such secret"
    return error


def same(error: NotFound | None) -> tuple[str, str, str, int | None, str] | None:
    """What a caller can read of a NotFound (a remembered one is a fresh copy)."""
    if error is None:
        return None
    return (error.message, error.kind, error.name, error.status, error.sakura_text)


async def test_a_listing_serves_for_ttl_then_sakura_is_asked_again() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock, ttl=30)
    assert await vaults.latest(A) == {"db": 2}
    sakura.values[(A, "db")].append("a-db-3")
    clock.now = START + 29.9
    assert await vaults.latest(A) == {"db": 2}
    assert sakura.listings == [A]
    clock.now = START + 30  # exactly at the bound: too old
    assert await vaults.latest(A) == {"db": 3}
    assert sakura.listings == [A, A]


async def test_the_default_ttl_is_30_seconds() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = VaultInventory(sakura, clock=clock)
    await vaults.latest(A)
    clock.now = START + 29.9
    await vaults.latest(A)
    assert sakura.listings == [A]
    clock.now = START + 30
    await vaults.latest(A)
    assert sakura.listings == [A, A]


async def test_max_age_asks_for_a_younger_listing_but_never_stretches_ttl() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock, ttl=30)
    await vaults.latest(A)
    clock.now = START + 4.9
    await vaults.latest(A, max_age=5)
    assert sakura.listings == [A]
    clock.now = START + 5
    await vaults.latest(A, max_age=5)
    assert sakura.listings == [A, A]
    clock.now = START + 5 + 30
    await vaults.latest(A, max_age=100)  # capped at ttl
    assert sakura.listings == [A, A, A]


async def test_sakura_is_asked_in_the_callers_turn() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock)
    await vaults.latest(A, tenant="team-a")
    assert sakura.tenants == [("list", "team-a")]


async def test_listing_gives_the_held_listing_and_its_age_until_ttl_and_never_asks_sakura() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock, ttl=30)
    assert vaults.listing(A) is None
    await vaults.latest(A)
    clock.now = START + 29.5
    assert vaults.listing(A) == (29.5, {"db": 2})
    assert vaults.listing(B) is None
    clock.now = START + 30
    assert vaults.listing(A) is None
    assert sakura.listings == [A]


async def test_concurrent_askers_of_one_vault_share_one_listing_and_vaults_never_share() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock)
    sakura.list_gate = asyncio.Event()
    a_askers = [asyncio.ensure_future(vaults.latest(A)) for _ in range(3)]
    b_asker = asyncio.ensure_future(vaults.latest(B))
    await asyncio.sleep(0)
    sakura.list_gate.set()
    assert await asyncio.gather(*a_askers) == [{"db": 2}] * 3
    assert await b_asker == {"db": 1}
    assert sorted(sakura.listings) == [A, B]


async def test_a_missing_vault_is_remembered_for_negative_ttl_then_sakura_is_asked_again() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock, ttl=30, negative_ttl=10)
    sakura.fail = vault_missing(A)
    with pytest.raises(NotFound) as first:
        await vaults.latest(A)
    assert first.value is sakura.fail
    clock.now = START + 9.9
    with pytest.raises(NotFound) as again:
        await vaults.latest(A)
    assert again.value is not sakura.fail  # a fresh exception, with the same meaning
    assert same(again.value) == same(sakura.fail)
    assert same(vaults.known_missing(A, "db", None)) == same(sakura.fail)
    assert vaults.known_missing(B, "db", None) is None
    assert sakura.listings == [A]
    clock.now = START + 10  # exactly at the bound: forgotten
    assert vaults.known_missing(A, "db", None) is None
    sakura.fail = None
    sakura.values[(A, "db")] = ["created"]
    assert await vaults.latest(A) == {"db": 1}
    assert sakura.listings == [A, A]


async def test_a_vault_reported_missing_drops_its_listing() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock)
    await vaults.latest(A)
    await vaults.latest(B)
    gone = vault_missing(A, status=None)
    vaults.note_missing(A, gone)
    assert vaults.listing(A) is None
    assert vaults.listing(B) is not None
    with pytest.raises(NotFound) as caught:
        await vaults.latest(A)
    assert same(caught.value) == same(gone)
    assert same(vaults.known_missing(A, "db", 1)) == same(gone)
    assert sakura.listings == [A, B]


async def test_a_missing_secret_is_remembered_per_vault_for_negative_ttl() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock, ttl=30, negative_ttl=10)
    gone = secret_missing("gone", status=None)
    vaults.note_missing(A, gone)
    clock.now = START + 9.9
    got = vaults.known_missing(A, "gone", None)
    assert got is not gone
    assert same(got) == same(gone)
    assert same(vaults.known_missing(A, "gone", 3)) == same(gone)
    assert vaults.known_missing(A, "other", None) is None
    assert vaults.known_missing(B, "gone", None) is None
    clock.now = START + 10  # exactly at the bound: forgotten
    assert vaults.known_missing(A, "gone", None) is None
    assert sakura.listings == []


async def test_a_missing_version_reported_is_not_remembered_on_its_own() -> None:
    """Versions are judged from a listing: the secret's other versions still exist."""
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock)
    vaults.note_missing(A, NotFound("no version 7", kind="version", name="db@7"))
    assert vaults.known_missing(A, "db", 7) is None
    assert vaults.known_missing(A, "db", None) is None


async def test_a_young_listing_tells_what_is_missing_until_negative_ttl() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock, ttl=30, negative_ttl=10)
    await vaults.latest(A)
    clock.now = START + 9.4
    secret = vaults.known_missing(A, "nope", None)
    assert same(secret) == (
        f"secret 'nope' does not exist in vault {A} (listed 9s ago)",
        "secret",
        "nope",
        404,
        "",
    )
    version = vaults.known_missing(A, "db", 3)
    assert same(version) == (
        f"secret 'db' has no version 3 in vault {A} (listed 9s ago)",
        "version",
        "db@3",
        404,
        "",
    )
    assert vaults.known_missing(A, "db", 2) is None
    assert vaults.known_missing(A, "db", None) is None
    assert vaults.known_missing(B, "nope", None) is None  # B was never listed
    clock.now = START + 10  # exactly at the bound: the listing may be out of date
    assert vaults.known_missing(A, "nope", None) is None
    assert vaults.known_missing(A, "db", 3) is None
    assert sakura.listings == [A]


async def test_a_later_listing_corrects_what_was_remembered_missing_in_its_vault_only() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock)
    vaults.note_missing(A, secret_missing("new"))
    vaults.note_missing(B, secret_missing("new"))
    sakura.values[(A, "new")] = ["v1"]
    clock.now = START + 1
    assert await vaults.latest(A) == {"db": 2, "new": 1}
    assert vaults.known_missing(A, "new", None) is None
    assert vaults.known_missing(A, "new", 1) is None
    assert same(vaults.known_missing(B, "new", None)) == same(secret_missing("new"))


async def test_a_listing_that_lands_after_the_vault_was_reported_missing_is_the_latest_word() -> (
    None
):
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock)
    sakura.list_gate = asyncio.Event()
    asking = asyncio.ensure_future(vaults.latest(A))
    await asyncio.sleep(0)
    vaults.note_missing(A, vault_missing(A))
    sakura.list_gate.set()
    assert await asking == {"db": 2}
    assert vaults.known_missing(A, "db", None) is None
    assert await vaults.latest(A) == {"db": 2}
    assert sakura.listings == [A]


def vault(number: int) -> str:
    return f"{number:012d}"


async def test_at_most_max_vaults_listings_are_held_the_oldest_listing_pushed_out() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock, ttl=30, max_vaults=2)
    await vaults.latest(A)
    clock.now = START + 10
    await vaults.latest(B)
    clock.now = START + 31
    await vaults.latest(A)  # listed again: held once, nothing pushed out
    assert vaults.listing(B) is not None
    await vaults.latest(vault(3))  # B's listing is now the oldest
    assert vaults.listing(B) is None
    assert vaults.listing(A) == (0, {"db": 2})
    assert vaults.listing(vault(3)) == (0, {})
    assert sakura.listings == [A, B, A, vault(3)]


async def test_the_default_bound_is_256_listings() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = VaultInventory(sakura, clock=clock)
    for number in range(1, 257):
        await vaults.latest(vault(number))
    assert vaults.listing(vault(1)) is not None
    await vaults.latest(vault(257))
    assert vaults.listing(vault(1)) is None
    assert vaults.listing(vault(2)) is not None


async def test_at_most_max_vaults_missing_vaults_are_remembered_the_oldest_forgotten() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock, ttl=30, negative_ttl=10, max_vaults=2)
    vaults.note_missing(vault(1), vault_missing(vault(1)))
    vaults.note_missing(vault(2), vault_missing(vault(2)))
    clock.now = START + 5
    vaults.note_missing(vault(1), vault_missing(vault(1)))  # again: refreshed, the newest
    assert vaults.known_missing(vault(2), "db", None) is not None
    vaults.note_missing(vault(3), vault_missing(vault(3)))
    assert vaults.known_missing(vault(2), "db", None) is None
    assert vaults.known_missing(vault(3), "db", None) is not None
    clock.now = START + 14.9  # 14.9 s after the first report, 9.9 s after the second
    assert same(vaults.known_missing(vault(1), "db", None)) == same(vault_missing(vault(1)))


async def test_at_most_max_missing_secrets_are_remembered_the_oldest_forgotten() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock, max_missing=2)
    vaults.note_missing(A, secret_missing("one"))
    vaults.note_missing(B, secret_missing("one"))
    vaults.note_missing(A, secret_missing("one"))  # again: the newest, nothing pushed out
    assert vaults.known_missing(B, "one", None) is not None
    vaults.note_missing(A, secret_missing("two"))
    assert vaults.known_missing(B, "one", None) is None
    assert vaults.known_missing(A, "one", None) is not None
    assert vaults.known_missing(A, "two", None) is not None


async def test_the_default_bound_is_4096_missing_secrets() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = VaultInventory(sakura, clock=clock)
    for number in range(4096):
        vaults.note_missing(A, secret_missing(f"s{number}"))
    assert vaults.known_missing(A, "s0", None) is not None
    vaults.note_missing(A, secret_missing("s4096"))
    assert vaults.known_missing(A, "s0", None) is None
    assert vaults.known_missing(A, "s1", None) is not None


async def test_a_listing_that_fails_otherwise_is_not_remembered() -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock)
    sakura.fail = RuntimeError("connection reset")
    with pytest.raises(RuntimeError):
        await vaults.latest(A)
    assert vaults.known_missing(A, "db", None) is None
    sakura.fail = None
    assert await vaults.latest(A) == {"db": 2}
    assert sakura.listings == [A, A]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"negative_ttl": 0},
            "negative_ttl (0s) must be above 0 and at most the listing's ttl (30s)",
        ),
        (
            {"negative_ttl": -1},
            "negative_ttl (-1s) must be above 0 and at most the listing's ttl (30s)",
        ),
        (
            {"ttl": 5, "negative_ttl": 10},
            "negative_ttl (10s) must be above 0 and at most the listing's ttl (5s)",
        ),
    ],
)
def test_settings_are_checked(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        inventory(FakeSakura(), HandClock(), **settings)
    assert str(caught.value) == message


@pytest.mark.parametrize("settings", [{"negative_ttl": 0.5}, {"ttl": 10, "negative_ttl": 10}])
async def test_a_negative_ttl_above_0_up_to_ttl_is_accepted(settings: dict[str, float]) -> None:
    sakura, clock = FakeSakura(), HandClock()
    vaults = inventory(sakura, clock, **settings)
    vaults.note_missing(A, secret_missing("gone"))
    assert vaults.known_missing(A, "gone", None) is not None
