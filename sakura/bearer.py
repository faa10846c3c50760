"""The Bearer token a service principal's calls carry: kept, renewed ahead of expiry, once.

Every Secret Manager call needs a live token, and the exchange that buys one is a Sakura call
too (it spends the same quota, and can answer 429). So one token serves every call until it
is near its end; then the first caller renews it and every other caller waits for that one
exchange (a single flight) instead of starting its own: a rollout of a thousand fetches costs
one exchange an hour, not a thousand.

Renewal starts `renew_ahead` before expiry. If it fails while the old token still has time
left, callers keep using the old one (Sakura down for a minute does not fail a fetch that
the old token could still make); only once it has expired does the failure reach them. A 401
from Secret Manager on a token (revoked, or the clocks disagree) drops it, so the next call
exchanges again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sakura.errors import BadResponse

if TYPE_CHECKING:
    import asyncio


@dataclass(frozen=True)
class BearerToken:
    """A token the endpoint issued and how long it lasts from receipt (seconds); its value is
    never shown."""

    value: str = field(repr=False)
    lifetime: float


def parse_token_answer(data: Mapping[str, Any], now: float) -> BearerToken:
    """The token endpoint's 200 answer, checked; `now` (Unix seconds) reads
    `token_expired_at` when `expires_in` is missing."""
    what = "exchanging the service principal's grant for a token"
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise BadResponse(f"{what}: Sakura's answer has no 'access_token'", status=200)
    kind = data.get("token_type", "Bearer")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise BadResponse(f"{what}: Sakura issued a {kind!r} token, not a Bearer", status=200)
    expires_in = data.get("expires_in")
    if isinstance(expires_in, int) and not isinstance(expires_in, bool):
        lifetime = float(expires_in)
    else:
        try:
            lifetime = datetime.fromisoformat(str(data.get("token_expired_at"))).timestamp() - now
        except ValueError:
            raise BadResponse(
                f"{what}: Sakura's answer has neither 'expires_in' nor a readable "
                "'token_expired_at'",
                status=200,
            ) from None
    if lifetime <= 0:
        raise BadResponse(f"{what}: Sakura issued a token that has already expired", status=200)
    return BearerToken(token, lifetime)


def renew_ahead(lifetime: float) -> float:
    """Seconds before expiry to renew: 5 minutes of an hour's token, half of a short one."""
    return min(300.0, lifetime / 2)


@dataclass(frozen=True)
class _Held:
    value: str
    expires_at: float
    renew_at: float


class BearerTokens:
    """One service principal's current token, renewed by a single flight of `exchange`."""

    def __init__(
        self,
        exchange: Callable[[], Awaitable[BearerToken]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._exchange = exchange
        self._clock = clock
        self._held: _Held | None = None
        self._flight: asyncio.Future[_Held] | None = None
        self.exchanges = 0

    @property
    def expires_in(self) -> float | None:
        """Seconds the current token has left (None: none held); for `doctor`, never the token."""
        if self._held is None:
            return None
        return max(0.0, self._held.expires_at - self._clock())

    @property
    def values(self) -> tuple[str, ...]:
        """The token held, for scrubbing messages; never to show."""
        return () if self._held is None else (self._held.value,)

    async def current(self) -> str:
        """A live token: the one held, or a fresh one from the one exchange in flight."""
        held = self._held
        now = self._clock()
        if held is not None and now < held.renew_at:
            return held.value
        try:
            return (await self._renewed()).value
        except Exception:
            if held is not None and self._clock() < held.expires_at:
                return held.value  # renewal failed, the old token still works
            raise

    def drop(self, value: str) -> None:
        """Sakura refused `value`: forget it (if still held) so the next call exchanges."""
        if self._held is not None and self._held.value == value:
            self._held = None

    async def _renewed(self) -> _Held:
        import asyncio  # here: an API key's sync reader imports this module, never a loop

        if self._flight is None:
            self._flight = asyncio.ensure_future(self._exchange_once())
        flight = self._flight
        # shield: one caller cancelled (its own deadline) must not cancel the others' exchange
        return await asyncio.shield(flight)

    async def _exchange_once(self) -> _Held:
        try:
            self.exchanges += 1
            token = await self._exchange()
            received = self._clock()
            held = _Held(
                token.value,
                received + token.lifetime,
                received + token.lifetime - renew_ahead(token.lifetime),
            )
            self._held = held
            return held
        finally:
            self._flight = None
