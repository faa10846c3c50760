"""The client against the emulator over real sockets: reads, errors, retries, deadlines.

Waits and deadlines run on a HandClock shared with the emulator's rate-limit window, so the
tests assert how long the client waited (the clock), never how long a busy machine took.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from support.clock import HandClock
from support.sakura_kit import (
    API_JSON,
    DB_PASSWORD_V1,
    DB_PASSWORD_V2,
    OTHER_VAULT,
    SECRET,
    TOKEN,
    VAULT,
    MakeClient,
    tls_files,
)

from emulator import Emulator, Fault, run_in_thread
from sakura import (
    NotFound,
    RateLimiter,
    Rejected,
    SecretInfo,
    Throttled,
    Unauthorized,
    Unavailable,
    extract_key,
)


async def test_unveil_latest_and_pinned(make_client: MakeClient) -> None:
    async with make_client() as c:
        latest = await c.unveil(VAULT, "db-password")
        pinned = await c.unveil(VAULT, "db-password", 1)
    assert (latest.name, latest.version, latest.value) == ("db-password", 2, DB_PASSWORD_V2)
    assert (pinned.version, pinned.value) == (1, DB_PASSWORD_V1)
    assert DB_PASSWORD_V2 not in repr(latest)


async def test_bare_endpoint_like_the_official_mock(make_client: MakeClient, url: str) -> None:
    async with make_client(base_url=url) as c:
        assert (await c.unveil(VAULT, "db-password")).value == DB_PASSWORD_V2


async def test_json_key_of_an_unveiled_value(make_client: MakeClient) -> None:
    async with make_client() as c:
        value = (await c.unveil(VAULT, "api")).value
    assert extract_key(value, "token", "api#token") == API_JSON["token"]
    assert extract_key(value, "port", "api#port") == "5432"
    assert json.loads(extract_key(value, "extra", "api#extra")) == {"a": [1]}


async def test_list_create_delete(make_client: MakeClient) -> None:
    async with make_client() as c:
        assert await c.list_secrets(VAULT) == [
            SecretInfo("db-password", 2),
            SecretInfo("api", 1),
        ]
        vaults = await c.list_vaults()
        assert [(v.id, v.name) for v in vaults] == [(VAULT, "demo"), (OTHER_VAULT, "empty")]
        assert await c.create(OTHER_VAULT, "new", "n1") == 1
        assert await c.create(OTHER_VAULT, "new", "n2") == 2
        assert (await c.unveil(OTHER_VAULT, "new")).value == "n2"
        await c.delete(OTHER_VAULT, "new")
        assert await c.list_secrets(OTHER_VAULT) == []
        with pytest.raises(NotFound) as missing:
            await c.delete(OTHER_VAULT, "new")
    assert (missing.value.kind, missing.value.name) == ("secret", "new")


async def test_not_found_names_what_is_missing(make_client: MakeClient) -> None:
    async with make_client() as c:
        with pytest.raises(NotFound) as vault:
            await c.unveil("999999999999", "db-password")
        with pytest.raises(NotFound) as secret:
            await c.unveil(VAULT, "nope")
        with pytest.raises(NotFound) as version:
            await c.unveil(VAULT, "db-password", 7)
        with pytest.raises(NotFound) as listing:
            await c.list_secrets("999999999999")
    assert (vault.value.kind, vault.value.name) == ("vault", "999999999999")
    assert "vault 999999999999 not found" in str(vault.value)
    assert (secret.value.kind, secret.value.name) == ("secret", "nope")
    assert "'nope' not found in vault 110000000001" in str(secret.value)
    assert 'secret "nope" not found' in str(secret.value)  # Sakura's own text
    assert (version.value.kind, version.value.name) == ("version", "db-password@7")
    assert "no version 7" in str(version.value) and "latest is 2" in str(version.value)
    assert listing.value.kind == "vault"


async def test_bad_credentials(make_client: MakeClient, emu: Emulator) -> None:
    async with make_client(secret="wrong-secret-value") as c:
        with pytest.raises(Unauthorized) as err:
            await c.unveil(VAULT, "db-password")
    assert err.value.status == 401
    assert "invalid access token or secret" in str(err.value)
    assert "SAKURA_ACCESS_TOKEN" in str(err.value)
    assert "wrong-secret-value" not in str(err.value) and TOKEN not in str(err.value)
    assert emu.knobs.calls["unveil"] == 1  # 401 is not retried


async def test_429_retry_after_is_honoured(make_client: MakeClient, emu: Emulator) -> None:
    clock = HandClock()
    emu.knobs.clock = clock
    emu.knobs.set_rate_limit(2, window=1.0)
    async with make_client(clock=clock) as c:
        await c.unveil(VAULT, "db-password")
        await c.unveil(VAULT, "db-password")
        got = await c.unveil(VAULT, "db-password", 1)
    assert got.value == DB_PASSWORD_V1
    assert emu.knobs.statuses[429] == 1 and emu.knobs.calls["unveil"] == 4
    assert clock.waits == [pytest.approx(1.0)]  # Retry-After: 1, not the 20 ms backoff


async def test_a_429_holds_back_every_caller_sharing_the_limiter(
    make_client: MakeClient, emu: Emulator
) -> None:
    """Sakura's quota is the account's: after one 429 the others wait instead of spending more."""
    clock = HandClock()
    emu.knobs.clock = clock
    emu.knobs.set_rate_limit(2, window=2.0)
    shared = RateLimiter(per_minute=60_000, burst=100, clock=clock, sleep=clock.sleep)
    async with (
        make_client(limiter=shared, clock=clock, max_retries=0) as a,
        make_client(limiter=shared, clock=clock) as b,
    ):
        await a.unveil(VAULT, "db-password")
        await a.unveil(VAULT, "api")  # the window is full
        with pytest.raises(Throttled) as refused:
            await a.unveil(VAULT, "db-password", 1)  # 429, Retry-After: 2; a does not retry
        assert refused.value.retry_after == 2 and clock.waits == []
        second = await b.unveil(VAULT, "api")  # waits out a's Retry-After, then sends once
    assert second.name == "api"
    assert clock.waits == [pytest.approx(2.0)]  # b's wait in the shared limiter
    assert emu.knobs.statuses[429] == 1  # b never spent a request on a certain 429
    assert emu.knobs.calls["unveil"] == 4


async def test_429_beyond_the_deadline_is_throttled_at_once(
    make_client: MakeClient, emu: Emulator
) -> None:
    clock = HandClock()
    emu.knobs.clock = clock
    emu.knobs.set_rate_limit(1, window=30.0)
    async with make_client(deadline=2.0, clock=clock) as c:
        await c.unveil(VAULT, "db-password")
        with pytest.raises(Throttled) as err:
            await c.unveil(VAULT, "db-password")
    assert clock.waits == []  # not the 30 s wait, nor any part of it
    assert err.value.retry_after == 30 and err.value.status == 429
    assert "Sakura asks to retry after 30s" in str(err.value)
    assert "gave up after 1 attempts: the next retry in 30s would pass the 2s deadline" in str(
        err.value
    )
    assert emu.knobs.calls["unveil"] == 2


async def test_5xx_faults_are_retried_then_succeed(make_client: MakeClient, emu: Emulator) -> None:
    emu.knobs.fail_next(503, 2)
    emu.knobs.fail_next(500, 1)
    async with make_client() as c:
        assert (await c.unveil(VAULT, "db-password")).value == DB_PASSWORD_V2
    assert emu.knobs.calls["unveil"] == 4


async def test_random_faults_are_retried(make_client: MakeClient, emu: Emulator) -> None:
    emu.knobs.set_faults([Fault(502, 0.3)])
    async with make_client(max_retries=20) as c:
        for _ in range(10):
            assert (await c.unveil(VAULT, "db-password")).version == 2


async def test_501_is_not_retried(make_client: MakeClient, emu: Emulator) -> None:
    emu.knobs.fail_next(501, 1)
    async with make_client() as c:
        with pytest.raises(Unavailable):
            await c.unveil(VAULT, "db-password")
    assert emu.knobs.calls["unveil"] == 1


async def test_400_is_rejected_not_retried(make_client: MakeClient, emu: Emulator) -> None:
    async with make_client() as c:
        with pytest.raises(Rejected) as err:
            await c.create(VAULT, "big", "x" * 65_537)
    assert err.value.status == 400 and "65536 bytes" in str(err.value)
    assert emu.knobs.calls["create"] == 1


async def test_permanent_faults_end_within_the_deadline(
    make_client: MakeClient, emu: Emulator
) -> None:
    clock = HandClock()
    emu.knobs.set_faults([Fault(503, 1.0)])
    async with make_client(deadline=1.0, max_retries=100, clock=clock) as c:
        with pytest.raises(Unavailable) as err:
            await c.unveil(VAULT, "db-password")
    attempts = gave_up_after(str(err.value), "1s")
    assert attempts >= 3 and len(clock.waits) == attempts - 1  # a backoff wait between them
    assert emu.knobs.calls["unveil"] in (attempts - 1, attempts)
    assert sum(clock.waits) < 1.0  # every wait within the 1 s deadline
    assert "HTTP 503" in str(err.value) and "injected fault" in str(err.value)
    assert "db-password" in str(err.value)


async def test_max_retries_bounds_attempts(make_client: MakeClient, emu: Emulator) -> None:
    emu.knobs.set_faults([Fault(500, 1.0)])
    async with make_client(max_retries=2) as c:
        with pytest.raises(Unavailable):
            await c.list_secrets(VAULT)
    assert emu.knobs.calls["list_secrets"] == 3


async def test_slow_answers_time_out(make_client: MakeClient, emu: Emulator) -> None:
    clock = HandClock()  # the waits between attempts; each attempt's 0.1 s timeout is real
    emu.knobs.latency = 1.0
    async with make_client(timeout=0.1, deadline=0.5, max_retries=100, clock=clock) as c:
        with pytest.raises(Unavailable) as err:
            await c.unveil(VAULT, "db-password")
    attempts = gave_up_after(str(err.value), "0.5s")
    assert attempts >= 2 and len(clock.waits) == attempts - 1  # a safe read's timeouts retried
    assert emu.knobs.calls["unveil"] in (attempts - 1, attempts)
    assert "reading secret 'db-password' from vault 110000000001" in str(err.value)
    assert "Sakura did not answer within 0.1s" in str(err.value)


async def test_create_is_never_retried(make_client: MakeClient, emu: Emulator) -> None:
    emu.knobs.set_faults([Fault(503, 1.0)])
    async with make_client() as c:
        with pytest.raises(Unavailable) as err:
            await c.create(VAULT, "db-password", "never-sent-twice-9z")
    assert emu.knobs.calls["create"] == 1
    assert "never-sent-twice-9z" not in str(err.value)


async def test_create_timeout_is_not_retried(make_client: MakeClient, emu: Emulator) -> None:
    emu.knobs.latency = 0.4
    async with make_client(timeout=0.1) as c:
        with pytest.raises(Unavailable) as err:
            await c.create(VAULT, "db-password", "v3")
    assert emu.knobs.calls["create"] == 1
    assert "may or may not have taken effect" in str(err.value)


async def test_delete_is_not_retried(make_client: MakeClient, emu: Emulator) -> None:
    emu.knobs.fail_next(503, 1)
    async with make_client() as c:
        with pytest.raises(Unavailable):
            await c.delete(VAULT, "api")
    assert emu.knobs.calls["delete"] == 1


async def test_unreachable_endpoint(make_client: MakeClient) -> None:
    clock = HandClock()
    async with make_client(
        base_url="http://127.0.0.1:9", deadline=0.5, max_retries=100, clock=clock
    ) as c:
        with pytest.raises(Unavailable) as err:
            await c.list_vaults()
    assert "listing vaults: cannot reach http://127.0.0.1:9 (ConnectError: " in str(err.value)
    attempts = gave_up_after(str(err.value), "0.5s")
    assert attempts >= 2 and len(clock.waits) == attempts - 1
    assert sum(clock.waits) < 0.5  # retried within the deadline


async def test_shared_limiter_paces_and_bounds_by_deadline(
    make_client: MakeClient, emu: Emulator
) -> None:
    clock = HandClock()
    shared = RateLimiter(per_minute=60, burst=1, clock=clock, sleep=clock.sleep)
    async with (
        make_client(limiter=shared, clock=clock) as a,
        make_client(limiter=shared, deadline=0.3, clock=clock) as b,
    ):
        await a.unveil(VAULT, "api")
        clock.now += 0.25
        with pytest.raises(Throttled) as err:
            await b.unveil(VAULT, "api")  # the next slot is 0.75 s away: past b's deadline
        assert clock.waits == []  # refused at once, not after the wait
        assert await a.unveil(VAULT, "api")  # a, with the default 5 s deadline, waits for it
    assert clock.waits == [pytest.approx(0.75)]
    assert err.value.status is None
    assert err.value.retry_after == pytest.approx(0.75)
    assert (
        "reading secret 'api' from vault 110000000001: the client-side rate limit (60/min, or a "
        "Retry-After from Sakura) leaves no slot within the 0.3s deadline; the next is in 0.75s"
    ) == str(err.value)
    assert emu.knobs.calls["unveil"] == 2


async def test_the_deadline_bounds_an_answer_that_trickles_in(make_client: MakeClient) -> None:
    """httpx's timeout is per read, so a byte every 0.2 s never trips it: the deadline must."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: 100000\r\n\r\n")
        try:
            while True:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.2)
        except (ConnectionError, asyncio.CancelledError):
            writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with make_client(base_url=f"http://127.0.0.1:{port}", timeout=1.0, deadline=1.0) as c:
            # wait_for: without the deadline this would never end (a TimeoutError, not this)
            with pytest.raises(Unavailable) as err:
                await asyncio.wait_for(c.unveil(VAULT, "db-password"), timeout=30)
    finally:
        server.close()
    assert "db-password" in str(err.value) and "did not answer" in str(err.value)


def test_an_attempt_cut_short_by_the_deadline_reports_the_failure_before_it() -> None:
    """A 503, then a Sakura too slow for the time left: the user needs the 503, not 'no answer'."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from emulator.server import run_in_thread
    from sakura import Backoff, SakuraClient, SakuraConfig

    seen: list[int] = []

    async def unveil(request: Request) -> JSONResponse:
        seen.append(1)
        if len(seen) == 1:
            return JSONResponse({"error": "maintenance in progress"}, status_code=503)
        await asyncio.sleep(2)  # past the deadline (0.8 s), within the timeout (5 s)
        return JSONResponse({})

    path = f"/secretmanager/vaults/{VAULT}/secrets/unveil"
    app = Starlette(routes=[Route(path, unveil, methods=["POST"])])

    async def read(url: str) -> None:
        config = SakuraConfig(TOKEN, "a-long-test-secret-9f2", base_url=url)
        async with SakuraClient(
            config, deadline=0.8, timeout=5.0, backoff=Backoff(base=0.02, cap=0.02)
        ) as c:
            await c.unveil(VAULT, "db-password")

    with run_in_thread(app) as url:
        with pytest.raises(Unavailable) as err:
            asyncio.run(read(url))
    message = str(err.value)
    assert "HTTP 503" in message and "maintenance in progress" in message
    assert "gave up after 2 attempts: the 0.8s deadline ran out" in message
    assert len(seen) == 2


def gave_up_after(message: str, deadline: str) -> int:
    """The attempts a deadline note counts. The deadline ends a call in one of two ways: the
    next wait would pass it, or the time left (on the hand clock) is too short for a real
    request, which then times out; the note says which."""
    note = re.search(
        rf"\(gave up after (\d+) attempts: (the next retry in \S+s would pass )?"
        rf"the {re.escape(deadline)} deadline( ran out)?\)$",
        message,
    )
    assert note is not None, message
    return int(note.group(1))


async def test_tls_is_verified_by_default_and_a_ca_bundle_file_is_trusted(
    emu: Emulator, tmp_path: Path
) -> None:
    """The emulator over TLS with a private CA: refused by default, read with `verify=<CA>`."""
    from sakura import SakuraClient, SakuraConfig

    tls_files(tmp_path)
    with run_in_thread(
        emu, ssl_certfile=str(tmp_path / "tls.crt"), ssl_keyfile=str(tmp_path / "tls.key")
    ) as url:
        config = SakuraConfig(TOKEN, SECRET, base_url=url)
        async with SakuraClient(config, max_retries=0) as default:
            with pytest.raises(Unavailable) as refused:
                await default.list_vaults()
        async with SakuraClient(config, verify=str(tmp_path / "ca.crt"), max_retries=0) as c:
            vaults = await c.list_vaults()
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert [v.id for v in vaults] == [VAULT, OTHER_VAULT]
