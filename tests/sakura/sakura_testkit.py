"""Shared by the sakura tests: a seeded emulator on a real socket, clients tuned for speed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from emulator import Emulator, EmulatorConfig, run_in_thread
from sakura import Backoff, RateLimiter, SakuraClient, SakuraConfig

TOKEN = "tok-7f3a9c51e2d84b06"
SECRET = "sec-Q9x!vL2#pR8zK4mW"
VAULT = "110000000001"
OTHER_VAULT = "110000000002"
DB_PASSWORD_V1 = "first-pa55-Zq81"
DB_PASSWORD_V2 = "second-pa55-Mx42"
API_JSON = {"user": "app", "token": "jt-93kd-Lq0", "port": 5432, "tls": True, "extra": {"a": [1]}}

SEED: dict[str, Any] = {
    "vaults": [
        {
            "id": VAULT,
            "name": "demo",
            "secrets": {"db-password": [DB_PASSWORD_V1, DB_PASSWORD_V2], "api": API_JSON},
        },
        {"id": OTHER_VAULT, "name": "empty"},
    ]
}


class HandClock:
    """Time that moves only when the code under test sleeps on it (or a test moves `now`).

    `sleep(d)` records d, moves `now` by d and yields to the loop once: a wait of any length
    takes no real time, and a test asserts how long the code waited, not how long it took.
    """

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    MAX_SLEEPS = 100_000
    """More waits than any test needs: a wait loop that never ends fails at once instead of
    spinning until a timeout (a mutant under mutation testing, a bug in a change)."""

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if len(self.slept) > self.MAX_SLEEPS:
            raise AssertionError(f"more than {self.MAX_SLEEPS} waits: a wait loop never ends")
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def emu() -> Emulator:
    return Emulator(EmulatorConfig(access_token=TOKEN, access_token_secret=SECRET, seed=SEED))


@pytest.fixture
def url(emu: Emulator) -> Iterator[str]:
    with run_in_thread(emu) as base:
        yield base


MakeClient = Callable[..., SakuraClient]


@pytest.fixture
def make_client(url: str) -> MakeClient:
    """Clients with short delays: backoff 20 ms doubling to 200 ms, a roomy rate limit.

    `clock=HandClock()` runs the client, its default limiter and its waits on that clock.
    """

    def make(**kwargs: Any) -> SakuraClient:
        token = kwargs.pop("token", TOKEN)
        secret = kwargs.pop("secret", SECRET)
        base = kwargs.pop("base_url", url + "/cloud/zone/tk1a/api/cloud/1.1")
        clock = kwargs.pop("clock", None)
        if clock is not None:
            kwargs.update(clock=clock, sleep=clock.sleep)
            timing: dict[str, Any] = {"clock": clock, "sleep": clock.sleep}
        else:
            timing = {}
        kwargs.setdefault("limiter", RateLimiter(per_minute=60_000, burst=100, **timing))
        kwargs.setdefault("backoff", Backoff(base=0.02, cap=0.2))
        kwargs.setdefault("deadline", 5.0)
        kwargs.setdefault("timeout", 2.0)
        return SakuraClient(SakuraConfig(token, secret, base_url=base), **kwargs)

    return make
