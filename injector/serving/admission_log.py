"""What the webhook says about each review: one log line (logger `injector.admission`), and
for a denial an Event on the object `kubectl describe` will show it on.

The line's fields are docs/operations.md's ("Logs"): uid, namespace, pod (its name, or
`generateName*`), owner (`Kind/name` of its controller), outcome, reason, code, latency_ms and
warnings. They come from the typed decision, never from the pod's spec, so no value and no
environment variable reaches the log.

A denied pod was never created, so its Event goes on its controller (the ReplicaSet, Job or
StatefulSet whose `kubectl describe` the user reads when pods do not appear); a pod without
one (a bare pod, whose creator saw the denial already) gets an Event regarding the Pod by
its namespace and name, which `kubectl get events` lists though the pod does not exist.
"""

from __future__ import annotations

import logging
from typing import Any

from injector.events import Occurrence, Regarding
from injector.serving.metrics import outcome_of
from injector.webhook.decision import Decision, PodRef, Refused, Skipped

log = logging.getLogger("injector.admission")

DENIED_REASON = "SecretsDenied"
"""The Event reason of every admission denial; the note starts with the reason code."""
ADMIT_ACTION = "Admit"


def log_decision(decision: Decision, seconds: float) -> None:
    """The review's line: INFO for what was allowed, WARNING for a denial."""
    outcome = outcome_of(decision)
    fields = _pod_fields(decision.pod)
    fields.update(
        uid=decision.uid,
        outcome=outcome,
        reason=str(decision.reason_code),
        code=decision.code if isinstance(decision, Refused) else 200,
        latency_ms=_ms(seconds),
        warnings=0 if isinstance(decision, Skipped) else len(decision.warnings),
    )
    level = logging.WARNING if isinstance(decision, Refused) else logging.INFO
    log.log(level, "admission %s: %s", outcome, _about(decision.pod), extra=fields)


def log_malformed(code: int, why: str, seconds: float) -> None:
    """A body that is no AdmissionReview (or none at all): no uid, no pod to name."""
    fields = {"outcome": "malformed", "code": code, "latency_ms": _ms(seconds)}
    log.warning("admission malformed: %s", why, extra=fields)


def log_failure(uid: str, namespace: str, seconds: float) -> None:
    """An unexpected failure (the pod is denied): the traceback goes with the line."""
    fields = {
        "uid": uid,
        "namespace": namespace,
        "outcome": "error",
        "reason": "internal",
        "code": 500,
        "latency_ms": _ms(seconds),
    }
    log.exception("admission failed unexpectedly; denying the pod", extra=fields)


def denial_event(decision: Refused) -> Occurrence | None:
    """The Event of a denial: on the pod's controller, else on the pod by name; None when
    the review named no pod at all (nothing `kubectl describe` could show it on)."""
    pod = decision.pod
    if pod.owner is not None:
        regarding = Regarding(
            pod.owner.kind, pod.namespace, pod.owner.name, pod.owner.api_version, pod.owner.uid
        )
    elif pod.namespace and (pod.name or pod.generate_name):
        regarding = Regarding("Pod", pod.namespace, pod.name or pod.generate_name)
    else:
        return None
    note = f"{decision.reason_code} ({decision.code}): pod {pod.display}: {decision.message}"
    return Occurrence(regarding, DENIED_REASON, note, ADMIT_ACTION)


def _pod_fields(pod: PodRef) -> dict[str, Any]:
    owner = f"{pod.owner.kind}/{pod.owner.name}" if pod.owner is not None else ""
    return {"namespace": pod.namespace, "pod": pod.display, "owner": owner}


def _about(pod: PodRef) -> str:
    return f"{pod.namespace}/{pod.display}" if pod.namespace else pod.display


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
