"""The admission line and the denial Event bound what a review names: mutating admission runs
before the API server validates the pod, so its names (and a forged review's uid) can be
megabytes long."""

from __future__ import annotations

import logging

import pytest

from injector.serving.admission_log import MAX_NAME, denial_event, log_decision, log_failure
from injector.webhook.decision import Owner, PodRef, ReasonCode, Refused

HUGE = "a" * 1_000_000
RS = Owner("apps/v1", "ReplicaSet", "web-6d4cf56db6", "5b1f2f0e-0000-4000-8000-000000000001")


def refused(pod: PodRef, uid: str = "u-1") -> Refused:
    return Refused(uid, 403, "no grant", reason_code=ReasonCode.UNAUTHORIZED, pod=pod)


def test_every_name_in_the_line_is_bounded_and_says_how_long_it_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "injector.admission")
    owner = Owner("apps/v1", "ReplicaSet", HUGE, "uid")
    log_decision(refused(PodRef(HUGE, HUGE, owner=owner), uid=HUGE), 0.001)
    [record] = caplog.records
    shown = f"{'a' * MAX_NAME}...(1000000 characters)"
    assert record.__dict__["uid"] == shown and record.__dict__["pod"] == shown
    assert record.__dict__["namespace"] == shown
    assert record.__dict__["owner"] == f"ReplicaSet/{'a' * (MAX_NAME - len('ReplicaSet/'))}" + (
        "...(1000011 characters)"
    )
    assert len(record.getMessage()) < 3 * MAX_NAME


def test_names_within_the_bound_are_shown_whole(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "injector.admission")
    name = "p" * MAX_NAME
    log_decision(refused(PodRef("shop", name, owner=RS)), 0.001)
    [record] = caplog.records
    assert record.__dict__["pod"] == name
    assert record.__dict__["owner"] == "ReplicaSet/web-6d4cf56db6"
    assert record.getMessage() == f"admission denied: shop/{name}"


def test_a_failures_line_bounds_the_uid_and_namespace(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "injector.admission")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log_failure(HUGE, HUGE, 0.001)
    [record] = caplog.records
    assert len(record.__dict__["uid"]) < 300 and len(record.__dict__["namespace"]) < 300


@pytest.mark.parametrize(
    "pod",
    [
        PodRef("n" * 64, "api-1"),
        PodRef("shop", "p" * (MAX_NAME + 1)),
        PodRef("shop", generate_name="g" * (MAX_NAME + 1)),
        PodRef("shop", "api-1", owner=Owner("apps/v1", "ReplicaSet", "r" * (MAX_NAME + 1), "u")),
        PodRef("shop", "api-1", owner=Owner("apps/v1", "K" * (MAX_NAME + 1), "rs", "u")),
        PodRef("shop", "api-1", owner=Owner("apps/v1", "ReplicaSet", "rs", "u" * (MAX_NAME + 1))),
    ],
)
def test_a_denial_naming_what_no_object_can_be_called_records_no_event(pod: PodRef) -> None:
    assert denial_event(refused(pod)) is None


def test_names_at_the_bounds_still_get_their_event() -> None:
    pod = PodRef("n" * 63, "p" * MAX_NAME, owner=Owner("v1", "K" * MAX_NAME, "r" * MAX_NAME, "u"))
    event = denial_event(refused(pod))
    assert event is not None and event.regarding.name == "r" * MAX_NAME
