"""The HTTP shell's errors, in one place: each becomes an answer (or a refusal to start) here in
the shell, never a traceback a client sees.

    Exception
    ├── BodyTooLarge          a request body passed its cap before it was read whole (413)
    ├── AnswerRefused         the broker's answer is not sent: too large (422, final) or the
    │                         process's budget of answer bytes is spent (503, retry)
    └── DescriptorLimitError  the process may not open as many descriptors as its ports may
                              hold connections: `serve` refuses to start
"""

from __future__ import annotations


class BodyTooLarge(Exception):
    """The request body exceeded the cap before it was fully read."""


class AnswerRefused(Exception):
    """The answer is not sent: too large (422, final) or the budget is spent (503, retry)."""

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class DescriptorLimitError(Exception):
    """The process may not open as many descriptors as its ports may hold connections."""
