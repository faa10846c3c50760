"""The refresh interval: the durations users write, the range, and the plan's JSON."""

from __future__ import annotations

import pytest
from support.values import VAULT

from contract import FileSpec, Plan, PlanError, SecretRef, parse_duration
from contract.plan import MAX_REFRESH_SECONDS, MIN_REFRESH_SECONDS


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1h0m5s", 3605),
        ("24h", 86400),
        (" 2m ", 120),
        ("90s", 90),
    ],
)
def test_durations_users_write(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "1.5h", "-5s", "1m1h", "5 m", "1d", "abc", "1h1h", "٣s"])
def test_a_text_that_is_not_a_duration_names_the_form_and_range(text: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_duration(text)
    assert str(caught.value) == (
        f"{text!r} is not a duration; write it like 30s, 5m, 1h or 1h30m (from 10s to 24h)"
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("9s", 9), ("0s", 0), ("24h1s", 86401), ("25h", 90000)]
)
def test_a_duration_out_of_range_names_the_range(text: str, seconds: int) -> None:
    with pytest.raises(PlanError) as caught:
        parse_duration(text)
    assert str(caught.value) == f"refresh interval {seconds}s is out of range; from 10s to 24h"


def test_the_range_is_ten_seconds_to_a_day() -> None:
    assert (MIN_REFRESH_SECONDS, MAX_REFRESH_SECONDS) == (10, 86400)


def plan(interval: object) -> Plan:
    files = (FileSpec("db", 0o400, secret=SecretRef("db")),)
    return Plan(files, "/sakura", VAULT, 1000, 1000, refresh_interval=interval)  # type: ignore[arg-type]


def test_the_interval_travels_in_the_plan() -> None:
    assert Plan.from_json(plan(300).to_json()).refresh_interval == 300
    assert Plan.from_json(plan(None).to_json()).refresh_interval is None
    assert '"refresh_interval":300' in plan(300).to_json()
    assert "refresh_interval" not in plan(None).to_json()


@pytest.mark.parametrize("interval", [9, 86401, True, 30.0, "30"])
def test_a_plan_refuses_an_interval_out_of_range(interval: object) -> None:
    with pytest.raises(PlanError, match="out of range; from 10s to 24h"):
        plan(interval)
