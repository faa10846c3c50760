"""Errors the Sakura client raises: one class per thing a user can act on.

Messages name the operation, the vault and the secret, and carry Sakura's own error text;
they never carry a credential, a secret value or the body of a request.
"""

from __future__ import annotations

from typing import Literal

NotFoundKind = Literal["vault", "secret", "version"]


class SakuraError(Exception):
    """Base class: any failure talking to Sakura's Secret Manager."""

    sakura_text: str = ""
    """Sakura's own error message (scrubbed), empty when there was none."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class SakuraConfigError(SakuraError):
    """Credentials or endpoint could not be determined; the message names what to set."""


class NotFound(SakuraError):
    """The vault, the secret or the pinned version does not exist (or is not visible)."""

    def __init__(
        self, message: str, *, kind: NotFoundKind, name: str, status: int | None = 404
    ) -> None:
        super().__init__(message, status=status)
        self.kind: NotFoundKind = kind
        self.name = name


class Unauthorized(SakuraError):
    """Sakura refused the access token (401) or its permissions (403)."""


class Throttled(SakuraError):
    """Sakura (or our own rate limiter) asked us to slow down; retry after `retry_after` s."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = 429
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class Unavailable(SakuraError):
    """Sakura could not be reached or kept failing (connection error, timeout, 5xx)."""


class Rejected(SakuraError):
    """Sakura refused the request as invalid (400 and other 4xx): retrying will not help."""


class BadResponse(SakuraError):
    """Sakura answered with something that is not the documented shape."""


class Crowded(Throttled):
    """Our rate limiter refused the call at once: its tenant already has too many waiting."""

    def __init__(self, message: str, *, retry_after: float | None = None, waiting: int) -> None:
        super().__init__(message, retry_after=retry_after, status=None)
        self.waiting = waiting
        """How many calls of the tenant were waiting already."""


def with_note(error: SakuraError, note: str) -> SakuraError:
    """`error` with `note` added to its message (why the client gave up)."""
    error.args = (error.message + note,)
    return error
