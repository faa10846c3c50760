"""The retry policy, pure: which statuses are retried, the backoff's bounds, Retry-After forms.

test_sakura_client.py shows the policy at work against the emulator; these pin its edges.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from sakura.retry import Backoff, is_retryable_status, parse_retry_after


class Extreme(random.Random):
    """uniform() answers its lower or upper bound, so the delay's bounds are exact."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high
        self.asked: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.asked.append((a, b))
        return b if self.high else a


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 599])
def test_retried_statuses(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 400, 401, 404, 428, 430, 499, 501, 600])
def test_statuses_not_retried(status: int) -> None:
    assert not is_retryable_status(status)


def test_the_step_doubles_from_base_up_to_cap_with_half_of_it_random() -> None:
    low, high = Backoff(rng=Extreme(high=False)), Backoff(rng=Extreme(high=True))
    assert (low.base, low.cap) == (1.0, 64.0)
    for attempt, step in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 64.0), (7, 64.0), (30, 64.0)]:
        assert low.delay(attempt) == step / 2
        assert high.delay(attempt) == step
    assert high.rng.asked[:2] == [(0, 0.5), (0, 1.0)]  # type: ignore[attr-defined]


def test_base_and_cap_are_the_callers() -> None:
    backoff = Backoff(base=0.25, cap=1.5, rng=Extreme(high=True))
    assert [backoff.delay(n) for n in range(4)] == [0.25, 0.5, 1.0, 1.5]


def test_the_default_generator_jitters_and_is_not_part_of_equality() -> None:
    backoff = Backoff()
    delays = {backoff.delay(4) for _ in range(50)}
    assert len(delays) > 1 and all(8.0 <= d <= 16.0 for d in delays)
    assert Backoff(rng=random.Random(1)) == Backoff(rng=random.Random(2))
    assert "rng" not in repr(backoff)


NOW = datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("  7 ", 7.0),
        ("0.5", 0.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Wed, 01 Jan 2025 00:00:30 GMT", 30.0),
        ("Wed, 01 Jan 2025 00:00:30 -0000", 30.0),  # no zone: taken as UTC
        ("Wed, 01 Jan 2025 09:00:30 +0900", 30.0),
        ("Tue, 31 Dec 2024 00:00:00 GMT", 0.0),
    ],
)
def test_retry_after_forms(header: str, seconds: float) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "NaN", "Wed, 99 Foo 2025"])
def test_an_absent_or_invalid_retry_after_is_none(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


def test_a_date_is_measured_from_the_current_time_by_default() -> None:
    assert parse_retry_after("Tue, 31 Dec 2024 00:00:00 GMT") == 0.0
    ahead = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT")
    assert ahead is not None and ahead > 365 * 24 * 3600
