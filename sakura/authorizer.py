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


def hint_for(key: Credentials) -> str:
    """What to check when Sakura refuses `key` (a 401)."""
    return PRINCIPAL_HINT if isinstance(key, GrantCredentials) else API_KEY_HINT
