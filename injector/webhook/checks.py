"""The admission-time check the webhook awaits: a protocol, so the core stays pure.

The webhook core only knows this protocol; the real check (SubjectAccessReview per secret, one
cached existence lookup) lives with the broker, and the offline preview passes one that does
nothing. Keeping it injected is what keeps the admission pipeline pure and testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from contract import Plan
from injector.webhook.decision import ReasonCode


@dataclass(frozen=True)
class CheckOutcome:
    """A check's answer: a denial text (naming the missing grant) or admission with warnings.

    `reason_code` says why a denial denies: a missing grant, or a secret that does not exist."""

    denial: str | None = None
    warnings: tuple[str, ...] = ()
    reason_code: ReasonCode = ReasonCode.UNAUTHORIZED


class AdmissionCheck(Protocol):
    """Decides whether `namespace/service_account` may read every secret of `plan`."""

    async def __call__(self, namespace: str, service_account: str, plan: Plan) -> CheckOutcome: ...
