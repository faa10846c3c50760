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

MAX_NAME = 253
"""The longest object name Kubernetes accepts (a DNS subdomain). Mutating admission runs before
the API server validates the pod, so a review's names (and a forged review's uid) may be
megabytes long: the line shows at most this much of each, and a denial whose names could
belong to no object records no Event."""
MAX_NAMESPACE = 63

DENIED_REASON = "SecretsDenied"
"""The Event reason of every admission denial; the note starts with the reason code."""
ADMIT_ACTION = "Admit"


def log_decision(decision: Decision, seconds: float) -> None:
    """The review's line: INFO for what was allowed, WARNING for a denial."""
    outcome = outcome_of(decision)
    fields = _pod_fields(decision.pod)
    fields.update(
        uid=_bounded(decision.uid),
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
        "uid": _bounded(uid),
        "namespace": _bounded(namespace),
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
    owner_names = (pod.owner.name, pod.owner.kind, pod.owner.uid) if pod.owner else ()
    if len(pod.namespace) > MAX_NAMESPACE or any(
        len(text) > MAX_NAME for text in (pod.name, pod.generate_name, *owner_names)
    ):
        return None  # no object has such a name: the line says what happened
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
    return {
        "namespace": _bounded(pod.namespace),
        "pod": _bounded(pod.display),
        "owner": _bounded(owner),
    }


def _about(pod: PodRef) -> str:
    shown = _bounded(pod.display)
    return f"{_bounded(pod.namespace)}/{shown}" if pod.namespace else shown


def _bounded(text: str) -> str:
    """`text`, or its first MAX_NAME characters and how long it was."""
    if len(text) <= MAX_NAME:
        return text
    return f"{text[:MAX_NAME]}...({len(text)} characters)"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
