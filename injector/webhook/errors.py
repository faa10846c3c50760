"""Every error of the webhook's core, in one place.

    Exception
    ├── Denied               the pod is refused; the message names the annotation or field
    │                        and the fix (code 400: invalid input, 403: not authorized)
    └── ValueError
        ├── MalformedReview  the body is no AdmissionReview we can answer (the shell: HTTP 400)
        └── SettingsError    the injector's own configuration is invalid (at start-up)

A `Denied` never escapes a review: it becomes the review's `Refused` decision. The plan's own
`contract.PlanError` is caught where annotations are parsed and becomes a `Denied`.
"""

from __future__ import annotations


class Denied(Exception):
    """The pod is refused; the message names the annotation (or field) and the fix.

    `code` is the HTTP-style status put into the AdmissionReview: 400 for invalid input,
    403 for an authorization refusal.
    """

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class MalformedReview(ValueError):
    """The body is not an AdmissionReview we can answer; the server maps this to HTTP 400."""


class SettingsError(ValueError):
    """A setting of the injector is invalid; the message names it and the fix."""
