"""Case 7 of issue 15 over TLS: a pinned version of a deleted or re-created secret is not served.

The broker is real (TokenReview and SubjectAccessReview on the local cluster, the emulator as
Sakura); its cache and listings run on a hand clock, so "the listing's lifetime passes" is one
step of the clock, not a sleep.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.broker_world import VALUES, VAULT, World, fetch, serve_broker
from support.clock import HandClock
from support.emulator import EmulatorHandle

pytestmark = pytest.mark.cluster

PINNED = [{"name": "db", "version": 1}]
LISTING_TTL = 30.0  # BrokerTuning.listing_ttl


def calls(emulator: EmulatorHandle) -> dict[str, int]:
    got = emulator.knobs.stats()["calls"]
    assert isinstance(got, dict)
    return {k: int(v) for k, v in got.items() if k != "total"}


async def test_a_deleted_secrets_pinned_version_is_refused_after_the_listing_lifetime(
    world: World, emulator: EmulatorHandle, tls_files: tuple[Path, Path, bytes]
) -> None:
    token = world.token(world.ns_a, "app")
    clock = HandClock()
    with serve_broker(emulator.url, tls_files, cache_clock=clock) as broker:
        served = await fetch(broker, token, PINNED)
        assert served.status_code == 200, served.text
        assert served.json()["secrets"][0]["value"] == VALUES["db"][0]
        emulator.store.delete(VAULT, "db")
        emulator.knobs.reset_stats()
        clock.now += LISTING_TTL - 1  # within the listing's lifetime: Sakura is not asked
        assert (await fetch(broker, token, PINNED)).status_code == 200
        assert calls(emulator) == {}
        clock.now += 1
        refused = await fetch(broker, token, PINNED)
        assert refused.status_code == 404, refused.text
        assert refused.json() == {
            "error": f"secret 'db@1' does not exist in vault {VAULT}; create it in Sakura's "
            "Secret Manager or fix the annotation"
        }
        assert VALUES["db"][0] not in refused.text
        assert calls(emulator) == {"list_secrets": 1}  # one listing told it
        clock.now += 3600  # an hour later, as in the issue: still refused
        assert (await fetch(broker, token, PINNED)).status_code == 404


async def test_a_re_created_secrets_pinned_version_is_its_new_value(
    world: World, emulator: EmulatorHandle, tls_files: tuple[Path, Path, bytes]
) -> None:
    token = world.token(world.ns_a, "app")
    clock = HandClock()
    with serve_broker(emulator.url, tls_files, cache_clock=clock) as broker:
        both = [*PINNED, {"name": "db", "version": 2}]
        assert (await fetch(broker, token, both)).status_code == 200  # listed: latest 2
        emulator.store.delete(VAULT, "db")
        emulator.store.put(VAULT, "db", "db-re-created-v1-VALUE")  # a new version 1
        clock.now += LISTING_TTL
        again = await fetch(broker, token, PINNED)
        assert again.status_code == 200, again.text
        assert again.json()["secrets"][0]["value"] == "db-re-created-v1-VALUE"
        gone = await fetch(broker, token, [{"name": "db", "version": 2}])
        assert gone.status_code == 404, gone.text  # the old version 2 is not served either
        assert VALUES["db"][1] not in gone.text


async def test_one_listing_per_lifetime_confirms_every_pinned_read(
    world: World, emulator: EmulatorHandle, tls_files: tuple[Path, Path, bytes]
) -> None:
    token = world.token(world.ns_a, "app")
    clock = HandClock()
    wanted = [{"name": n, "version": 1} for n in ("db", "api", "cfg", "tls")]
    with serve_broker(emulator.url, tls_files, cache_clock=clock) as broker:
        assert (await fetch(broker, token, wanted)).status_code == 200
        emulator.knobs.reset_stats()
        for _ in range(3):
            clock.now += LISTING_TTL
            for _ in range(5):
                assert (await fetch(broker, token, wanted)).status_code == 200
        assert calls(emulator) == {"list_secrets": 3}
