"""The connection table's decisions: each address's share, the port's bound, the oldest idle
connection closed for a new one, and the bounds' own checks."""

from __future__ import annotations

import pytest

from injector.serving.buckets import Rate
from injector.serving.connections import Admission, ConnectionLimits, ConnectionTable
from injector.setting import OutOfRange


def table(max_connections: int = 4, per_address: int | None = None) -> ConnectionTable[str]:
    return ConnectionTable(
        ConnectionLimits(max_connections=max_connections, per_address=per_address)
    )


def test_a_new_connection_is_idle_and_counted_for_its_address() -> None:
    slots = table()
    assert slots.admit("a", "10.0.0.1") == Admission(True)
    assert slots.admit("b", "10.0.0.1") == Admission(True)
    assert (len(slots), slots.count("10.0.0.1"), slots.count("10.0.0.2")) == (2, 2, 0)
    assert slots.is_idle("a") and slots.is_idle("b")


def test_a_full_port_closes_its_oldest_idle_connection_for_a_new_one() -> None:
    slots = table(max_connections=3)
    for key, address in (("a", "1"), ("b", "2"), ("c", "3")):
        slots.admit(key, address)
    slots.busy("a")
    slots.idle("a")  # idle again after an answer: now the youngest idle one
    assert slots.admit("d", "4") == Admission(True, evicted="b")
    assert (len(slots), slots.count("2"), slots.count("4")) == (3, 0, 1)
    assert not slots.is_idle("b")
    assert slots.admit("e", "5") == Admission(True, evicted="c")
    assert slots.admit("f", "6") == Admission(True, evicted="a")


def test_an_idle_connection_reported_idle_again_becomes_the_youngest() -> None:
    slots = table(max_connections=2)
    slots.admit("a", "1")
    slots.admit("b", "1")
    slots.idle("a")
    assert slots.admit("c", "2") == Admission(True, evicted="b")


def test_a_full_port_of_busy_connections_refuses_a_new_one() -> None:
    slots = table(max_connections=2)
    slots.admit("a", "1")
    slots.admit("b", "2")
    slots.busy("a")
    slots.busy("b")
    refused = slots.admit("c", "3")
    assert refused.admitted is False and refused.evicted is None
    assert "all 2 connections of the port are busy (--max-connections)" in refused.refused_because
    assert (len(slots), slots.count("3")) == (2, 0)
    slots.release("a")
    assert slots.admit("c", "3") == Admission(True)


def test_an_address_at_its_share_gives_up_its_own_oldest_idle_connection_or_is_refused() -> None:
    slots = table(max_connections=8, per_address=2)
    slots.admit("other", "9")
    slots.admit("a", "1")
    slots.admit("b", "1")
    slots.idle("a")  # both past their handshake
    slots.idle("b")
    # the port has room, the address has not: its own oldest idle one goes, never another's
    assert slots.admit("c", "1") == Admission(True, evicted="a")
    slots.busy("b")
    slots.idle("c")
    slots.busy("c")
    refused = slots.admit("d", "1")
    assert refused.admitted is False and refused.evicted is None
    assert refused.refused_because == (
        "its address holds 2 connections, none idle past its handshake "
        "(its share of --max-connections)"
    )
    assert (slots.count("1"), slots.is_idle("other")) == (2, True)


def test_an_address_at_its_share_never_closes_its_own_connections_in_their_handshake() -> None:
    """Reconnecting in a loop must not evict the previous turn's handshake for the next."""
    slots = table(max_connections=8, per_address=2)
    slots.admit("a", "1")
    slots.admit("b", "1")
    refused = slots.admit("c", "1")
    assert refused.admitted is False and refused.evicted is None
    assert (slots.count("1"), slots.is_idle("a"), slots.is_idle("b")) == (2, True, True)
    slots.idle("b")  # b's handshake is done: b, not a, goes for the next one
    assert slots.admit("c", "1") == Admission(True, evicted="b")
    slots.busy("a")  # a's request, then c's handshake: neither for its own address's newcomer
    assert slots.admit("d", "1").admitted is False


def test_a_full_port_still_closes_another_address_connection_in_its_handshake() -> None:
    slots = table(max_connections=2)
    slots.admit("a", "1")
    slots.admit("b", "2")
    assert slots.admit("c", "3") == Admission(True, evicted="a")


def test_an_address_opens_a_burst_then_its_rate_whatever_becomes_of_its_connections() -> None:
    limits = ConnectionLimits(max_connections=1000, per_address_rate=2)
    assert (limits.address_rate, limits.address_burst) == (2, 4)
    slots = ConnectionTable[str](limits)
    for _ in range(4):
        assert slots.arrive("1", 10.0) == ""
    assert slots.arrive("1", 10.0) == (
        "its address opened more than 2 connections a second after a burst of 4 (half its "
        "share of --max-connections a second)"
    )
    assert slots.arrive("2", 10.0) == "", "other addresses have their own"
    assert slots.arrive("1", 10.4) != ""  # 0.8 connections refilled
    assert slots.arrive("1", 10.5) == ""  # 1 refilled, the refusals free
    assert slots.arrive("1", 10.5) != ""
    assert len(slots) == 0, "arriving takes no slot: `admit` gives it"
    for _ in range(4):  # a long pause fills the bucket again, but no more than the burst
        assert slots.arrive("1", 1000.0) == ""
    assert slots.arrive("1", 1000.0) != ""


def test_slots_are_given_whatever_the_rate_which_is_counted_at_arrival() -> None:
    slots = ConnectionTable[str](ConnectionLimits(max_connections=1000, per_address_rate=1))
    for n in range(10):
        assert slots.admit(f"a{n}", "1") == Admission(True)
    assert slots.arrive("1", 0.0) == "", "slots taken do not count against the rate"


def test_an_address_sends_a_burst_of_bytes_then_its_rate_and_then_waits() -> None:
    limits = ConnectionLimits(per_address_bytes=1000)
    assert limits.receive_rate == Rate(1000, 2000)
    slots = ConnectionTable[str](limits)
    assert slots.receive("1", 2000, 5.0) == 0.0, "the burst: two seconds' worth"
    assert slots.receive("1", 500, 5.0) == 0.5, "over it: read again once back at zero"
    assert slots.unread_for("1", 5.25) == 0.25
    assert slots.unread_for("1", 5.5) == 0.0
    assert slots.receive("2", 2000, 5.0) == 0.0, "other addresses have their own"
    assert slots.receive("1", 250, 5.75) == 0.0
    assert slots.receive("1", 1, 5.75) == 0.001


def test_the_table_forgets_full_buckets_once_it_holds_many() -> None:
    slots = ConnectionTable[str](ConnectionLimits(max_connections=2, per_address_rate=1))
    for n in range(8):  # KEPT_BUCKETS per slot: remembered
        slots.arrive(f"10.0.0.{n}", 0)
    slots.arrive("10.0.0.0", 0.5)
    assert slots.arrive("10.0.0.0", 0.5) != ""
    slots.arrive("10.0.1.0", 100.0)  # the ninth: full buckets are forgotten
    assert slots.arrive("10.0.0.0", 100.0) == ""
    assert slots.arrive("10.0.0.0", 100.0) == ""
    assert slots.arrive("10.0.0.0", 100.0) != "", "a forgotten address has a full bucket"


@pytest.mark.parametrize(
    ("fields", "rate", "burst"),
    [
        ({"max_connections": 256}, 32, 64),
        ({"max_connections": 8}, 8, 16),
        ({"max_connections": 1024, "per_address": 10}, 8, 16),
        ({"max_connections": 1024, "per_address": 100}, 50, 100),
        ({"max_connections": 1024, "per_address": 17}, 8.5, 17),
        ({"max_connections": 8, "per_address_rate": 1.5}, 1.5, 3),
    ],
)
def test_the_default_rate_is_half_the_share_a_second_at_least_8_and_the_burst_two_seconds(
    fields: dict[str, int], rate: float, burst: float
) -> None:
    limits = ConnectionLimits(**fields)  # type: ignore[arg-type]
    assert (limits.address_rate, limits.address_burst) == (rate, burst)


def test_busy_connections_are_never_evicted_and_idle_ones_queue_by_when_they_went_idle() -> None:
    slots = table(max_connections=3)
    slots.admit("a", "1")
    slots.admit("b", "2")
    slots.admit("c", "3")
    slots.busy("a")
    slots.busy("b")
    assert slots.admit("d", "4") == Admission(True, evicted="c")
    slots.idle("b")
    slots.idle("a")
    assert slots.admit("e", "5") == Admission(True, evicted="d")
    assert slots.admit("f", "6") == Admission(True, evicted="b")


def test_release_frees_the_slot_once_and_ignores_unknown_connections() -> None:
    slots = table(max_connections=2)
    slots.admit("a", "1")
    slots.admit("b", "1")
    slots.release("a")
    slots.release("a")
    slots.release("never")
    slots.idle("never")  # a closed connection reporting late changes nothing
    slots.busy("never")
    assert (len(slots), slots.count("1"), slots.is_idle("a"), slots.is_idle("never")) == (
        1,
        1,
        False,
        False,
    )
    slots.busy("b")
    slots.release("b")
    assert (len(slots), slots.count("1")) == (0, 0)
    slots.admit("e", "2")
    slots.idle("e")
    slots.release("e")
    assert (slots._idle, slots._idle_of) == ({}, {}), "nothing left of a closed connection"
    assert slots.admit("c", "1") == Admission(True)
    assert slots.admit("d", "1") == Admission(True)


@pytest.mark.parametrize(
    ("max_connections", "share"),
    [(1, 1), (8, 8), (9, 8), (32, 8), (36, 9), (256, 64), (100_000, 25_000)],
)
def test_the_default_share_is_a_quarter_at_least_8_at_most_all(
    max_connections: int, share: int
) -> None:
    assert ConnectionLimits(max_connections=max_connections).address_share == share
    assert ConnectionLimits(max_connections=max_connections, per_address=1).address_share == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"header_timeout": 0}, "^header_timeout must be above 0 seconds$"),
        ({"body_timeout": 0}, "^body_timeout must be above 0 seconds$"),
        ({"handshake_timeout": 0}, "^handshake_timeout must be above 0 seconds$"),
        ({"send_timeout": 0}, "^send_timeout must be above 0 seconds$"),
        ({"max_connections": 0}, "^max_connections must be between 1 and 100000$"),
        ({"max_connections": 100_001}, "^max_connections must be between 1 and 100000$"),
        ({"header_timeout": 300.5}, "^header_timeout must be above 0 and at most 300 seconds$"),
        ({"body_timeout": 301}, "^body_timeout must be above 0 and at most 300 seconds$"),
        ({"handshake_timeout": 1e9}, "^handshake_timeout must be above 0 and at most 300 sec"),
        ({"send_timeout": 300.01}, "^send_timeout must be above 0 and at most 300 seconds$"),
        ({"keep_alive": 0}, "^keep_alive must be at least 1 second$"),
        ({"per_address": 0}, "^per_address must be between 1 and max_connections$"),
        ({"max_connections": 4, "per_address": 5}, "^per_address must be between 1 and max"),
        ({"per_address_rate": 0.99}, "^per_address_rate must be at least 1 connection a second$"),
    ],
)
def test_bounds_that_cannot_work_are_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConnectionLimits(**fields)  # type: ignore[arg-type]


def test_the_smallest_bounds_that_work_are_accepted() -> None:
    limits = ConnectionLimits(
        header_timeout=0.01,
        body_timeout=0.01,
        handshake_timeout=0.01,
        send_timeout=0.01,
        max_connections=1,
        keep_alive=1,
        per_address=1,
        per_address_rate=1,
    )
    assert (limits.address_share, limits.address_rate) == (1, 1)
    assert ConnectionLimits(max_connections=4, per_address=4).address_share == 4


def test_the_largest_bounds_that_work_are_accepted() -> None:
    deadlines = ("header_timeout", "body_timeout", "handshake_timeout", "send_timeout")
    limits = ConnectionLimits(
        **dict.fromkeys(deadlines, 300.0), max_connections=100_000, per_address=100_000
    )
    assert (limits.send_timeout, limits.address_share) == (300, 100_000)


def test_a_refused_bound_names_its_field_and_rule_apart() -> None:
    """What the command line needs to say the same with its flag and the value given."""
    with pytest.raises(OutOfRange) as caught:
        ConnectionLimits(max_connections=4, per_address=5)
    assert (caught.value.setting, caught.value.rule) == (
        "per_address",
        "must be between 1 and max_connections",
    )


def test_a_receive_budget_below_a_byte_a_second_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^per_address_bytes must be at least 1 byte a second$"):
        ConnectionLimits(per_address_bytes=0)
    assert ConnectionLimits(per_address_bytes=1).receive_rate == Rate(1, 2)


def test_the_table_keeps_four_buckets_of_each_kind_a_slot_before_it_forgets_full_ones() -> None:
    slots = ConnectionTable[str](ConnectionLimits(max_connections=2, per_address_rate=1))
    for n in range(8):  # each one full again by the next: only the count makes them go
        slots.arrive(f"10.0.0.{n}", 10.0 * n)
        slots.receive(f"10.0.0.{n}", 1, 10.0 * n)
    assert (len(slots._opened), len(slots._received)) == (8, 8)
    slots.arrive("10.0.1.0", 100.0)
    slots.receive("10.0.1.0", 1, 100.0)
    assert (len(slots._opened), len(slots._received)) == (1, 1)
