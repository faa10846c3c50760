"""The limiter's public behaviour on a hand-driven clock: burst, refill cap, waits, refunds.

test_sakura_pacing.py shows the main schedule; test_sakura_client.py shares one limiter
between clients against the emulator. These pin the edges: a bucket refilled after a long
idle holds `burst` slots and no more, a wait equal to `max_wait` is taken, a refund never
overfills, a cancelled wait gives its slot back.
"""

from __future__ import annotations

import asyncio

import pytest
from support.clock import HandClock

from sakura import RateLimiter
from sakura.ratelimit import DEFAULT_BURST, DEFAULT_PER_MINUTE


def test_after_a_long_idle_the_bucket_holds_burst_slots_and_no_more() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    clock.now += 3600  # an hour idle would be 3600 slots without the cap
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve() == pytest.approx(1.0)


def test_the_rate_is_per_minute() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=120, burst=1, clock=clock)
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(0.5)
    clock.now += 0.25
    assert limiter.next_slot_in() == pytest.approx(0.75)  # the queued slot, then the next
    clock.now += 10
    assert limiter.next_slot_in() == 0.0


def test_a_partly_refilled_bucket_waits_only_for_the_rest() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    limiter.reserve()
    limiter.reserve()
    clock.now += 0.4
    assert limiter.reserve() == pytest.approx(0.6)


def test_next_slot_in_takes_nothing() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock)
    assert limiter.next_slot_in() == 0.0
    assert limiter.next_slot_in() == 0.0
    assert limiter.reserve() == 0.0
    assert limiter.next_slot_in() == pytest.approx(1.0)
    assert limiter.next_slot_in() == pytest.approx(1.0)


def test_a_wait_equal_to_max_wait_is_taken() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock)
    limiter.reserve()
    assert limiter.reserve(max_wait=1.0) == pytest.approx(1.0)
    assert limiter.reserve(max_wait=1.99) is None
    assert limiter.reserve(max_wait=2.0) == pytest.approx(2.0)


def test_a_refund_gives_the_slot_back_but_never_overfills() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    limiter.refund()  # already full: stays at 2
    assert [limiter.reserve() for _ in range(2)] == [0.0, 0.0]
    assert limiter.next_slot_in() == pytest.approx(1.0)
    limiter.refund()
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(1.0)


def test_a_negative_hold_off_pauses_nothing() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    limiter.hold_off(-5)
    assert limiter.reserve() == 0.0


def test_a_hold_off_counts_from_now() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=120, burst=2, clock=clock)
    clock.now += 30
    limiter.hold_off(4)
    assert limiter.next_slot_in() == pytest.approx(4.0)
    assert limiter.reserve() == pytest.approx(4.0)
    assert limiter.reserve() == pytest.approx(4.5)  # then at the steady rate


def test_more_than_one_slot_in_the_bucket_means_no_wait() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    limiter.reserve()
    limiter.reserve()
    clock.now += 1.5
    assert limiter.next_slot_in() == 0.0
    assert limiter.reserve() == 0.0


@pytest.mark.parametrize("per_minute", [0, -1, -0.5])
def test_the_rate_must_be_positive(per_minute: float) -> None:
    with pytest.raises(ValueError) as caught:
        RateLimiter(per_minute=per_minute)
    assert str(caught.value) == f"per_minute must be positive, not {per_minute!r}"
    assert RateLimiter(per_minute=0.5).per_minute == 0.5  # one request every two minutes


@pytest.mark.parametrize("burst", [0, -3])
def test_the_burst_is_at_least_one(burst: int) -> None:
    with pytest.raises(ValueError) as caught:
        RateLimiter(burst=burst)
    assert str(caught.value) == f"burst must be at least 1, not {burst!r}"
    assert RateLimiter(burst=1).burst == 1


def test_defaults_and_repr() -> None:
    limiter = RateLimiter()
    assert (limiter.per_minute, limiter.burst) == (DEFAULT_PER_MINUTE, DEFAULT_BURST) == (90, 5)
    assert repr(RateLimiter(per_minute=30.5, burst=2)) == "RateLimiter(per_minute=30.5, burst=2)"


async def test_acquire_takes_a_free_slot_and_refuses_a_long_wait_without_taking() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock)
    assert await limiter.acquire() is True
    assert await limiter.acquire(max_wait=0.5) is False
    assert limiter.next_slot_in() == pytest.approx(1.0)  # the refusal took nothing


def test_the_level_is_the_slots_free_now_refilled_up_to_now() -> None:
    """What the budget gauge shows: read at scrape time, it is brought up to the moment."""
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=5, clock=clock)
    assert limiter.level() == 5.0
    limiter.reserve()
    limiter.reserve()
    assert limiter.level() == 3.0
    clock.now += 0.5
    assert limiter.level() == pytest.approx(3.5)
    clock.now += 60
    assert limiter.level() == 5.0  # never above the burst
    limiter.hold_off(3)
    assert limiter.level() == pytest.approx(-2.0)  # Sakura's Retry-After is being waited out
    clock.now += 3
    assert limiter.level() == pytest.approx(1.0)


async def test_the_calls_waiting_are_told_by_tenant() -> None:
    async def never(_: float) -> None:
        await asyncio.Event().wait()

    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock, sleep=never)
    assert limiter.waiting_by_tenant() == {}
    await limiter.acquire(tenant="a")  # the free slot: no line
    waiting = [asyncio.ensure_future(limiter.acquire(tenant=t)) for t in ("a", "b", "a", None, "a")]
    await asyncio.sleep(0)
    assert limiter.waiting_by_tenant() == {"a": 3, "b": 1, None: 1}
    assert limiter.waiting("a") == 3
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert limiter.waiting_by_tenant() == {}
