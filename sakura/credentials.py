"""What the client authenticates with, and where it gets it from on each call.

A `CredentialSource` hands out the credentials to use now; the client asks it before every
request, so a source that re-reads files (the injector's mounted Secret) rotates the key with
no restart: the next request uses the new key, a request already sent finishes with the old.
`ApiKey` (HTTP Basic, an access token and its secret) is one kind; an IAM service principal
(sakura/principal.py) is the other: its requests carry Bearer tokens that
sakura/authorizer.py buys with its signed grant, so its `auth()` is never called.

A key is named by its fingerprint: the first 12 hex digits of the SHA-256 of the access
token's ID, never of the secret. The ID alone authenticates nothing (Sakura wants the secret
with it), and a 12-digit prefix of a hash of a random ID cannot be turned back into the ID, so
the fingerprint may go into metrics, logs and `doctor`'s output; the operator computes the same
from the Secret with `sha256sum` (docs/operations.md, "Rotating the injector's Sakura key").
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from sakura.config import SakuraConfig

FINGERPRINT_DIGITS = 12


def key_fingerprint(access_token: str) -> str:
    """The name of a key that metrics and logs may show: 12 hex digits of SHA-256(token ID).

    The token is hashed as the Secret holds it (no newline added), as `base64 -d | sha256sum`
    sees it."""
    return hashlib.sha256(access_token.encode("utf-8")).hexdigest()[:FINGERPRINT_DIGITS]


class Credentials(Protocol):
    """One set of credentials: how a request carries them, and what a message must not show."""

    @property
    def fingerprint(self) -> str:
        """A name safe to show (metrics, logs): never a secret."""
        ...

    @property
    def secrets(self) -> tuple[str, ...]:
        """Texts an error message must never contain (scrubbed from Sakura's answers)."""
        ...

    def auth(self) -> httpx.Auth: ...


class CredentialSource(Protocol):
    """Where the client gets the credentials for its next request."""

    def current(self) -> Credentials: ...

    @property
    def loaded_at(self) -> float:
        """When the credentials `current` gives were read (Unix seconds)."""
        ...


@dataclass(frozen=True)
class ApiKey:
    """A Sakura API key: HTTP Basic with the access token (user) and its secret (password);
    repr never shows either."""

    access_token: str = field(repr=False)
    access_token_secret: str = field(repr=False)

    def __repr__(self) -> str:
        return f"ApiKey(fingerprint={self.fingerprint!r})"

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.access_token)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.access_token, self.access_token_secret)

    def auth(self) -> httpx.Auth:
        return httpx.BasicAuth(self.access_token, self.access_token_secret)


@dataclass(frozen=True)
class FixedCredentials:
    """A source that never changes (the environment's key, a test's): a restart changes it."""

    credentials: Credentials
    loaded_at: float = field(default_factory=time.time)
    """When the process got them (Unix seconds)."""

    def current(self) -> Credentials:
        return self.credentials


def configured_credentials(config: SakuraConfig) -> Credentials:
    """The config's own credentials; a service principal's key is checked here (its module,
    with PyJWT and cryptography, loads only for one)."""
    if config.principal is None:
        return ApiKey(config.access_token, config.access_token_secret)
    from sakura.principal import ServicePrincipal

    return ServicePrincipal.from_settings(config.principal)
