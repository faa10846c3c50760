"""Why a fetch failed: one class per thing the user fixes, each with its exit code.

The message is the one line `kubectl describe pod` shows, so it names the secret and the fix.
It is built from names, versions and the broker's or Sakura's own error text, never a value.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_DENIED = 3
EXIT_NOT_FOUND = 4
EXIT_UNAVAILABLE = 5
EXIT_BAD_VALUE = 6
EXIT_WRITE = 7
EXIT_CREDENTIALS = 8


class FetchError(Exception):
    """Base: a failure the init container reports in its termination message."""

    exit_code = EXIT_INTERNAL
    label = "failed"

    @property
    def reason(self) -> str:
        """The one-line termination message: `<label>: <what and how to fix it>`."""
        text = " ".join(str(self.args[0]).split()) if self.args else ""
        return f"{self.label}: {text}"


class ConfigError(FetchError):
    """The environment the webhook wired is missing or invalid (not the secrets' fault)."""

    exit_code = EXIT_CONFIG
    label = "bad configuration"


class BadPlan(ConfigError):
    """The plan variable is absent or not a plan this init image understands."""

    label = "bad plan"


class MissingToken(ConfigError):
    """Broker mode, but the projected ServiceAccount token file is absent or empty."""

    label = "missing token"


class RequestRefused(ConfigError):
    """The broker refused the request: malformed (HTTP 400) or its answer too large (422)."""

    label = "rejected"


class Unauthenticated(FetchError):
    """The broker did not accept the token (HTTP 401)."""

    exit_code = EXIT_DENIED
    label = "unauthenticated"


class Forbidden(FetchError):
    """The ServiceAccount (broker) or the API key (direct) may not read a secret."""

    exit_code = EXIT_DENIED
    label = "forbidden"


class CredentialsRejected(FetchError):
    """Sakura refused the API key (HTTP 401/403): the injector's (broker) or the pod's (direct).

    Not retried: waiting does not fix a key. Its own exit code, so alerts can tell it from an
    outage (EXIT_UNAVAILABLE) and from a missing grant (EXIT_DENIED).
    """

    exit_code = EXIT_CREDENTIALS
    label = "credentials rejected"


class SecretNotFound(FetchError):
    """The secret, the pinned version or the vault does not exist."""

    exit_code = EXIT_NOT_FOUND
    label = "not found"


class StillThrottled(FetchError):
    """Still throttled or unavailable when the deadline ran out."""

    exit_code = EXIT_UNAVAILABLE
    label = "throttled"


class Unreachable(FetchError):
    """The broker or Sakura could not be reached (connection, TLS, timeout) before the deadline."""

    exit_code = EXIT_UNAVAILABLE
    label = "unreachable"


class BadAnswer(FetchError):
    """The broker or Sakura answered with something that is not the documented shape."""

    exit_code = EXIT_UNAVAILABLE
    label = "bad answer"


class BadKey(FetchError):
    """`NAME#KEY` on a value that is not a JSON object, or that lacks the key."""

    exit_code = EXIT_BAD_VALUE
    label = "bad key"


class BadEncoding(FetchError):
    """`encoding-FILE: base64` on a value that is not valid base64."""

    exit_code = EXIT_BAD_VALUE
    label = "bad encoding"


class TemplateFailed(FetchError):
    """A template raised while rendering with the fetched values."""

    exit_code = EXIT_BAD_VALUE
    label = "template error"


class WriteFailed(FetchError):
    """The files could not be written (missing directory, full tmpfs, permissions)."""

    exit_code = EXIT_WRITE
    label = "write failed"


class EnvValueRefused(FetchError):
    """A value the env file cannot hold (contract.env_file): a single quote, a NUL, too long."""

    exit_code = EXIT_BAD_VALUE
    label = "bad env value"
