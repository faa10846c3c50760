"""A review's decision -> the AdmissionReview answer: the one place that builds one."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from injector.webhook.admission import API_VERSION
from injector.webhook.decision import Decision, Injected, PodRef, ReasonCode, Refused, Skipped

INTERNAL_FAILURE = "sakura-secrets-injector failed unexpectedly; see its logs"


def admission_review(decision: Decision) -> dict[str, Any]:
    """The AdmissionReview (admission.k8s.io/v1) that answers with `decision`.

    The patch is compact base64 JSON (it is stored in the audit log and counts toward the
    answer's size); warnings appear only when there are some.
    """
    response: dict[str, Any] = {"uid": decision.uid}
    match decision:
        case Injected(patch=patch):
            encoded = base64.b64encode(orjson.dumps(list(patch))).decode()
            response.update(allowed=True, patchType="JSONPatch", patch=encoded)
        case Skipped():
            response["allowed"] = True
        case Refused(code=code, message=message):
            response.update(allowed=False, status={"code": code, "message": message})
    if not isinstance(decision, Skipped) and decision.warnings:
        response["warnings"] = list(decision.warnings)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def internal_failure(uid: str, namespace: str = "") -> Refused:
    """A denial for a review the core could not finish: keeps the uid, tells nothing more."""
    return Refused(
        uid, 500, INTERNAL_FAILURE, reason_code=ReasonCode.INTERNAL, pod=PodRef(namespace)
    )
