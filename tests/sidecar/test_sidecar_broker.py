"""Broker mode: the init fetcher against a broker double speaking the wire protocol over TLS.

These pin the fetcher's own behaviour (one request, error mapping, retries, deadline); the real
broker with TokenReview and SubjectAccessReview is tested with the cluster by its owner.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from support.clock import HandClock
from support.sidecar_harness import (
    API_V1,
    API_V2,
    BROKER_TOKEN,
    DB,
    PLAIN,
    BrokerDouble,
    Tls,
    closed_port,
    make_plan,
    run_main,
    secret_file,
    snapshot,
    template_file,
)
from support.sidecar_harness import assert_no_value as assert_no_secret_value

from contract import Plan
from emulator import run_in_thread
from injector.operations.certs import generate_ca
from sidecar import broker_client, config
from sidecar.errors import (
    EXIT_BAD_VALUE,
    EXIT_CONFIG,
    EXIT_DENIED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    StillThrottled,
    Unreachable,
)


def _env(broker_env: dict[str, str], plan: Plan, **extra: str) -> dict[str, str]:
    return {**broker_env, "SAKURA_SECRETS_PLAN": plan.to_json(), **extra}


def _three(directory: Path, middle: str) -> Plan:
    return make_plan(
        directory,
        secret_file("a", "plain"),
        secret_file("b", middle),
        secret_file("c", "db#user"),
        mode="broker",
    )


def test_one_request_carries_the_token_and_every_secret(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    plan = make_plan(
        secrets_dir,
        secret_file("db-user", "db#user"),
        secret_file("api", "api"),
        secret_file("api-old", "api@1", 0o440),
        template_file("conf", 'pass={{ secret("db#pass") }} plain={{ secret("plain") }}\n'),
        mode="broker",
        uid=1234,
        gid=2345,
    )

    outcome = run_main(_env(broker_env, plan), capsys, termination_log)

    assert outcome.code == 0, outcome.stderr
    assert len(broker.requests) == 1
    request = broker.requests[0]
    assert request["authorization"] == f"Bearer {BROKER_TOKEN}"
    assert json.loads(request["body"]) == {
        "vault_id": plan.vault_id,
        "secrets": [
            {"name": "api", "version": None},
            {"name": "api", "version": 1},
            {"name": "db", "version": None},
            {"name": "plain", "version": None},
        ],
    }
    files = snapshot(secrets_dir)
    assert files["db-user"] == (DB["user"].encode(), 0o400)
    assert files["api"] == (API_V2.encode(), 0o400)
    assert files["api-old"] == (API_V1.encode(), 0o440)
    assert files["conf"] == (f"pass={DB['pass']} plain={PLAIN}\n".encode(), 0o400)
    # The tests run as root, so the plan's owner is applied (the webhook runs the init
    # container as that user instead, which makes the files its own).
    for name in ("db-user", "api", "api-old", "conf", ".sakura-secrets.json"):
        info = (secrets_dir / name).stat()
        assert (info.st_uid, info.st_gid) == (1234, 2345), name
    record = json.loads(files[".sakura-secrets.json"][0])
    assert record["mode"] == "broker"
    assert [(s["name"], s["requested_version"], s["version"]) for s in record["secrets"]] == [
        ("api", None, 2),
        ("api", 1, 1),
        ("db", None, 1),
        ("plain", None, 1),
    ]
    assert_no_secret_value(outcome.stderr, caplog.text, files[".sakura-secrets.json"][0].decode())
    assert BROKER_TOKEN not in outcome.stderr + caplog.text


@pytest.mark.parametrize(
    ("middle", "code", "expected"),
    [
        (
            "ungranted",
            EXIT_DENIED,
            'forbidden: serviceaccount shop/api may not get sakura-secrets.io secrets "ungranted"; '
            "grant it with a Role/RoleBinding",
        ),
        ("missing", EXIT_NOT_FOUND, 'not found: secret "missing" not found in vault'),
        ("api@9", EXIT_NOT_FOUND, 'not found: secret "api" has no version 9'),
        ("notjson#k", EXIT_BAD_VALUE, "bad key: secret 'notjson#k': key 'k' was asked for"),
    ],
)
def test_a_refusal_is_final_names_the_secret_and_writes_nothing(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    middle: str,
    code: int,
    expected: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    (secrets_dir / "c").write_text("from an earlier run")
    before = snapshot(secrets_dir)

    outcome = run_main(_env(broker_env, _three(secrets_dir, middle)), capsys, termination_log)

    assert outcome.code == code
    assert len(broker.requests) == 1, "refusals are never retried"
    assert len(outcome.lines) == 1
    assert outcome.lines[0].startswith("sakura-secrets-init: " + expected), outcome.lines[0]
    assert outcome.lines[0] in outcome.stderr
    assert snapshot(secrets_dir) == before
    assert_no_secret_value(outcome.termination, outcome.stderr, caplog.text)
    assert "ungranted-Value-Hidden" not in outcome.termination + outcome.stderr + caplog.text


def test_a_rejected_token_is_unauthenticated(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    token_file: Path,
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token_file.write_text("a-token-for-another-audience")
    outcome = run_main(_env(broker_env, _three(secrets_dir, "api")), capsys, termination_log)
    assert outcome.code == EXIT_DENIED
    assert len(broker.requests) == 1
    assert outcome.termination.startswith(
        "sakura-secrets-init: unauthenticated: the token is not valid for audience "
        "sakura-secrets-injector;"
    )
    assert "api, db, plain" in outcome.termination
    assert "a-token-for-another-audience" not in outcome.termination + outcome.stderr
    assert list(secrets_dir.iterdir()) == []


def test_a_bad_request_is_reported_without_retry(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker.script.append((400, {"error": "secrets[0].version must be a whole number"}, {}))
    outcome = run_main(_env(broker_env, _three(secrets_dir, "api")), capsys, termination_log)
    assert outcome.code == EXIT_CONFIG
    assert len(broker.requests) == 1
    assert "rejected: secrets[0].version must be a whole number" in outcome.termination


def test_503_is_retried_after_retry_after_then_succeeds(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker.script.append(
        (503, {"error": 'Sakura is throttling; reading "plain" again'}, {"Retry-After": "1"})
    )
    started = time.monotonic()
    outcome = run_main(_env(broker_env, _three(secrets_dir, "api")), capsys, termination_log)
    elapsed = time.monotonic() - started
    assert outcome.code == 0, outcome.termination
    assert len(broker.requests) == 2
    assert elapsed >= 1.0, "Retry-After was not honoured"
    assert (secrets_dir / "a").read_text() == PLAIN


def test_503_past_the_deadline_fails_clearly_and_fast(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for _ in range(10):
        broker.script.append(
            (503, {"error": 'Sakura unavailable reading secret "plain"'}, {"Retry-After": "2"})
        )
    env = _env(broker_env, _three(secrets_dir, "api"), SAKURA_SECRETS_DEADLINE="3")
    outcome = run_main(env, capsys, termination_log)
    assert outcome.code == EXIT_UNAVAILABLE
    # One wait of 2 s and two requests; a third would not fit in 3 s, so it gives up without
    # sleeping into the deadline (the waits themselves: test_*_on_a_hand_clock below).
    assert len(broker.requests) == 2, "one retry fits in 3 s, the second would not"
    assert len(outcome.lines) == 1
    assert outcome.termination.startswith(
        'sakura-secrets-init: throttled: Sakura unavailable reading secret "plain" (HTTP 503); '
        "still failing after 3s (SAKURA_SECRETS_DEADLINE)"
    )
    assert list(secrets_dir.iterdir()) == []


def test_an_unreachable_broker_is_retried_until_the_deadline(
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"https://127.0.0.1:{closed_port()}"
    env = _env(
        broker_env,
        _three(secrets_dir, "api"),
        SAKURA_SECRETS_BROKER_URL=url,
        SAKURA_SECRETS_DEADLINE="1.6",
    )
    started = time.monotonic()
    outcome = run_main(env, capsys, termination_log)
    elapsed = time.monotonic() - started
    assert outcome.code == EXIT_UNAVAILABLE
    assert elapsed >= 0.5, "retried with backoff, then gave up at the deadline"
    assert outcome.termination.startswith(
        f"sakura-secrets-init: unreachable: broker {url} unreachable for 1.6s"
    )
    assert "ConnectError" in outcome.termination
    assert "api, db, plain" in outcome.termination
    assert list(secrets_dir.iterdir()) == []


def test_a_broker_certificate_from_another_ca_is_refused_at_once(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other_ca = generate_ca("someone-else").cert_pem.decode()
    env = _env(broker_env, _three(secrets_dir, "api"), SAKURA_SECRETS_BROKER_CA=other_ca)
    outcome = run_main(env, capsys, termination_log)
    assert outcome.code == EXIT_UNAVAILABLE
    assert broker.requests == [], "the token is never sent to an untrusted server"
    assert "certificate not signed by SAKURA_SECRETS_BROKER_CA" in outcome.termination


def test_a_missing_token_file_is_named(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    tmp_path: Path,
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "no-such-token"
    env = _env(broker_env, _three(secrets_dir, "api"), SAKURA_SECRETS_TOKEN_FILE=str(missing))
    outcome = run_main(env, capsys, termination_log)
    assert outcome.code == EXIT_CONFIG
    assert outcome.termination.startswith(
        f"sakura-secrets-init: missing token: token file '{missing}' does not exist"
    )
    assert broker.requests == []
    assert list(secrets_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"secrets": []}, "without one entry per requested secret"),
        (
            {
                "secrets": [
                    {"name": "plain", "requested_version": None, "version": 1, "value": PLAIN},
                    {"name": "OTHER", "requested_version": None, "version": 1, "value": "x"},
                    {"name": "db", "requested_version": None, "version": 1, "value": "{}"},
                ]
            },
            "secret 'api' names another secret",
        ),
        (
            {
                "secrets": [
                    {"name": "api", "requested_version": 1, "version": 2, "value": API_V2},
                    {"name": "db", "requested_version": None, "version": 1, "value": "{}"},
                    {"name": "plain", "requested_version": None, "version": 1, "value": PLAIN},
                ]
            },
            "secret 'api@1' carries version 2, not the pinned one",
        ),
    ],
)
def test_a_malformed_answer_writes_nothing(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
    answer: dict[str, object],
    problem: str,
) -> None:
    broker.script.append((200, answer, {}))
    pinned = "api@1" if "pinned" in problem else "api"
    outcome = run_main(_env(broker_env, _three(secrets_dir, pinned)), capsys, termination_log)
    assert outcome.code == EXIT_UNAVAILABLE
    assert problem in outcome.termination
    assert_no_secret_value(outcome.termination, outcome.stderr)
    assert list(secrets_dir.iterdir()) == []


def test_a_plain_http_broker_url_is_refused(
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
    tls: Tls,
) -> None:
    env = _env(
        broker_env,
        _three(secrets_dir, "api"),
        SAKURA_SECRETS_BROKER_URL="http://sakura-secrets-injector.system.svc:8443",
    )
    outcome = run_main(env, capsys, termination_log)
    assert outcome.code == EXIT_CONFIG
    assert "must start with https://" in outcome.termination


def test_a_broker_answer_that_trickles_in_is_bounded_by_the_deadline(
    tls: Tls,
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """httpx's timeout bounds each read; a byte every 0.2 s would hold the pod in Init."""

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"secrets": ['
        for _ in range(100):  # 20 s in all: far past the deadline
            await asyncio.sleep(0.2)
            yield b" "

    async def secrets(request: Request) -> Response:
        return StreamingResponse(trickle(), media_type="application/json")

    app = Starlette(routes=[Route("/v1/secrets", secrets, methods=["POST"])])
    with run_in_thread(app, ssl_certfile=tls.certfile, ssl_keyfile=tls.keyfile) as url:
        env = _env(
            broker_env,
            _three(secrets_dir, "api"),
            SAKURA_SECRETS_BROKER_URL=url,
            SAKURA_SECRETS_DEADLINE="1",
        )
        started = time.monotonic()
        outcome = run_main(env, capsys, termination_log)
        elapsed = time.monotonic() - started
    assert outcome.code == EXIT_UNAVAILABLE
    assert elapsed < 8, "the 1 s deadline plus one read timeout and slack for a busy machine"
    assert "did not finish within 1s (SAKURA_SECRETS_DEADLINE)" in outcome.termination
    assert list(secrets_dir.iterdir()) == []


# --- the same waits on a hand-driven clock: a busy machine cannot change what they assert ---


def _fetch_on(clock: HandClock, env: dict[str, str], deadline: float) -> object:
    settings = config.load(env)
    assert isinstance(settings.source, config.BrokerSettings)
    return broker_client.fetch(
        settings.plan, settings.source, deadline=deadline, clock=clock, sleep=clock.blocking_sleep
    )


def test_retry_after_is_the_wait_on_a_hand_clock(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    broker.script.append((503, {"error": "busy"}, {"Retry-After": "1"}))
    clock = HandClock()
    _fetch_on(clock, _env(broker_env, _three(secrets_dir, "api")), deadline=5)
    assert clock.waits == [1.0]
    assert len(broker.requests) == 2


def test_it_gives_up_before_a_wait_that_would_pass_the_deadline_on_a_hand_clock(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    for _ in range(10):
        broker.script.append((503, {"error": "unavailable"}, {"Retry-After": "2"}))
    clock = HandClock()
    with pytest.raises(StillThrottled, match=r"still failing after 3s \(SAKURA_SECRETS_DEADLINE\)"):
        _fetch_on(clock, _env(broker_env, _three(secrets_dir, "api")), deadline=3)
    assert clock.waits == [2.0], "2 s fits in 3 s; a second 2 s wait would not"
    assert len(broker.requests) == 2
    clock = HandClock()
    broker.requests.clear()
    with pytest.raises(StillThrottled):
        _fetch_on(clock, _env(broker_env, _three(secrets_dir, "api")), deadline=4)
    assert clock.waits == [2.0, 2.0], "a wait ending exactly at the deadline is still taken"
    assert len(broker.requests) == 3


def test_an_unreachable_broker_backs_off_until_the_deadline_on_a_hand_clock(
    broker_env: dict[str, str], secrets_dir: Path
) -> None:
    url = f"https://127.0.0.1:{closed_port()}"
    env = _env(broker_env, _three(secrets_dir, "api"), SAKURA_SECRETS_BROKER_URL=url)
    clock = HandClock()
    with pytest.raises(Unreachable, match=f"broker {url} unreachable for 1.6s"):
        _fetch_on(clock, env, deadline=1.6)
    assert clock.waits == [0.5, 1.0], "doubling from 0.5 s; 2 s more would pass 1.6 s"


def test_a_certificate_from_another_ca_is_not_retried_on_a_hand_clock(
    broker: BrokerDouble, broker_env: dict[str, str], secrets_dir: Path
) -> None:
    other_ca = generate_ca("someone-else").cert_pem.decode()
    env = _env(broker_env, _three(secrets_dir, "api"), SAKURA_SECRETS_BROKER_CA=other_ca)
    clock = HandClock()
    with pytest.raises(Unreachable, match="certificate not signed by SAKURA_SECRETS_BROKER_CA"):
        _fetch_on(clock, env, deadline=5)
    assert clock.waits == [], "refused at once, not retried until the deadline"
    assert broker.requests == []
