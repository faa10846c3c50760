"""The rate limiter's lines: round-robin between tenants, a bound per tenant, on a hand clock.

Waiting calls are real asyncio tasks; the test moves the clock and hands out the slots that
fell due (`dispatch`), so nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio

import pytest
from support.clock import HandClock

from sakura import Crowded, RateLimiter


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def drained(clock: HandClock, **kwargs: int) -> RateLimiter:
    """One slot a second, the bucket empty: every caller must wait in line."""
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock, **kwargs)
    assert limiter.reserve() == 0
    return limiter


async def test_slots_go_round_robin_between_waiting_tenants() -> None:
    clock = HandClock()
    limiter = drained(clock)
    served: list[str] = []

    async def call(tenant: str) -> None:
        assert await limiter.acquire(tenant=tenant)
        served.append(tenant)

    tasks = [asyncio.create_task(call(t)) for t in ["a"] * 5]
    await settle()
    tasks += [asyncio.create_task(call(t)) for t in ["b", "b", "c"]]
    await settle()
    assert (limiter.waiting("a"), limiter.waiting("b"), limiter.waiting("c")) == (5, 2, 1)
    for _ in range(8):
        clock.now += 1.0
        limiter.dispatch()
        await settle()
    await asyncio.gather(*tasks)
    # FIFO would serve a a a a a b b c: b and c waiting behind all of a's calls
    assert served == ["a", "b", "c", "a", "b", "a", "a", "a"]


async def test_a_tenant_with_too_many_waiting_is_refused_at_once_others_still_wait() -> None:
    clock = HandClock()
    limiter = drained(clock, max_waiting=2)
    first = [asyncio.create_task(limiter.acquire(tenant="a")) for _ in range(2)]
    await settle()
    with pytest.raises(Crowded) as refused:
        await limiter.acquire(tenant="a")
    assert refused.value.retry_after is not None and refused.value.retry_after >= 1.0
    assert "this tenant already has 2 call(s) waiting" in refused.value.message
    assert refused.value.waiting == 2
    other = asyncio.create_task(limiter.acquire(tenant="b"))
    await settle()
    assert (limiter.waiting("a"), limiter.waiting("b")) == (2, 1)
    clock.now += 1.0
    limiter.dispatch()  # a's first call is served: a has room for one more
    await settle()
    assert first[0].done() and first[0].result() is True
    again = asyncio.create_task(limiter.acquire(tenant="a"))
    await settle()
    assert limiter.waiting("a") == 2
    for _ in range(3):
        clock.now += 1.0
        limiter.dispatch()
        await settle()
    assert other.result() is True and first[1].result() is True and again.result() is True


async def test_nobody_waits_when_a_slot_is_free_and_the_line_is_empty() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock, max_waiting=1)
    assert await limiter.acquire(tenant="a")
    assert await limiter.acquire(tenant="a")
    assert limiter.waiting("a") == 0


async def test_a_cancelled_waiter_leaves_its_line_and_takes_no_slot() -> None:
    clock = HandClock()
    limiter = drained(clock, max_waiting=1)
    gone = asyncio.create_task(limiter.acquire(tenant="a"))
    await settle()
    gone.cancel()
    await settle()
    assert limiter.waiting("a") == 0
    stays = asyncio.create_task(limiter.acquire(tenant="b"))
    await settle()
    clock.now += 1.0
    limiter.dispatch()
    await settle()
    assert stays.result() is True


def test_set_rate_paces_from_now_on() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=4, clock=clock)
    limiter.set_rate(30, 2)  # e.g. half of the budget: two replicas
    assert [limiter.reserve() for _ in range(2)] == [0, 0]
    assert limiter.reserve() == pytest.approx(2.0)  # one slot every 2 s now
    assert (limiter.per_minute, limiter.burst) == (30, 2)


async def test_crowded_says_when_every_waiting_tenant_has_had_one_more_slot() -> None:
    clock = HandClock()
    limiter = drained(clock, max_waiting=1)
    alone = asyncio.create_task(limiter.acquire(tenant="a"))
    await settle()
    with pytest.raises(Crowded) as one_line:
        await limiter.acquire(tenant="a")
    assert one_line.value.retry_after == pytest.approx(1.0)  # one line, a slot a second
    others = [asyncio.create_task(limiter.acquire(tenant=t)) for t in ("b", "c")]
    await settle()
    with pytest.raises(Crowded) as three_lines:
        await limiter.acquire(tenant="a")
    assert three_lines.value.retry_after == pytest.approx(3.0)  # a, b and c each get a turn
    for task in (alone, *others):
        task.cancel()
    await asyncio.gather(alone, *others, return_exceptions=True)


async def test_max_wait_counts_the_turns_of_the_other_tenants() -> None:
    """b joining behind a's three waiting calls is served after one of a's (round-robin), so
    in 2 s at one slot a second: not within 1.5 s, within 2.5 s."""
    clock = HandClock()
    limiter = drained(clock)
    a_calls = [asyncio.create_task(limiter.acquire(tenant="a")) for _ in range(3)]
    await settle()
    assert await limiter.acquire(max_wait=1.5, tenant="b") is False
    assert limiter.waiting("b") == 0  # refused without joining the line
    b_call = asyncio.create_task(limiter.acquire(max_wait=2.5, tenant="b"))
    await settle()
    assert limiter.waiting("b") == 1
    for _ in range(2):
        clock.now += 1.0
        limiter.dispatch()
        await settle()
    assert b_call.done() and b_call.result() is True
    assert sum(t.done() for t in a_calls) == 1
    for task in a_calls:
        task.cancel()
    await asyncio.gather(*a_calls, return_exceptions=True)


def test_max_waiting_below_one_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="max_waiting must be at least 1, not 0"):
        RateLimiter(per_minute=60, burst=1, max_waiting=0)


async def test_max_wait_and_crowded_count_a_part_filled_slot() -> None:
    """A slot every 2 s, half a slot already refilled, a has two calls waiting and b one: a
    call of a third tenant c is served after one of a's and one of b's, in (1 + 1 + 1 - 0.5) * 2
    = 5 s (round-robin, not behind all three); every line's next turn comes in (2 - 0.5) * 2 =
    3 s."""
    clock = HandClock()
    limiter = RateLimiter(per_minute=30, burst=1, clock=clock, max_waiting=2)
    assert limiter.reserve() == 0
    waiting = [asyncio.create_task(limiter.acquire(tenant=t)) for t in ("a", "a", "b")]
    await settle()
    clock.now += 1.0
    assert limiter.dispatch() == pytest.approx(1.0)  # half a slot refilled: nobody is served
    assert await asyncio.wait_for(limiter.acquire(max_wait=4.9, tenant="c"), 5) is False
    assert limiter.waiting("c") == 0  # refused at once, without joining
    with pytest.raises(Crowded) as refused:
        await limiter.acquire(tenant="a")
    assert refused.value.retry_after == pytest.approx(3.0)
    joined = asyncio.create_task(limiter.acquire(max_wait=5.1, tenant="c"))
    await settle()
    assert limiter.waiting("c") == 1
    for task in (*waiting, joined):
        task.cancel()
    await asyncio.gather(*waiting, joined, return_exceptions=True)


async def test_a_call_that_is_not_served_within_max_wait_leaves_the_line() -> None:
    """A 429's hold-off arrives while the call waits and pushes its slot past `max_wait`: the
    call waits out `max_wait` on the limiter's own clock, no longer, and leaves its line."""
    clock = HandClock(0.0)
    limiter: RateLimiter

    async def sleep(seconds: float) -> None:
        if not clock.waits:
            limiter.hold_off(10.0)  # Sakura's 429 + Retry-After: 10, during the first nap
        await clock.sleep(seconds)

    limiter = RateLimiter(per_minute=60, burst=1, clock=clock, sleep=sleep)
    assert limiter.reserve() == 0
    # wait_for: a limiter that never gives up fails here instead of hanging the suite
    assert await asyncio.wait_for(limiter.acquire(max_wait=2.5, tenant="a"), 5) is False
    assert clock.waits == [pytest.approx(1.0), pytest.approx(1.5)]  # the slot, then the rest
    assert clock.now == pytest.approx(2.5)
    assert limiter.waiting("a") == 0  # it holds no place in the line
    clock.now = 11.0
    assert await limiter.acquire(max_wait=0.0, tenant="b") is True  # nobody ahead of b


async def test_a_waiting_call_sleeps_on_the_limiters_clock_until_its_slot() -> None:
    clock = HandClock(0.0)
    limiter = RateLimiter(per_minute=120, burst=1, clock=clock, sleep=clock.sleep)
    assert await limiter.acquire()
    assert await limiter.acquire(max_wait=0.5)  # the next slot is 0.5 s away: within
    assert clock.waits == [pytest.approx(0.5)] and clock.now == pytest.approx(0.5)
    assert await limiter.acquire(max_wait=0.49) is False  # refused at once: nothing taken
    assert clock.waits == [pytest.approx(0.5)]
    assert limiter.next_slot_in() == pytest.approx(0.5)


async def test_a_call_woken_by_dispatch_leaves_no_nap_behind() -> None:
    """The nap runs on the real clock here (the default sleep, 1 s): the slot handed over by
    dispatch ends it at once, and the nap's task is cancelled, not left to run out."""
    clock = HandClock()
    limiter = drained(clock)
    call = asyncio.create_task(limiter.acquire(max_wait=5.0, tenant="a"))
    await settle()
    assert len(asyncio.all_tasks()) == 3  # this test, the call and its nap
    clock.now += 1.0
    limiter.dispatch()
    assert await asyncio.wait_for(call, 5) is True
    await settle()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_cancelled_call_leaves_no_nap_behind_and_gives_back_a_slot_granted_meanwhile() -> (
    None
):
    clock = HandClock()
    limiter = drained(clock)
    call = asyncio.create_task(limiter.acquire(tenant="a"))
    await settle()
    clock.now += 1.0
    limiter.dispatch()  # the slot is handed over...
    call.cancel()  # ...as the caller goes away, before it could see it
    with pytest.raises(asyncio.CancelledError):
        await call
    await settle()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert limiter.waiting("a") == 0
    assert limiter.reserve(max_wait=0.0) == 0.0  # the slot came back


async def test_max_wait_counts_the_callers_own_line_once() -> None:
    """a's third call, behind two of its own, is served in 3 s at one slot a second."""
    clock = HandClock()
    limiter = drained(clock)
    ahead = [asyncio.create_task(limiter.acquire(tenant="a")) for _ in range(2)]
    await settle()
    third = asyncio.create_task(limiter.acquire(max_wait=3.5, tenant="a"))
    await settle()
    assert limiter.waiting("a") == 3  # joined: 3 s is within 3.5 s
    for task in (*ahead, third):
        task.cancel()
    await asyncio.gather(*ahead, third, return_exceptions=True)


async def test_crowded_asks_for_at_least_one_slot_interval() -> None:
    """A slot every 2 s, half of one refilled: a's next turn is 1 s away, but a refused call
    is told to come back after a whole interval (2 s), not sooner."""
    clock = HandClock()
    limiter = RateLimiter(per_minute=30, burst=1, clock=clock, max_waiting=1)
    assert limiter.reserve() == 0
    clock.now += 1.0
    waiting = asyncio.create_task(limiter.acquire(tenant="a"))
    await settle()
    with pytest.raises(Crowded) as refused:
        await limiter.acquire(tenant="a")
    assert refused.value.retry_after == pytest.approx(2.0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


async def test_a_waiter_whose_event_loop_is_gone_does_not_hold_up_the_others() -> None:
    """A client that shared the limiter from another event loop, now closed, left a call in
    line: dispatch counts it served and goes on to the next."""
    from collections import deque

    from sakura.ratelimit import _Waiter

    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    assert limiter.reserve() == limiter.reserve() == 0  # the bucket is empty
    gone_loop = asyncio.new_event_loop()
    gone = _Waiter("gone", gone_loop, gone_loop.create_future())
    gone_loop.close()
    limiter._lines["gone"] = deque([gone])
    call = asyncio.create_task(limiter.acquire(tenant="b"))
    await settle()
    clock.now += 2.0
    limiter.dispatch()
    assert gone.granted and limiter.waiting("b") == 0  # both served in one dispatch
    assert await asyncio.wait_for(call, 5) is True
