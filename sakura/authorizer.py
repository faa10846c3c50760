"""What a request to Secret Manager carries to prove who sends it: Basic or a Bearer token.

An API key is sent as it is. A service principal's requests carry a Bearer token that the
client buys at the token endpoint with a signed grant; `Authorizer` keeps one
`BearerTokens` per key (sakura/bearer.py: renewed ahead of expiry by a single flight), so a
rotated key starts its own token and the old one's is never sent again. The exchange itself
is the client's (`exchange`): it goes through the same rate limiter, fair share, retries and
deadline as any call, since it spends the same quota.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Protocol, runtime_checkable

import httpx

from sakura.bearer import BearerToken, BearerTokens
from sakura.credentials import Credentials

FORM = "application/x-www-form-urlencoded"
"""The token exchange's body (RFC 7523)."""
API_KEY_HINT = "check SAKURA_ACCESS_TOKEN and SAKURA_ACCESS_TOKEN_SECRET"
PRINCIPAL_HINT = (
    "check SAKURA_SERVICE_PRINCIPAL_ID and SAKURA_SERVICE_PRINCIPAL_KEY_ID, that the key's public "
    "half is uploaded to that service principal and enabled, and that the clock is right"
)


@runtime_checkable
class GrantCredentials(Protocol):
    """Credentials that buy Bearer tokens with a signed grant (a service principal)."""

    @property
    def fingerprint(self) -> str: ...

    @property
    def token_endpoint(self) -> str: ...

    def grant(self, now: float) -> dict[str, str]: ...


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer TOKEN`; repr never shows the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


@dataclass(frozen=True)
class Authorization:
    """What one request carries, and the Bearer token in it (empty for an API key)."""

    auth: httpx.Auth
    bearer: str = field(default="", repr=False)


class Authorizer:
    """The Authorization for the credentials of the moment."""

    def __init__(
        self,
        exchange: Callable[[GrantCredentials], Awaitable[BearerToken]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._exchange = exchange
        self._clock = clock
        self._tokens: dict[str, BearerTokens] = {}

    async def authorize(self, key: Credentials) -> Authorization:
        if not isinstance(key, GrantCredentials):
            return Authorization(key.auth())
        token = await self.tokens(key).current()
        return Authorization(BearerAuth(token), token)

    def tokens(self, key: GrantCredentials) -> BearerTokens:
        """The token cache of `key` (one per key: a rotated key gets a fresh one)."""
        tokens = self._tokens.get(key.fingerprint)
        if tokens is None:
            self._tokens = {
                key.fingerprint: BearerTokens(lambda: self._exchange(key), clock=self._clock)
            }
            tokens = self._tokens[key.fingerprint]
        return tokens

    def refused(self, authorization: Authorization) -> bool:
        """Secret Manager answered 401 to `authorization`: drop its token (True) so the next
        attempt buys another; False for an API key (nothing to renew)."""
        if not authorization.bearer:
            return False
        for tokens in self._tokens.values():
            tokens.drop(authorization.bearer)
        return True

    @property
    def bearer_values(self) -> tuple[str, ...]:
        """Every token held, for scrubbing messages."""
        return tuple(v for tokens in self._tokens.values() for v in tokens.values)

    def expires_in(self) -> float | None:
        """Seconds the current token has left (None: no token held); for `doctor`."""
        for tokens in self._tokens.values():
            return tokens.expires_in
        return None


def hint_for(key: Credentials, date_header: str | None = None, now: float = 0.0) -> str:
    """What to check when Sakura refuses `key` (a 401); for a service principal, with how far
    our clock is from Sakura's (`date_header`, its answer's `Date`) when that matters."""
    if not isinstance(key, GrantCredentials):
        return API_KEY_HINT
    return PRINCIPAL_HINT + skew_note(date_header, now)


SKEW = 60.0
"""Seconds our clock may differ from Sakura's before a refusal says so (a grant's `iat` and
`exp` are judged by Sakura's clock, with about this much leeway)."""


def skew_note(date_header: str | None, now: float) -> str:
    """For a refusal: how far our clock is from Sakura's, by its answer's `Date` header, when
    that is more than SKEW; "" otherwise (or when the header is missing or unreadable)."""
    if not date_header:
        return ""
    try:
        theirs = parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return ""
    off = now - theirs
    if abs(off) <= SKEW:
        return ""
    side = "ahead of" if off > 0 else "behind"
    return (
        f"; this host's clock is {abs(off):.0f} s {side} Sakura's: set the node's time right "
        "(NTP), a grant's iat and exp are judged by Sakura's clock"
    )
