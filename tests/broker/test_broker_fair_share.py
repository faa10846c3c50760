"""Sakura's budget shared between namespaces, over real TLS, TokenReview and RBAC.

The limiter is held off (as after Sakura's own 429) so reads wait in their namespace's line;
the test then releases it by hand: no timing assumption.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.broker_world import VALUES, BrokerServer, World, fetch, serve_broker
from support.emulator import EmulatorHandle

from injector.broker.tuning import BrokerTuning
from sakura import RateLimiter

pytestmark = pytest.mark.cluster


@pytest.fixture
def tight_broker(
    emulator: EmulatorHandle, tls_files: tuple[Path, Path, bytes], world: World
) -> Iterator[BrokerServer]:
    settings = BrokerTuning(rate_burst=2, waiting_per_namespace=1, sakura_deadline=120)
    with serve_broker(emulator.url, tls_files, settings) as server:
        yield server


async def until(what: str, done: object) -> None:
    for _ in range(3000):
        if callable(done) and done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not reached: {what}")


def release(limiter: RateLimiter) -> None:
    for _ in range(500):
        limiter.refund()  # the bucket full again (2 slots)
    limiter.dispatch()


async def test_a_namespace_over_its_waiting_bound_gets_429_another_still_gets_its_turn(
    world: World, tight_broker: BrokerServer, emulator: EmulatorHandle
) -> None:
    limiter = tight_broker.parts.sakura.limiter
    token_a, token_b = world.token(world.ns_a, "app"), world.token(world.ns_b, "app")
    # the vault's listing, shared by every read of it, is taken first: the reads below each
    # wait for an unveil of their own
    listed = await fetch(tight_broker, token_a, [{"name": "db", "version": 1}])
    assert listed.status_code == 200, listed.text
    limiter.hold_off(60)
    waiting = asyncio.create_task(fetch(tight_broker, token_a, [{"name": "db", "version": None}]))
    await until("a read of namespace a waiting", lambda: limiter.waiting(world.ns_a) == 1)

    refused = await fetch(tight_broker, token_a, [{"name": "api", "version": None}])
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    message = refused.json()["error"]
    assert (
        "secret 'api' of vault" in message
        and "this namespace already has 1 read(s) waiting" in message
    )

    other = asyncio.create_task(fetch(tight_broker, token_b, [{"name": "other", "version": None}]))
    await until("namespace b's read in its own line", lambda: limiter.waiting(world.ns_b) == 1)
    release(limiter)
    first, second = await asyncio.gather(waiting, other)
    assert first.status_code == 200 and first.json()["secrets"][0]["value"] == VALUES["db"][1]
    assert second.status_code == 200 and second.json()["secrets"][0]["value"] == VALUES["other"][0]
    assert emulator.knobs.calls["unveil"] == 3  # db@1 and two: the refused read never did
