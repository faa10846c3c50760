"""The rate limiter, the backoff schedule and Retry-After parsing, without a server."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from support.clock import HandClock

from sakura import Backoff, RateLimiter
from sakura.retry import is_retryable_status, parse_retry_after


def test_bucket_gives_burst_then_paces() -> None:
    clock = HandClock(0.0)
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.reserve() for _ in range(3)] == [0, 0, 0]
    assert limiter.reserve() == pytest.approx(1.0)
    assert limiter.reserve() == pytest.approx(2.0)  # waiters queue up in order
    assert limiter.reserve(max_wait=2.5) is None  # 3 s away: refused, nothing taken
    clock.now = 10.0
    assert limiter.reserve() == 0  # refilled, capped at the burst


def test_hold_off_pauses_every_caller_then_resumes_without_a_burst() -> None:
    clock = HandClock(0.0)
    limiter = RateLimiter(per_minute=60, burst=5, clock=clock)
    assert limiter.reserve() == 0
    limiter.hold_off(10.0)  # Sakura said 429, Retry-After: 10
    assert limiter.next_slot_in() == pytest.approx(10.0)
    assert limiter.reserve(max_wait=9.0) is None  # refused during the hold-off, nothing taken
    assert limiter.reserve() == pytest.approx(10.0)
    assert limiter.reserve() == pytest.approx(11.0)  # then one a second, not a burst of 5
    clock.now = 100.0
    assert [limiter.reserve() for _ in range(5)] == [0] * 5  # later the bucket refills as usual


def test_a_shorter_hold_off_never_shortens_a_wait() -> None:
    clock = HandClock(0.0)
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock)
    limiter.hold_off(10.0)
    clock.now = 1.0
    limiter.hold_off(2.0)
    assert limiter.next_slot_in() == pytest.approx(9.0)


def test_default_stays_under_the_quota() -> None:
    limiter = RateLimiter()
    assert limiter.per_minute + limiter.burst <= 100


async def test_acquire_waits() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=600, burst=1, clock=clock, sleep=clock.sleep)
    assert await limiter.acquire()
    assert await limiter.acquire(max_wait=0.5)
    assert clock.waits == [pytest.approx(0.1)]  # a slot every 0.1 s
    assert not await limiter.acquire(max_wait=0.01)


def test_backoff_defaults_match_the_sdk() -> None:
    backoff = Backoff(rng=random.Random(1))
    assert (backoff.base, backoff.cap) == (1.0, 64.0)
    for attempt, step in [(0, 1), (1, 2), (3, 8), (6, 64), (10, 64)]:
        delay = backoff.delay(attempt)
        assert step / 2 <= delay <= step


def test_retryable_statuses() -> None:
    assert [s for s in (400, 401, 404, 429, 500, 501, 502, 503, 504) if is_retryable_status(s)] == [
        429,
        500,
        502,
        503,
        504,
    ]


def test_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 01 Jan 2025 00:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Tue, 31 Dec 2024 00:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
