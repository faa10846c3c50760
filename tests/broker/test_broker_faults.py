"""Sakura failing in the middle of a rollout: recent values still served, others a clear 503."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.broker_world import VALUES, World, fetch, serve_broker
from support.clock import HandClock
from support.emulator import EmulatorHandle

from emulator.knobs import Fault
from injector.broker.cache import CacheSettings
from injector.broker.tuning import BrokerTuning

pytestmark = pytest.mark.cluster

SETTINGS = BrokerTuning(
    cache=CacheSettings(latest_ttl=0.5, stale_for=3.0, retry_after=9),
    sakura_deadline=1.0,
    sakura_retries=0,
    rate_burst=100,  # this test is about Sakura failing, not about the broker's own limiter
)
WANTED = [{"name": "db", "version": None}, {"name": "api", "version": None}]


async def test_all_5xx_mid_rollout(
    world: World, emulator: EmulatorHandle, tls_files: tuple[Path, Path, bytes]
) -> None:
    token = world.token(world.ns_a, "app")
    clock = HandClock()
    with serve_broker(emulator.url, tls_files, SETTINGS, cache_clock=clock) as broker:
        first = await fetch(broker, token, WANTED)  # the rollout's first pods warm the cache
        assert first.status_code == 200
        emulator.knobs.set_faults([Fault(503, 1.0)])
        clock.now += 0.6  # past the TTL: every read now goes to the failing Sakura

        later_pods = await asyncio.gather(*(fetch(broker, token, WANTED) for _ in range(10)))
        for response in later_pods:
            assert response.status_code == 200, response.text
            values = [s["value"] for s in response.json()["secrets"]]
            assert values == [VALUES["db"][1], VALUES["api"][0]]

        never_cached = await fetch(broker, token, [{"name": "cfg", "version": None}])
        assert never_cached.status_code == 503
        assert never_cached.headers["retry-after"] == "9"
        error = never_cached.json()["error"]
        assert "secret 'cfg' of vault 110000000001 cannot be read now" in error
        assert "no copy known current within the last 3s" in error
        assert "HTTP 503" in error

        clock.now += 2.6  # 3.2 s after the warm-up: past the bound
        too_old = await fetch(broker, token, WANTED)
        assert too_old.status_code == 503
        assert "secret 'db'" in too_old.json()["error"] or "secret 'api'" in too_old.json()["error"]
        assert not any(v in too_old.text for v in VALUES["db"] + VALUES["api"])

        emulator.knobs.set_faults([])  # Sakura is back: so is the broker
        assert (await fetch(broker, token, WANTED)).status_code == 200
