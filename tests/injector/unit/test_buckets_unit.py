"""Per-address token buckets: full until spent, refilled at their rate up to their burst, and
forgotten once full when the table holds many."""

from __future__ import annotations

from injector.serving.buckets import AddressBuckets, Rate


def test_a_bucket_is_full_until_spent_then_refills_at_its_rate_up_to_its_burst() -> None:
    buckets = AddressBuckets(Rate(per_second=2, burst=4), keep=10)
    assert (buckets.left("a", 0.0), len(buckets)) == (4, 0)
    assert buckets.spend("a", 3, 10.0) == 1
    assert buckets.left("a", 10.25) == 1.5
    assert buckets.left("b", 10.25) == 4, "each address has its own"
    assert buckets.left("a", 100.0) == 4, "never above the burst"
    assert buckets.spend("a", 1.5, 10.25) == 0


def test_a_bucket_goes_below_zero_and_waits_until_it_is_back_at_zero() -> None:
    buckets = AddressBuckets(Rate(per_second=4, burst=8), keep=10)
    assert buckets.wait("a", 0.0) == 0.0
    assert buckets.spend("a", 10, 1.0) == -2
    assert buckets.wait("a", 1.0) == 0.5
    assert buckets.wait("a", 1.25) == 0.25
    assert buckets.wait("a", 1.5) == 0.0
    assert buckets.wait("a", 3.0) == 0.0


def test_full_buckets_are_forgotten_once_the_table_holds_more_than_it_keeps() -> None:
    buckets = AddressBuckets(Rate(per_second=1, burst=2), keep=8)
    for n in range(8):
        buckets.spend(f"10.0.0.{n}", 1, 0.0)
    buckets.spend("10.0.0.0", 1, 0.5)
    assert len(buckets) == 8, "kept: as many as it keeps"
    assert buckets.spend("10.0.1.0", 1, 100.0) == 1  # the ninth: the full ones are forgotten
    assert buckets._spent == {"10.0.1.0": (1.0, 100.0)}
    assert buckets._forget_at == 8
    for n in range(8):  # nine buckets, none of them full: all kept, the next clean-up later
        buckets.spend(f"10.0.2.{n}", 1, 100.0)
    assert (len(buckets), buckets._forget_at) == (9, 18)
    buckets.spend("10.0.3.0", 1.5, 100.0)
    assert buckets.left("10.0.3.0", 100.0) == 0.5
