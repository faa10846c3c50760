"""The blocking reader of the init container (sakura/sync_reader.py), against the emulator.

It drives the async client's own loop (sakura/attempts.py), so these tests check the shell:
each step performed (a slot, the key, the request read within the deadline, the waits) and
the reads' answers, the same as the async client's.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.clock import HandClock
from support.sakura_kit import API_JSON, DB_PASSWORD_V1, DB_PASSWORD_V2, SECRET, TOKEN, tls_files
from support.values import VAULT

from emulator import Emulator, run_in_thread
from sakura import (
    Backoff,
    BadResponse,
    NotFound,
    RateLimiter,
    SakuraConfig,
    Throttled,
    Unauthorized,
    Unavailable,
)
from sakura.attempts import HEADERS
from sakura.config import PrincipalSettings
from sakura.sync_reader import SyncReader

API = "/cloud/zone/tk1a/api/cloud/1.1"


def _reader(url: str, **kwargs: Any) -> SyncReader:
    clock = kwargs.pop("clock", None)
    if clock is not None:
        kwargs.update(clock=clock, sleep=clock.blocking_sleep)
    kwargs.setdefault(
        "limiter",
        RateLimiter(per_minute=60_000, burst=100, **({"clock": clock} if clock else {})),
    )
    kwargs.setdefault("backoff", Backoff(base=0.02, cap=0.2))
    kwargs.setdefault("deadline", 5.0)
    kwargs.setdefault("timeout", 2.0)
    secret = kwargs.pop("secret", SECRET)
    return SyncReader(SakuraConfig(TOKEN, secret, base_url=url + API), **kwargs)


def test_unveil_latest_pinned_and_a_listing(url: str) -> None:
    with _reader(url) as reader:
        latest = reader.unveil(VAULT, "db-password")
        pinned = reader.unveil(VAULT, "db-password", 1)
        listing = reader.list_secrets(VAULT)
        api = reader.unveil(VAULT, "api")
    assert (latest.name, latest.version, latest.value) == ("db-password", 2, DB_PASSWORD_V2)
    assert (pinned.version, pinned.value) == (1, DB_PASSWORD_V1)
    assert json.loads(api.value) == API_JSON
    assert {(s.name, s.latest_version) for s in listing} == {("db-password", 2), ("api", 1)}


def test_a_missing_version_is_told_from_a_missing_secret(url: str, emu: Emulator) -> None:
    with _reader(url) as reader:
        with pytest.raises(NotFound) as version:
            reader.unveil(VAULT, "db-password", 7)
        with pytest.raises(NotFound) as secret:
            reader.unveil(VAULT, "nope")
    assert (version.value.kind, version.value.name) == ("version", "db-password@7")
    assert "no version 7" in str(version.value) and "latest is 2" in str(version.value)
    assert (secret.value.kind, secret.value.name) == ("secret", "nope")
    assert "'nope' not found in vault 110000000001" in str(secret.value)
    assert emu.knobs.calls["list_secrets"] == 1  # only the pinned read asks the listing


def test_a_429_waits_its_retry_after_on_the_readers_clock(url: str, emu: Emulator) -> None:
    clock = HandClock()
    emu.knobs.clock = clock
    emu.knobs.set_rate_limit(1, window=1.0)
    with _reader(url, clock=clock) as reader:
        reader.unveil(VAULT, "db-password")
        got = reader.unveil(VAULT, "db-password", 1)
    assert got.value == DB_PASSWORD_V1
    assert emu.knobs.statuses[429] == 1 and emu.knobs.calls["unveil"] == 3
    assert clock.waits == [pytest.approx(1.0)]  # Retry-After: 1, not the 20 ms backoff


def test_5xx_faults_are_retried_with_backoff_then_answered(url: str, emu: Emulator) -> None:
    clock = HandClock()
    emu.knobs.fail_next(503, 2)
    with _reader(url, clock=clock) as reader:
        assert reader.unveil(VAULT, "db-password").value == DB_PASSWORD_V2
    assert emu.knobs.calls["unveil"] == 3
    assert len(clock.waits) == 2 and all(0 < w <= 0.2 for w in clock.waits)


def test_no_slot_within_the_deadline_is_throttled_without_a_request(
    url: str, emu: Emulator
) -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=6, burst=1, clock=clock)
    with _reader(url, clock=clock, limiter=limiter, deadline=5.0) as reader:
        reader.unveil(VAULT, "api")
        with pytest.raises(Throttled) as err:
            reader.unveil(VAULT, "db-password")
    assert "leaves no slot within the 5s deadline; the next is in 10s" in str(err.value)
    assert emu.knobs.calls["unveil"] == 1 and clock.waits == []


def test_a_slot_a_little_later_is_waited_for(url: str, emu: Emulator) -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock)
    with _reader(url, clock=clock, limiter=limiter) as reader:
        reader.unveil(VAULT, "api")
        reader.unveil(VAULT, "db-password")
    assert clock.waits == [pytest.approx(1.0)] and emu.knobs.calls["unveil"] == 2


def test_rejected_credentials_are_not_retried_and_never_echoed(url: str, emu: Emulator) -> None:
    with _reader(url, secret="wrong-secret-value") as reader:
        with pytest.raises(Unauthorized) as err:
            reader.unveil(VAULT, "db-password")
    assert err.value.status == 401
    assert str(err.value).startswith(
        f"reading secret 'db-password' from vault {VAULT}: Sakura refused the credentials"
    )
    assert "SAKURA_ACCESS_TOKEN" in str(err.value)
    assert "wrong-secret-value" not in str(err.value) and TOKEN not in str(err.value)
    assert emu.knobs.calls["unveil"] == 1


def test_an_unreachable_endpoint_is_unavailable_within_the_deadline() -> None:
    clock = HandClock()
    with _reader("http://127.0.0.1:9", clock=clock, deadline=1.0) as reader:
        with pytest.raises(Unavailable) as err:
            reader.unveil(VAULT, "db-password")
    assert "cannot reach http://127.0.0.1:9" in str(err.value)
    assert "ConnectError" in str(err.value)


def test_an_answer_still_arriving_after_the_deadline_is_abandoned() -> None:
    """httpx's timeout is per read: the deadline is checked between the body's chunks."""
    clock = HandClock()
    body = json.dumps({"Secret": {"Name": "db-password", "Version": 2, "Value": "v"}}).encode()
    sent = []

    def trickle(request: httpx.Request) -> httpx.Response:
        def chunks() -> Iterator[bytes]:
            yield body[:10]
            clock.now += 3.0
            yield body[10:]

        sent.append(request)
        return httpx.Response(200, content=chunks())

    reader = _reader(
        "http://sakura.invalid",
        clock=clock,
        deadline=2.5,
        max_retries=0,
        transport=httpx.MockTransport(trickle),
    )
    with reader, pytest.raises(Unavailable) as err:
        reader.unveil(VAULT, "db-password")
    assert str(err.value).endswith("Sakura did not answer within 2s") and len(sent) == 1


def test_threads_share_one_reader(url: str, emu: Emulator) -> None:
    got: list[str] = []
    with _reader(url) as reader:
        threads = [
            threading.Thread(target=lambda: got.append(reader.unveil(VAULT, "api").value))
            for _ in range(10)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert len(got) == 10 and all(json.loads(v) == API_JSON for v in got)
    assert emu.knobs.calls["unveil"] == 10


def test_a_service_principal_is_refused_naming_the_async_client() -> None:
    principal = PrincipalSettings("sp", "kid", "key", "", "http://token.invalid")
    with pytest.raises(ValueError) as err:
        SyncReader(
            SakuraConfig("", "", base_url="http://x.invalid", principal=principal),
            limiter=RateLimiter(),
        )
    assert str(err.value) == "SyncReader takes an API key; use SakuraClient for a principal"


def test_the_defaults_are_the_async_clients() -> None:
    config = SakuraConfig(TOKEN, SECRET, base_url="http://sakura.invalid")
    with SyncReader(config, limiter=RateLimiter()) as reader:
        assert (reader.deadline, reader.timeout, reader.max_retries) == (30.0, 10.0, 6)
    assert repr(reader) == "SyncReader(base_url='http://sakura.invalid')"


def test_tls_is_verified_by_default_and_a_ca_bundle_file_is_trusted(
    emu: Emulator, tmp_path: Path
) -> None:
    tls_files(tmp_path)
    served = run_in_thread(
        emu, ssl_certfile=str(tmp_path / "tls.crt"), ssl_keyfile=str(tmp_path / "tls.key")
    )
    with served as url:
        config = SakuraConfig(TOKEN, SECRET, base_url=url + API)
        with SyncReader(config, limiter=RateLimiter(), max_retries=0) as default:
            with pytest.raises(Unavailable) as refused:
                default.list_secrets(VAULT)
        trusted = SyncReader(
            config, limiter=RateLimiter(), verify=str(tmp_path / "ca.crt"), max_retries=0
        )
        with trusted:
            listing = trusted.list_secrets(VAULT)
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert {s.name for s in listing} == {"db-password", "api"}


def _streamed(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """An answer streamed as a server's is (a whole-bytes body would count as already read)."""
    return httpx.Response(status, content=iter([json.dumps(body).encode()]), headers=headers)


def _scripted(answer: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> SyncReader:
    return _reader(
        "http://sakura.invalid", max_retries=0, transport=httpx.MockTransport(answer), **kwargs
    )


def test_each_request_carries_the_sdks_headers_and_the_key() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _streamed(200, {"Secret": {"Name": "db-password", "Version": 3, "Value": "v"}})

    with _scripted(answer, timeout=2.0, deadline=5.0) as reader:
        got = reader.unveil(VAULT, "db-password")
    assert (got.name, got.version, got.value) == ("db-password", 3, "v")
    (request,) = seen
    assert set(request.extensions["timeout"].values()) == {2.0}
    assert request.url == f"http://sakura.invalid{API}/secretmanager/vaults/{VAULT}/secrets/unveil"
    assert json.loads(request.content) == {"Secret": {"Name": "db-password"}}
    assert {k: request.headers[k] for k in HEADERS} == HEADERS
    assert request.headers["Authorization"] == httpx.BasicAuth(TOKEN, SECRET)._auth_header


def test_a_redirect_is_not_followed() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/unveil"):
            return _streamed(302, {}, headers={"Location": "/elsewhere"})
        return _streamed(200, {"Secret": {"Name": "x", "Version": 1, "Value": "v"}})

    with _scripted(answer) as reader, pytest.raises(BadResponse):
        reader.unveil(VAULT, "db-password")
    assert len(seen) == 1


def test_a_missing_version_whose_listing_fails_says_the_secret_may_not_exist() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return _streamed(404, {"is_fatal": True, "message": "secret not found"})
        return _streamed(503, {"message": "down"})

    with _scripted(answer) as reader, pytest.raises(NotFound) as err:
        reader.unveil(VAULT, "db-password", 7)
    assert (err.value.kind, err.value.name) == ("version", "db-password@7")
    assert str(err.value).startswith(
        f"secret 'db-password' version 7 not found in vault {VAULT} (or the secret does not exist)"
    )


def test_a_silent_sakura_is_bounded_by_the_deadline() -> None:
    """A peer that accepts and never answers: each read's timeout is the deadline's rest."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with _reader(f"http://127.0.0.1:{port}", deadline=0.5, max_retries=0) as reader:
            with pytest.raises(Unavailable) as err:
                reader.unveil(VAULT, "db-password")
    # the read's timeout is what is left of the deadline when it is sent: 0.5 s or a hair less
    said = re.fullmatch(
        rf"reading secret 'db-password' from vault {VAULT}: Sakura did not answer within "
        r"(0\.\d+)s",
        str(err.value),
    )
    assert said is not None, str(err.value)
    assert 0.4 < float(said[1]) <= 0.5
