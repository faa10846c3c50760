"""Every error of the operator's commands, in one tree; the CLI turns each into a line on
stderr and an exit status (2 for a usage error, 1 otherwise).

    UsageError         a flag or environment variable is missing or invalid (exit 2)
    BootstrapError     `certs` could not finish; names the object and the likely fix
    PreviewError       `render` was not given a single Pod manifest
    PreviewDenied      `render`: the webhook would deny this pod (a webhook Denied, with
                       the warnings it would give)

The settings refuse their own values with `injector.setting.OutOfRange`, which the commands
turn into a UsageError naming the flag.
"""

from __future__ import annotations

from injector.webhook.errors import Denied


class UsageError(Exception):
    """A flag or environment variable is missing or invalid; the message names both."""


class BootstrapError(RuntimeError):
    """The bootstrap could not finish; the message names the object and the likely fix."""


class PreviewError(ValueError):
    """The input is not a single Pod manifest; the message says what to pass instead."""


class PreviewDenied(Denied):
    """The webhook would deny this pod; `message` is the denial as kubectl would show it."""

    def __init__(self, message: str, code: int = 400, warnings: tuple[str, ...] = ()) -> None:
        super().__init__(message, code)
        self.warnings = warnings
