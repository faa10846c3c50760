"""The Bearer token cache on a hand clock: renewal ahead of expiry, one exchange for all."""

from __future__ import annotations

import asyncio

import pytest
from support.clock import HandClock

from sakura.bearer import BearerToken, BearerTokens, renew_ahead
from sakura.errors import Throttled


class Endpoint:
    """A token endpoint stand-in: counts exchanges, can be slowed or made to fail."""

    def __init__(self, lifetime: float = 3600) -> None:
        self.lifetime = lifetime
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def __call__(self) -> BearerToken:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return BearerToken(f"token-{self.calls}", self.lifetime)


def test_renewal_starts_five_minutes_ahead_or_halfway() -> None:
    assert renew_ahead(3600) == 300
    assert renew_ahead(120) == 60


async def test_one_token_serves_until_renewal_time_then_one_exchange() -> None:
    clock, endpoint = HandClock(), Endpoint()
    tokens = BearerTokens(endpoint, clock=clock)
    assert tokens.expires_in is None
    assert await tokens.current() == "token-1"
    clock.now += 3299
    assert await tokens.current() == "token-1"
    assert tokens.expires_in == 301
    clock.now += 1  # 300 s before expiry
    assert await tokens.current() == "token-2"
    assert endpoint.calls == 2 and tokens.exchanges == 2
    assert tokens.values == ("token-2",)


async def test_a_hundred_concurrent_callers_share_one_exchange() -> None:
    endpoint = Endpoint()
    endpoint.gate = asyncio.Event()
    tokens = BearerTokens(endpoint, clock=HandClock())
    callers = [asyncio.create_task(tokens.current()) for _ in range(100)]
    await asyncio.sleep(0)
    endpoint.gate.set()
    assert set(await asyncio.gather(*callers)) == {"token-1"}
    assert endpoint.calls == 1


async def test_a_failed_exchange_reaches_every_waiter_and_the_next_call_tries_again() -> None:
    endpoint = Endpoint()
    endpoint.gate, endpoint.fail = asyncio.Event(), Throttled("slow down", retry_after=5)
    tokens = BearerTokens(endpoint, clock=HandClock())
    callers = [asyncio.create_task(tokens.current()) for _ in range(10)]
    await asyncio.sleep(0)
    endpoint.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, Throttled) for r in results) and endpoint.calls == 1
    endpoint.fail = None
    assert await tokens.current() == "token-2"


async def test_a_failed_renewal_keeps_the_old_token_until_it_expires() -> None:
    clock, endpoint = HandClock(), Endpoint()
    tokens = BearerTokens(endpoint, clock=clock)
    await tokens.current()
    endpoint.fail = Throttled("slow down", retry_after=5)
    clock.now += 3500
    assert await tokens.current() == "token-1"
    clock.now += 100  # expired now
    with pytest.raises(Throttled):
        await tokens.current()


async def test_a_refused_token_is_dropped_and_exchanged_again() -> None:
    endpoint = Endpoint()
    tokens = BearerTokens(endpoint, clock=HandClock())
    first = await tokens.current()
    tokens.drop("some-other-token")
    assert await tokens.current() == first
    tokens.drop(first)
    assert tokens.values == ()
    assert await tokens.current() == "token-2"


async def test_one_cancelled_caller_does_not_cancel_the_exchange_for_others() -> None:
    endpoint = Endpoint()
    endpoint.gate = asyncio.Event()
    tokens = BearerTokens(endpoint, clock=HandClock())
    impatient = asyncio.create_task(tokens.current())
    patient = asyncio.create_task(tokens.current())
    await asyncio.sleep(0)
    impatient.cancel()
    endpoint.gate.set()
    assert await patient == "token-1"
    assert endpoint.calls == 1
