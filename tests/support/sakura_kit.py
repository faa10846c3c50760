"""Shared by the sakura tests: a seeded emulator on a real socket, clients tuned for speed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator, EmulatorConfig, run_in_thread
from sakura import Backoff, RateLimiter, SakuraClient, SakuraConfig
from support.values import OTHER_VAULT, VAULT

TOKEN = "tok-7f3a9c51e2d84b06"
SECRET = "sec-Q9x!vL2#pR8zK4mW"
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


def tls_files(directory: Path) -> Path:
    """A private CA and a serving certificate for 127.0.0.1 in `directory` (ca.crt, tls.crt,
    tls.key): the emulator over TLS, which a client trusts only with `verify=<ca.crt>`."""
    from injector.operations.certs import generate_ca, issue_serving_cert

    ca = generate_ca("sakura-test-ca")
    leaf = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    (directory / "tls.crt").write_bytes(leaf.cert_pem)
    (directory / "tls.key").write_bytes(leaf.key_pem)
    return directory
