"""What a review decides, as a typed value: injected, skipped or refused.

The core returns one of these; the HTTP shell turns it into the AdmissionReview
(`injector.serving.admission_review`, the only place that builds one), and metrics, logs,
Events and the offline preview read it as it is, never an answer parsed back.

Each decision carries a `reason_code` (a fixed vocabulary, safe as a metric label and an
Event's reason) and the `PodRef` of the pod it was about, so the shell can say which pod
and why without parsing the review again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


class ReasonCode(StrEnum):
    """Why a review ended as it did; documented in docs/operations.md (log fields, metrics)."""

    INJECTED = "injected"
    NOT_A_POD_CREATION = "not-a-pod-creation"
    NOT_OPTED_IN = "not-opted-in"
    OPTED_OUT = "opted-out"
    ALREADY_INJECTED = "already-injected"
    EXCLUDED_NAMESPACE = "excluded-namespace"
    INVALID = "invalid"
    """The annotations or the pod cannot be injected as written (code 400)."""
    UNAUTHORIZED = "unauthorized"
    """The pod's ServiceAccount may not read a secret it names (code 403)."""
    SECRET_MISSING = "secret-missing"  # noqa: S105 (a reason, not a password)
    """The vault, a secret or a pinned version does not exist (code 403)."""
    OVERLOADED = "overloaded"
    """The injector shed the review to answer within the webhook's timeout (code 429)."""
    INTERNAL = "internal"
    """The injector failed unexpectedly (code 500)."""


@dataclass(frozen=True)
class Owner:
    """The pod's controller (its ownerReference with `controller: true`), where Events about
    a pod that was never created go."""

    api_version: str
    kind: str
    name: str
    uid: str


@dataclass(frozen=True)
class PodRef:
    """Which pod a review was about: names and its controller, never its spec.

    `name` is empty when the API server generates it (`generate_name` then says how)."""

    namespace: str = ""
    name: str = ""
    generate_name: str = ""
    owner: Owner | None = None

    @property
    def display(self) -> str:
        """`name`, else `generateName*`, else `?` (a review the core could not read)."""
        return self.name or (f"{self.generate_name}*" if self.generate_name else "?")

    @classmethod
    def of(cls, pod: dict[str, Any], namespace: str) -> PodRef:
        """The reference of `pod` (request.object, already type-checked by the core)."""
        metadata = pod.get("metadata") or {}
        owners = metadata.get("ownerReferences")
        controller = None
        if isinstance(owners, list):
            for ref in owners:
                if isinstance(ref, dict) and ref.get("controller") is True:
                    fields = [ref.get(k) for k in ("apiVersion", "kind", "name", "uid")]
                    texts = [f for f in fields if isinstance(f, str) and f]
                    if len(texts) == len(fields):
                        controller = Owner(*texts)
                    break
        return cls(
            namespace=namespace,
            name=_text(metadata.get("name")),
            generate_name=_text(metadata.get("generateName")),
            owner=controller,
        )


@dataclass(frozen=True)
class Injected:
    """Allowed, with the JSON patch that injects and the warnings (each once, in order)."""

    uid: str
    patch: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...] = ()
    pod: PodRef = PodRef()
    reason_code: ClassVar[ReasonCode] = ReasonCode.INJECTED


@dataclass(frozen=True)
class Skipped:
    """Allowed as it is: the pod (or the request) is not one to inject, and why not."""

    uid: str
    reason: str
    reason_code: ReasonCode = ReasonCode.NOT_OPTED_IN
    pod: PodRef = PodRef()


@dataclass(frozen=True)
class Refused:
    """Denied: `code` is the HTTP-style status of the answer (400 invalid input, 403 not
    authorized, 429 shed, 500 failed), `message` what the user reads and how to fix it."""

    uid: str
    code: int
    message: str
    warnings: tuple[str, ...] = ()
    reason_code: ReasonCode = ReasonCode.INVALID
    pod: PodRef = PodRef()


Decision = Injected | Skipped | Refused


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
