"""Every decision says why (a fixed code) and which pod: what metrics, logs and Events read."""

from __future__ import annotations

import pytest
from support.admission_harness import P, RecordingCheck, pod, review_body, settings

from injector.fair_queue import Overloaded
from injector.serving.admission_review import internal_failure
from injector.serving.review_queue import review, shed
from injector.webhook.checks import CheckOutcome
from injector.webhook.decision import Decision, Owner, PodRef, ReasonCode, Refused

RS = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "name": "shop-api-7d9",
    "uid": "0b6f6a1e-1111-4000-8000-000000000001",
}


def owned(**annotations: str) -> dict[str, object]:
    obj = pod({f"{P}{k}": v for k, v in annotations.items()})
    obj["metadata"]["ownerReferences"] = [  # type: ignore[index]
        {**RS, "kind": "Other", "controller": False},
        {**RS, "controller": True},
    ]
    return obj


async def decide(obj: dict[str, object], outcome: CheckOutcome | None = None) -> Decision:
    check = RecordingCheck(outcome or CheckOutcome())
    return await review(review_body(obj), settings=settings(), check=check)


async def test_an_injected_pod_names_its_namespace_generate_name_and_controller() -> None:
    decision = await decide(owned())
    assert decision.reason_code == ReasonCode.INJECTED
    assert decision.pod == PodRef(
        "shop", "", "shop-api-", Owner("apps/v1", "ReplicaSet", "shop-api-7d9", RS["uid"])
    )
    assert decision.pod.display == "shop-api-*"


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (CheckOutcome(denial="may not"), ReasonCode.UNAUTHORIZED),
        (CheckOutcome(denial="gone", reason_code=ReasonCode.SECRET_MISSING), "secret-missing"),
    ],
)
async def test_a_check_denial_keeps_the_checks_reason(outcome: CheckOutcome, code: str) -> None:
    decision = await decide(owned(), outcome)
    assert isinstance(decision, Refused) and decision.code == 403
    assert decision.reason_code == code and decision.pod.owner is not None


async def test_invalid_annotations_are_refused_as_invalid_with_the_pod() -> None:
    decision = await decide(owned(**{"secret-db": "db@x"}))
    assert isinstance(decision, Refused) and decision.code == 400
    assert decision.reason_code == ReasonCode.INVALID
    assert decision.pod.namespace == "shop" and decision.pod.generate_name == "shop-api-"


def test_shed_and_internal_failures_keep_the_namespace() -> None:
    busy = shed("u", Overloaded("queue full"), "shop")
    assert (busy.reason_code, busy.pod) == (ReasonCode.OVERLOADED, PodRef("shop"))
    failed = internal_failure("u", "shop")
    assert (failed.code, failed.reason_code, failed.pod) == (500, "internal", PodRef("shop"))


def test_a_named_pod_without_a_complete_controller_reference() -> None:
    obj = {"metadata": {"name": "api", "ownerReferences": [{"kind": "Job", "controller": True}]}}
    ref = PodRef.of(obj, "shop")
    assert ref == PodRef("shop", "api") and ref.display == "api"
    assert PodRef().display == "?"
    assert PodRef.of({"metadata": {"name": 3, "ownerReferences": "x"}}, "ns") == PodRef("ns")
