"""The client with a service principal, against the emulator over HTTP: a whole fetch, a token
revoked mid-rollout renewed without a failed fetch, one exchange for many calls, a refused key
named, a throttled exchange retried, and nothing secret in a message."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.clock import HandClock
from support.principal_kit import KID, PRINCIPAL_ID, private_pem, rsa_key, seed_principal
from support.values import VAULT

from emulator import Emulator, EmulatorConfig, run_in_thread
from sakura import Backoff, RateLimiter, SakuraClient, SakuraConfig, Unauthorized
from sakura.authorizer import PRINCIPAL_HINT
from sakura.config import PrincipalSettings
from sakura.errors import SakuraError

VALUE = "pw-8Kq2-zT91"
PATH = "/service-principals/oauth2/token"


@pytest.fixture
def emu() -> Emulator:
    seed = {
        "vaults": [{"id": VAULT, "secrets": {"db": VALUE}}],
        "service_principals": [seed_principal()],
    }
    return Emulator(EmulatorConfig(access_token="t", access_token_secret="s", seed=seed))


@pytest.fixture
def url(emu: Emulator) -> Iterator[str]:
    with run_in_thread(emu) as base:
        yield base


def client(url: str, **kw: Any) -> SakuraClient:
    settings = PrincipalSettings(
        PRINCIPAL_ID, KID, private_pem(rsa_key()), token_endpoint=url + PATH
    )
    config = SakuraConfig(base_url=url, principal=settings)
    kw.setdefault("limiter", RateLimiter(per_minute=60_000, burst=100))
    kw.setdefault("backoff", Backoff(base=0.02, cap=0.2))
    kw.setdefault("deadline", 5.0)
    return SakuraClient(config, **kw)


def outcomes(sakura: SakuraClient) -> list[str]:
    seen: list[str] = []
    sakura.on_exchange = lambda error: seen.append(type(error).__name__ if error else "ok")
    return seen


async def test_a_fetch_with_a_service_principal_buys_one_token(url: str, emu: Emulator) -> None:
    async with client(url) as sakura:
        seen = outcomes(sakura)
        assert (await sakura.unveil(VAULT, "db")).value == VALUE
        assert [s.name for s in await sakura.list_secrets(VAULT)] == ["db"]
        await sakura.list_vaults()
        assert sakura.authorizer.expires_in() == pytest.approx(3600, abs=5)
    assert emu.principals.exchanges == 1 and emu.knobs.calls["token"] == 1
    assert seen == ["ok"]


async def test_a_revoked_token_is_renewed_once_for_a_whole_rollout(url: str, emu: Emulator) -> None:
    async with client(url) as sakura:
        await sakura.unveil(VAULT, "db")
        emu.principals.expire_tokens()  # every token Sakura issued stops working now
        values = await asyncio.gather(*(sakura.unveil(VAULT, "db") for _ in range(50)))
    assert {v.value for v in values} == {VALUE}
    assert emu.principals.exchanges == 2
    assert emu.knobs.statuses[401] >= 1


async def test_a_disabled_key_is_refused_with_sakuras_reason_and_what_to_check(
    url: str, emu: Emulator
) -> None:
    emu.principals.set_enabled(KID, False)
    async with client(url) as sakura:
        seen = outcomes(sakura)
        with pytest.raises(Unauthorized) as caught:
            await sakura.unveil(VAULT, "db")
    message = str(caught.value)
    assert f"service principal key '{KID}' is disabled" in message
    assert message.endswith(PRINCIPAL_HINT)
    assert seen == ["Unauthorized"] and emu.knobs.calls["token"] == 1  # a 401 is not retried


async def test_a_clock_ten_minutes_ahead_is_named_with_the_refusal(
    url: str, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ahead = time.time() + 600
    monkeypatch.setattr("sakura.client.time.time", lambda: ahead)  # the grant's iat and exp
    async with client(url) as sakura:
        with pytest.raises(Unauthorized) as caught:
            await sakura.unveil(VAULT, "db")
    message = str(caught.value)
    assert "the assertion's iat is in the future: check the client's clock" in message
    found = re.search(r"this host's clock is (\d+) s ahead of Sakura's", message)
    assert found is not None and 598 <= int(found[1]) <= 602, message


async def test_a_throttled_exchange_is_retried(url: str, emu: Emulator) -> None:
    emu.knobs.fail_next(429, 1)
    async with client(url) as sakura:
        assert (await sakura.unveil(VAULT, "db")).value == VALUE
    assert emu.knobs.calls["token"] == 2 and emu.principals.exchanges == 1


async def test_the_exchanges_429_and_retry_after_are_honoured(url: str, emu: Emulator) -> None:
    clock = HandClock()
    emu.knobs.clock = clock  # Sakura's window and the client's waits on one hand clock
    emu.knobs.set_rate_limit(1, 60)
    assert httpx.get(f"{url}/secretmanager/vaults", auth=("t", "s")).status_code == 200
    limiter = RateLimiter(per_minute=60_000, burst=100, clock=clock, sleep=clock.sleep)
    async with client(url, limiter=limiter, clock=clock, sleep=clock.sleep, deadline=300) as sakura:
        seen = outcomes(sakura)
        assert (await sakura.unveil(VAULT, "db")).value == VALUE
    assert emu.knobs.statuses[429] == 2  # the exchange's, then the unveil's
    assert emu.principals.exchanges == 1 and seen == ["ok"]
    assert sum(clock.waits) >= 120  # each Retry-After (60 s) waited out, never hammered


class CountingLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__(per_minute=60_000, burst=100)
        self.tenants: list[object] = []

    async def acquire(self, max_wait: float | None = None, *, tenant: Any = None) -> bool:
        self.tenants.append(tenant)
        return await super().acquire(max_wait, tenant=tenant)


async def test_the_exchange_takes_a_turn_in_the_clients_rate_limiter(
    url: str, emu: Emulator
) -> None:
    limiter = CountingLimiter()
    async with client(url, limiter=limiter) as sakura:
        await sakura.unveil(VAULT, "db", tenant="shop")
    assert limiter.tenants == ["shop", None]  # the unveil's turn, then the exchange's
    assert emu.knobs.calls["total"] == 2


async def test_nothing_secret_reaches_a_message(url: str, emu: Emulator) -> None:
    async with client(url) as sakura:
        await sakura.unveil(VAULT, "db")
        token = sakura.authorizer.bearer_values[0]
        emu.knobs.fail_next(500, 10)
        with pytest.raises(SakuraError) as caught:
            await sakura.unveil(VAULT, "db")
        texts = [str(caught.value), repr(sakura), repr(sakura.config), repr(sakura.authorizer)]
    pem = private_pem(rsa_key())
    for text in texts:
        assert token not in text and pem[30:70] not in text and VALUE not in text


async def test_a_secret_manager_answer_never_carries_the_assertion(url: str) -> None:
    seen: list[httpx.Request] = []

    class Spy(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return await super().handle_async_request(request)

    async with client(url, transport=Spy()) as sakura:
        await sakura.unveil(VAULT, "db")
    exchange, unveil = seen
    assert exchange.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in exchange.headers
    assert unveil.headers["authorization"].startswith("Bearer ")
    assert b"assertion" not in unveil.content


async def test_a_token_refused_again_after_its_renewal_is_the_callers_401() -> None:
    """Secret Manager refuses every token (a principal without rights on the vault, say): the
    client renews once per call, then reports the 401 instead of buying tokens forever."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == PATH:
            sent.append("token")
            token = f"tok-{len(sent)}"
            return httpx.Response(200, json={"access_token": token, "expires_in": 3600})
        sent.append(request.headers["Authorization"])
        return httpx.Response(401, json={"message": "token not accepted"})

    base = "http://sakura.invalid"
    async with client(base, transport=httpx.MockTransport(answer), max_retries=0) as sakura:
        with pytest.raises(Unauthorized):
            await sakura.unveil(VAULT, "db")
    assert sent == ["token", "Bearer tok-1", "token", "Bearer tok-3"]
