"""What a review decides, as a typed value: injected, skipped or refused.

The core returns one of these; the HTTP shell turns it into the AdmissionReview
(`injector.serving.admission_review`, the only place that builds one), and metrics, logs and
the offline preview read it as it is, never an answer parsed back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Injected:
    """Allowed, with the JSON patch that injects and the warnings (each once, in order)."""

    uid: str
    patch: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """Allowed as it is: the pod (or the request) is not one to inject, and why not."""

    uid: str
    reason: str


@dataclass(frozen=True)
class Refused:
    """Denied: `code` is the HTTP-style status of the answer (400 invalid input, 403 not
    authorized, 429 shed, 500 failed), `message` what the user reads and how to fix it."""

    uid: str
    code: int
    message: str
    warnings: tuple[str, ...] = ()


Decision = Injected | Skipped | Refused
