"""The init container's broker client on a mock transport and a hand clock.

The real-server tests (test_sidecar_broker.py: a broker double over TLS) stay beside these.
Here are the answers a real broker cannot easily be made to give: crafted statuses, bodies and
headers, transport errors, an answer still arriving when the deadline passes.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.clock import HandClock
from support.sidecar_harness import API_V1, BROKER_TOKEN, DB, PLAIN, VAULT
from support.sidecar_harness import assert_no_value as assert_no_secret_value

from contract import FileSpec, Plan, SecretRef, SecretVersion
from contract.broker import FetchedSecret, SecretRequest, Unchanged
from sidecar import broker_client
from sidecar.config import BrokerSettings
from sidecar.errors import (
    EXIT_CONFIG,
    EXIT_CREDENTIALS,
    EXIT_DENIED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    BadAnswer,
    CredentialsRejected,
    FetchError,
    Forbidden,
    MissingToken,
    RequestRefused,
    SecretNotFound,
    StillThrottled,
    Unauthenticated,
    Unreachable,
)

URL = "https://127.0.0.1:9"
"""Never dialled: every request goes to the mock transport."""
NAMES = "api@1, db, plain"
"""How the messages name the plan's secrets (sorted, the pinned one with its version)."""
START = 1000.0

Answer = tuple[int, Any, dict[str, str]] | Exception | Callable[[httpx.Request], httpx.Response]


class ScriptedBroker:
    """Answers from a script (the last answer repeats) and records every request."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return _response(*answer)

    def timeouts(self) -> list[float]:
        """The timeout each request was sent with (connect, read, write and pool alike)."""
        seen = []
        for request in self.requests:
            timeout = request.extensions["timeout"]
            assert len(set(timeout.values())) == 1, timeout
            seen.append(timeout["read"])
        return seen


def _response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """An answer streamed as a server's is (a whole-bytes body would count as already read)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=iter([content]), headers=headers)


def _plan(directory: Path, *refs: str) -> Plan:
    files = tuple(
        FileSpec(f"f{i}", 0o400, secret=SecretRef.parse(ref))
        for i, ref in enumerate(refs or ("plain", "api@1", "db#user"))
    )
    return Plan(files=files, directory=str(directory), vault_id=VAULT, uid=1, gid=1)


def _entry(name: str, requested: int | None, version: int, value: str) -> dict[str, Any]:
    return {"name": name, "requested_version": requested, "version": version, "value": value}


def _answer() -> dict[str, Any]:
    """The broker's answer to the default plan, in the order it was asked."""
    return {
        "secrets": [
            _entry("api", 1, 1, API_V1),
            _entry("db", None, 3, json.dumps(DB)),
            _entry("plain", None, 1, PLAIN),
        ]
    }


OK: Answer = (200, _answer(), {})

EXPECTED = {
    SecretVersion("api", 1): FetchedSecret("api", 1, 1, API_V1),
    SecretVersion("db"): FetchedSecret("db", None, 3, json.dumps(DB)),
    SecretVersion("plain"): FetchedSecret("plain", None, 1, PLAIN),
}


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(BROKER_TOKEN + "\n")
    return path


@pytest.fixture
def settings(token_file: Path) -> BrokerSettings:
    return BrokerSettings(
        url=URL, ssl_context=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), token_file=token_file
    )


@pytest.fixture
def clock() -> HandClock:
    return HandClock(START)


MAX_WAITS = 100
"""More waits than any deadline here allows: a retry loop that would never end."""


def _fetch(
    broker: ScriptedBroker,
    settings: BrokerSettings,
    clock: HandClock,
    *,
    deadline: float = 60.0,
    plan: Plan | None = None,
) -> dict[SecretVersion, FetchedSecret]:
    def sleep(seconds: float) -> None:
        assert len(clock.waits) < MAX_WAITS, f"{MAX_WAITS} waits: the deadline does not end it"
        clock.blocking_sleep(seconds)

    return broker_client.fetch(
        plan or _plan(Path(settings.token_file).parent),
        settings,
        deadline=deadline,
        transport=httpx.MockTransport(broker.handle),
        clock=clock,
        sleep=sleep,
    )


def _failure(
    kind: type[FetchError],
    broker: ScriptedBroker,
    settings: BrokerSettings,
    clock: HandClock,
    *,
    deadline: float = 60.0,
    plan: Plan | None = None,
) -> FetchError:
    """The error `fetch` raises; it never carries the token or a value."""
    with pytest.raises(FetchError) as caught:
        _fetch(broker, settings, clock, deadline=deadline, plan=plan)
    error = caught.value
    assert type(error) is kind, repr(error)
    assert BROKER_TOKEN not in str(error)
    assert_no_secret_value(str(error))
    return error


# --- the request --------------------------------------------------------------------------


def test_one_post_carries_the_token_and_every_secret_and_returns_what_was_read(
    settings: BrokerSettings, clock: HandClock
) -> None:
    body = json.dumps(_answer()).encode()

    def in_chunks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([body[:10], body[10:50], body[50:]]))

    broker = ScriptedBroker(in_chunks)
    assert _fetch(broker, settings, clock) == EXPECTED
    assert len(broker.requests) == 1
    request = broker.requests[0]
    assert request.method == "POST"
    assert str(request.url) == URL + "/v1/secrets"
    assert request.headers["Authorization"] == f"Bearer {BROKER_TOKEN}"
    assert json.loads(request.content) == {
        "vault_id": VAULT,
        "secrets": [
            {"name": "api", "version": 1},
            {"name": "db", "version": None},
            {"name": "plain", "version": None},
        ],
    }
    assert broker.timeouts() == [15.0], "one request's own bound, below the 60 s deadline"
    assert clock.waits == []


def test_the_request_says_it_is_json(settings: BrokerSettings, clock: HandClock) -> None:
    broker = ScriptedBroker((200, _answer(), {}))
    _fetch(broker, settings, clock)
    assert broker.requests[0].headers["content-type"] == "application/json"


def test_a_request_is_bounded_by_the_time_left_and_never_less_than_a_tenth(
    settings: BrokerSettings, clock: HandClock
) -> None:
    def slow_503(request: httpx.Request) -> httpx.Response:
        clock.now += 0.45
        return _response(503, {"error": "busy"})

    broker = ScriptedBroker(slow_503)
    # 1 s left for the first; 0.45 + 0.5 s later 0.05 s is left: the second gets 0.1 s, and
    # its answer, arriving past the deadline, is abandoned.
    error = _failure(Unreachable, broker, settings, clock, deadline=1)
    assert "did not finish within 1s" in str(error)
    assert broker.timeouts() == [1.0, 0.1]
    assert clock.waits == [0.5]


# --- retried statuses, Retry-After and the deadline --------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_throttled_and_gateway_statuses_are_retried(
    settings: BrokerSettings, clock: HandClock, status: int
) -> None:
    broker = ScriptedBroker((status, {"error": "busy"}, {}), OK)
    assert _fetch(broker, settings, clock) == EXPECTED
    assert len(broker.requests) == 2
    assert clock.waits == [0.5]


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("3", 3.0),
        (" 2.5 ", 2.5),
        ("0", 0.5),  # not a busy loop: the backoff's first step
        ("soon", 0.5),  # not a number nor a date: the backoff
        ("Tue, 01 Jan 2019 00:00:00 GMT", 0.5),  # a date already past
    ],
)
def test_retry_after_seconds_is_the_wait(
    settings: BrokerSettings, clock: HandClock, header: str, wait: float
) -> None:
    broker = ScriptedBroker((503, {"error": "busy"}, {"Retry-After": header}), OK)
    assert _fetch(broker, settings, clock) == EXPECTED
    assert clock.waits == [wait]


def test_a_retry_after_date_is_the_wait_until_then(
    settings: BrokerSettings, clock: HandClock
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    broker = ScriptedBroker((429, {"error": "busy"}, {"Retry-After": when}), OK)
    assert _fetch(broker, settings, clock, deadline=7200) == EXPECTED
    [wait] = clock.waits
    assert 3000 < wait <= 3600, "about an hour (the date has whole seconds)"


def test_a_retry_after_past_the_deadline_gives_up_at_once(
    settings: BrokerSettings, clock: HandClock
) -> None:
    broker = ScriptedBroker(
        (503, {"error": "Sakura is down"}, {"Retry-After": "Fri, 01 Jan 2999 00:00:00 GMT"})
    )
    error = _failure(StillThrottled, broker, settings, clock)
    assert str(error) == (
        "Sakura is down (HTTP 503); still failing after 60s (SAKURA_SECRETS_DEADLINE) fetching "
        f"{NAMES}; it is tried again later, raise the deadline or check Sakura's "
        "status and quota"
    )
    assert error.exit_code == EXIT_UNAVAILABLE
    assert clock.waits == [], "no sleeping into a deadline the wait would pass"
    assert len(broker.requests) == 1


def test_waits_that_end_exactly_at_the_deadline_are_taken(
    settings: BrokerSettings, clock: HandClock
) -> None:
    broker = ScriptedBroker((503, {"error": "busy"}, {"Retry-After": "2"}))
    _failure(StillThrottled, broker, settings, clock, deadline=4)
    assert clock.waits == [2.0, 2.0]
    assert len(broker.requests) == 3


def test_the_time_a_request_takes_counts_against_the_deadline(
    settings: BrokerSettings, clock: HandClock
) -> None:
    def slow_503(request: httpx.Request) -> httpx.Response:
        clock.now += 1
        return _response(503, {"error": "busy"}, {"Retry-After": "1"})

    broker = ScriptedBroker(slow_503)
    _failure(StillThrottled, broker, settings, clock, deadline=5)
    # 1 s asking, 1 s waiting, twice; the third answer comes at 5 s, and a wait would pass it.
    assert clock.waits == [1.0, 1.0]
    assert len(broker.requests) == 3


def test_503_without_retry_after_backs_off_doubling_to_five_seconds(
    settings: BrokerSettings, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.broker_client")
    broker = ScriptedBroker((503, {"error": "Sakura is throttling"}, {}))
    error = _failure(StillThrottled, broker, settings, clock, deadline=20)
    assert clock.waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert len(broker.requests) == 7
    assert str(error).startswith(
        "Sakura is throttling (HTTP 503); still failing after 20s (SAKURA_SECRETS_DEADLINE)"
    )
    assert [r.getMessage() for r in caplog.records] == [
        f"broker not ready (attempt {n}), retrying in {wait:.1f}s"
        for n, wait in enumerate(clock.waits, start=1)
    ]
    assert BROKER_TOKEN not in caplog.text


# --- connection failures and the broker's certificate -----------------------------------


def test_an_unreachable_broker_backs_off_until_the_deadline(
    settings: BrokerSettings, clock: HandClock
) -> None:
    broker = ScriptedBroker(httpx.ConnectError("[Errno 111]  Connection\n refused"))
    error = _failure(Unreachable, broker, settings, clock, deadline=20)
    assert str(error) == (
        f"broker {URL} unreachable for 20s (SAKURA_SECRETS_DEADLINE), last error ConnectError: "
        f"[Errno 111] Connection refused; secrets {NAMES} were not fetched; check that the "
        "injector pods are running and its Service answers on this URL"
    )
    assert error.exit_code == EXIT_UNAVAILABLE
    assert clock.waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert len(broker.requests) == 7


@pytest.mark.parametrize(
    ("failure", "named"),
    [
        (httpx.ReadTimeout(""), "last error ReadTimeout;"),
        (httpx.RemoteProtocolError("peer closed"), "last error RemoteProtocolError: peer closed;"),
    ],
)
def test_other_transport_failures_are_retried_and_named(
    settings: BrokerSettings, clock: HandClock, failure: Exception, named: str
) -> None:
    broker = ScriptedBroker(failure, OK)
    assert _fetch(broker, settings, clock) == EXPECTED
    assert clock.waits == [0.5]
    broker = ScriptedBroker(failure)
    assert named in str(_failure(Unreachable, broker, settings, clock, deadline=1))


def _certificate_error() -> ssl.SSLCertVerificationError:
    return ssl.SSLCertVerificationError(1, "certificate verify failed: unable to get issuer")


def _cert_as_cause(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("handshake failed") from _certificate_error()


def _cert_as_context(request: httpx.Request) -> httpx.Response:
    try:
        raise _certificate_error()
    except ssl.SSLError:
        raise httpx.ConnectError("handshake failed") from None


def _cert_two_down(request: httpx.Request) -> httpx.Response:
    try:
        raise OSError("wrapped") from _certificate_error()
    except OSError as exc:
        raise httpx.ConnectError("handshake failed") from exc


@pytest.mark.parametrize("handler", [_cert_as_cause, _cert_as_context, _cert_two_down])
def test_a_certificate_the_ca_did_not_sign_is_refused_at_once(
    settings: BrokerSettings, clock: HandClock, handler: Answer
) -> None:
    broker = ScriptedBroker(handler)
    error = _failure(Unreachable, broker, settings, clock)
    assert str(error) == (
        f"the broker {URL} presented a certificate not signed by SAKURA_SECRETS_BROKER_CA "
        f"(ConnectError: handshake failed); secrets {NAMES} were not fetched; check that the "
        "injector's CA and serving certificate match"
    )
    assert clock.waits == []
    assert len(broker.requests) == 1


def test_another_tls_failure_is_retried(settings: BrokerSettings, clock: HandClock) -> None:
    def tls_failure(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("EOF in violation of protocol") from ssl.SSLEOFError()

    broker = ScriptedBroker(tls_failure, OK)
    assert _fetch(broker, settings, clock) == EXPECTED
    assert clock.waits == [0.5]


class RefusingContext(ssl.SSLContext):
    """Stands for the CA of SAKURA_SECRETS_BROKER_CA: every broker certificate is unknown to it."""

    handshakes = 0

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self.handshakes += 1
        raise _certificate_error()


def test_the_broker_is_checked_with_the_ca_it_was_given(
    settings: BrokerSettings, clock: HandClock
) -> None:
    """Without a transport (as in the pod): the settings' context is the one that checks."""
    context = RefusingContext(ssl.PROTOCOL_TLS_CLIENT)
    with socket.socket() as listening:  # the kernel completes the TCP handshake; no server
        listening.bind(("127.0.0.1", 0))
        listening.listen(4)
        port = listening.getsockname()[1]
        url = f"https://127.0.0.1:{port}"
        pod = BrokerSettings(url=url, ssl_context=context, token_file=settings.token_file)
        with pytest.raises(Unreachable) as caught:
            broker_client.fetch(
                _plan(settings.token_file.parent),
                pod,
                deadline=1,
                clock=clock,
                sleep=clock.blocking_sleep,
            )
    assert f"the broker {url} presented a certificate not signed by" in str(caught.value)
    assert context.handshakes == 1
    assert clock.waits == []


class CircularError(httpx.ConnectError):
    """An error whose cause is itself; reading the cause more than a few times is a loop."""

    reads = 0

    @property
    def __cause__(self) -> BaseException | None:
        self.reads += 1
        if self.reads > 5:
            raise AssertionError("the cause chain was walked in circles")
        return self

    @__cause__.setter
    def __cause__(self, value: BaseException | None) -> None:
        pass


def test_a_circular_cause_chain_is_walked_once(settings: BrokerSettings, clock: HandClock) -> None:
    broker = ScriptedBroker(CircularError("reset"), OK)
    assert _fetch(broker, settings, clock) == EXPECTED
    assert clock.waits == [0.5]


# --- final answers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "code", "message"),
    [
        (
            400,
            RequestRefused,
            EXIT_CONFIG,
            f"the line; the broker refused the request for {NAMES}; the init image and the "
            "injector may be different versions",
        ),
        (
            401,
            Unauthenticated,
            EXIT_DENIED,
            "the line; the broker did not accept the pod's ServiceAccount token (audience "
            f"sakura-secrets-injector), secrets {NAMES} were not fetched",
        ),
        (403, Forbidden, EXIT_DENIED, "the line"),
        (422, RequestRefused, EXIT_CONFIG, f"the line; secrets {NAMES} were not fetched"),
        (404, SecretNotFound, EXIT_NOT_FOUND, "the line"),
        (
            500,
            BadAnswer,
            EXIT_UNAVAILABLE,
            f"broker answered HTTP 500: the line; secrets {NAMES} were not fetched",
        ),
        (
            501,
            BadAnswer,
            EXIT_UNAVAILABLE,
            f"broker answered HTTP 501: the line; secrets {NAMES} were not fetched",
        ),
    ],
)
def test_a_final_status_is_reported_at_once_with_the_brokers_line(
    settings: BrokerSettings,
    clock: HandClock,
    status: int,
    kind: type[FetchError],
    code: int,
    message: str,
) -> None:
    broker = ScriptedBroker((status, {"error": "the line"}, {"Retry-After": "1"}), OK)
    error = _failure(kind, broker, settings, clock)
    assert str(error) == message
    assert error.exit_code == code
    assert len(broker.requests) == 1
    assert clock.waits == []


@pytest.mark.parametrize("status", [503, 403])
def test_credentials_rejected_is_final_whatever_the_status(
    settings: BrokerSettings, clock: HandClock, status: int
) -> None:
    body = {"error": "Sakura refused the injector's API key", "reason": "credentials_rejected"}
    broker = ScriptedBroker((status, body, {"Retry-After": "1"}), OK)
    error = _failure(CredentialsRejected, broker, settings, clock)
    assert str(error) == (
        f"Sakura refused the injector's API key; secrets {NAMES} were not fetched; it is tried "
        "again later, fixing it is for the injector's operator"
    )
    assert error.exit_code == EXIT_CREDENTIALS
    assert len(broker.requests) == 1
    assert clock.waits == []


@pytest.mark.parametrize(
    "body",
    [
        {"error": "busy", "reason": "throttled"},
        {"error": "busy", "reason": ["credentials_rejected"]},
        {"error": "busy", "Reason": "credentials_rejected"},
        b"credentials_rejected",
        ["credentials_rejected"],
    ],
)
def test_another_reason_on_a_503_is_retried(
    settings: BrokerSettings, clock: HandClock, body: Any
) -> None:
    broker = ScriptedBroker((503, body, {}), OK)
    assert _fetch(broker, settings, clock) == EXPECTED
    assert clock.waits == [0.5]


LONG = "x" * 401


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ({"error": "  one line\n\tand  another  "}, "one line and another"),
        ({"error": "y" * 400}, "y" * 400),
        ({"error": LONG}, "x" * 397 + "..."),
        ({"error": "   "}, "HTTP 403 Forbidden from the broker"),
        ({"error": 42}, "HTTP 403 Forbidden from the broker"),
        ({"message": "not ours"}, "HTTP 403 Forbidden from the broker"),
        (["the error"], "HTTP 403 Forbidden from the broker"),
        (b"<html>403 Forbidden by the proxy</html>", "HTTP 403 Forbidden from the broker"),
        (b'{"error": "\xff"}', "HTTP 403 Forbidden from the broker"),
    ],
)
def test_the_brokers_line_is_one_bounded_line_or_the_status(
    settings: BrokerSettings, clock: HandClock, body: Any, line: str
) -> None:
    error = _failure(Forbidden, ScriptedBroker((403, body, {})), settings, clock)
    assert str(error) == line


def _plan_of(directory: Path, count: int, width: int) -> tuple[Plan, str]:
    refs = [f"s{i:0{width}d}" for i in range(count)]
    return _plan(directory, *refs), ", ".join(refs)


@pytest.mark.parametrize(
    ("count", "width", "length"),
    [(40, 3, 238), (7, 26, 201), (2, 98, 200)],
)
def test_the_secrets_named_in_a_message_are_cut_at_200_characters(
    settings: BrokerSettings, clock: HandClock, tmp_path: Path, count: int, width: int, length: int
) -> None:
    plan, names = _plan_of(tmp_path, count, width)
    assert len(names) == length
    shown = names if length <= 200 else names[:197] + "..."
    broker = ScriptedBroker((400, {"error": "no"}, {}))
    error = _failure(RequestRefused, broker, settings, clock, plan=plan)
    assert str(error) == (
        f"no; the broker refused the request for {shown}; the init image and the injector may "
        "be different versions"
    )


# --- the answer's checks ------------------------------------------------------------------


def test_an_answer_without_requested_version_is_matched_by_position(
    settings: BrokerSettings, clock: HandClock
) -> None:
    answer = _answer()
    for item in answer["secrets"]:
        del item["requested_version"]
    assert _fetch(ScriptedBroker((200, answer, {})), settings, clock) == EXPECTED


@pytest.mark.parametrize(
    "body",
    [b"<html>ok</html>", b"", b'{"secrets": ["\xff"]}'],
)
def test_a_200_that_is_not_json_is_a_bad_answer(
    settings: BrokerSettings, clock: HandClock, body: bytes
) -> None:
    error = _failure(BadAnswer, ScriptedBroker((200, body, {})), settings, clock)
    assert str(error) == "the broker answered 200 with a body that is not JSON"
    assert error.exit_code == EXIT_UNAVAILABLE


@pytest.mark.parametrize(
    "body",
    [
        {},
        [],
        {"secrets": {}},
        {"secrets": "api"},
        {"secrets": _answer()["secrets"][:2]},
        {"secrets": [*_answer()["secrets"], _entry("more", None, 1, "x")]},
    ],
)
def test_an_answer_without_one_entry_per_secret_is_a_bad_answer(
    settings: BrokerSettings, clock: HandClock, body: Any
) -> None:
    error = _failure(BadAnswer, ScriptedBroker((200, body, {})), settings, clock)
    assert str(error) == (
        "the broker answered 200 without one entry per requested secret (3 asked); the init "
        "image and the injector may be different versions"
    )


@pytest.mark.parametrize(
    ("first", "problem"),
    [
        ("api", "is not an object"),
        (None, "is not an object"),
        ({**_entry("api", 1, 1, API_V1), "name": "db"}, "names another secret"),
        ({"requested_version": 1, "version": 1, "value": API_V1}, "names another secret"),
        (_entry("api", 2, 1, API_V1), "answers another requested version"),
        (_entry("api", None, 1, API_V1), "answers another requested version"),
        ({**_entry("api", 1, 1, API_V1), "version": "1"}, "has no whole-number version"),
        ({**_entry("api", 1, 1, API_V1), "version": True}, "has no whole-number version"),
        ({**_entry("api", 1, 1, API_V1), "version": 1.0}, "has no whole-number version"),
        ({"name": "api", "requested_version": 1, "value": API_V1}, "has no whole-number version"),
        (_entry("api", 1, 2, API_V1), "carries version 2, not the pinned one"),
        ({"name": "api", "requested_version": 1, "version": 1}, "has no text value"),
        ({**_entry("api", 1, 1, API_V1), "value": 7}, "has no text value"),
        ({**_entry("api", 1, 1, API_V1), "value": None}, "has no text value"),
    ],
)
def test_an_entry_that_is_not_what_was_asked_is_a_bad_answer_naming_the_secret(
    settings: BrokerSettings, clock: HandClock, first: Any, problem: str
) -> None:
    body = {"secrets": [first, *_answer()["secrets"][1:]]}
    error = _failure(BadAnswer, ScriptedBroker((200, body, {})), settings, clock)
    assert str(error) == (
        f"the broker's answer for secret 'api@1' {problem}; the init image and the injector "
        "may be different versions"
    )


def test_entries_in_another_order_are_a_bad_answer(
    settings: BrokerSettings, clock: HandClock
) -> None:
    body = {"secrets": list(reversed(_answer()["secrets"]))}
    error = _failure(BadAnswer, ScriptedBroker((200, body, {})), settings, clock)
    assert "secret 'api@1' names another secret" in str(error)


# --- an answer still arriving at the deadline -------------------------------------------


def _trickle(clock: HandClock, pause: float) -> Callable[[httpx.Request], httpx.Response]:
    body = json.dumps(_answer()).encode()

    def chunks() -> Iterator[bytes]:
        yield body[:20]
        clock.now += pause
        yield body[20:]

    return lambda request: httpx.Response(200, content=chunks())


def test_an_answer_complete_at_the_deadline_is_taken(
    settings: BrokerSettings, clock: HandClock
) -> None:
    broker = ScriptedBroker(_trickle(clock, 5.0))
    assert _fetch(broker, settings, clock, deadline=5) == EXPECTED


def test_an_answer_still_arriving_after_the_deadline_is_abandoned(
    settings: BrokerSettings, clock: HandClock
) -> None:
    broker = ScriptedBroker(_trickle(clock, 5.5), OK)
    error = _failure(Unreachable, broker, settings, clock, deadline=5)
    assert str(error) == (
        f"the broker {URL} began answering but did not finish within 5s "
        f"(SAKURA_SECRETS_DEADLINE); secrets {NAMES} were not fetched; check the injector's "
        "load and the network path to it"
    )
    assert len(broker.requests) == 1
    assert clock.waits == []


# --- the token file -----------------------------------------------------------------------


def test_the_token_file_is_read_and_stripped(settings: BrokerSettings, token_file: Path) -> None:
    token_file.write_text(f"\n  {BROKER_TOKEN} \n")
    assert broker_client.read_token(settings) == BROKER_TOKEN


def _token_failure(settings: BrokerSettings, clock: HandClock) -> str:
    broker = ScriptedBroker(OK)
    error = _failure(MissingToken, broker, settings, clock)
    assert error.exit_code == EXIT_CONFIG
    assert broker.requests == [], "nothing is asked without a token"
    return str(error)


def test_a_missing_token_file_is_named_with_the_fix(
    settings: BrokerSettings, clock: HandClock, token_file: Path
) -> None:
    token_file.unlink()
    assert _token_failure(settings, clock) == (
        f"token file {str(token_file)!r} does not exist; broker mode needs the projected "
        "ServiceAccount token (volume sakura-secrets-token) the injector adds, so re-create the "
        "pod through the webhook, or use direct mode (credentials-secret)"
    )


@pytest.mark.parametrize("content", ["", " \n\t\n"])
def test_an_empty_token_file_is_named(
    settings: BrokerSettings, clock: HandClock, token_file: Path, content: str
) -> None:
    token_file.write_text(content)
    assert _token_failure(settings, clock) == (
        f"token file {str(token_file)!r} is empty; the kubelet did not project it"
    )


def test_an_unreadable_token_file_is_named_with_the_fix(
    settings: BrokerSettings, clock: HandClock, token_file: Path
) -> None:
    token_file.unlink()
    token_file.mkdir()
    assert _token_failure(settings, clock) == (
        f"token file {str(token_file)!r} cannot be read (IsADirectoryError); check the "
        "sakura-secrets-token volume and the container's user"
    )


def test_a_token_file_that_is_not_text_is_named_without_its_bytes(
    settings: BrokerSettings, clock: HandClock, token_file: Path
) -> None:
    token_file.write_bytes(b"tok-\xff\xfe-secretish")
    message = _token_failure(settings, clock)
    assert message == (
        f"token file {str(token_file)!r} cannot be read (UnicodeDecodeError); check the "
        "sakura-secrets-token volume and the container's user"
    )
    assert "secretish" not in message


# --- change-only reads (the refresh container) ----------------------------------------------


def _exchange(
    broker: ScriptedBroker, settings: BrokerSettings, clock: HandClock, held: dict[str, int]
) -> tuple[object, ...]:
    request = SecretRequest(VAULT, tuple(SecretVersion(name) for name in sorted(held)), held)
    return broker_client.exchange(
        request,
        settings,
        deadline=60.0,
        transport=httpx.MockTransport(broker.handle),
        clock=clock,
        sleep=clock.blocking_sleep,
    )


def test_a_refresh_sends_the_versions_held_and_takes_unchanged_items(
    settings: BrokerSettings, clock: HandClock
) -> None:
    answer = {
        "secrets": [
            {"name": "db", "requested_version": None, "version": 3, "unchanged": True},
            _entry("plain", None, 2, PLAIN),
        ]
    }
    broker = ScriptedBroker((200, answer, {}))
    items = _exchange(broker, settings, clock, {"db": 3, "plain": 1})
    assert items == (Unchanged("db", 3), FetchedSecret("plain", None, 2, PLAIN))
    assert json.loads(broker.requests[0].content) == {
        "vault_id": VAULT,
        "secrets": [{"name": "db", "version": None}, {"name": "plain", "version": None}],
        "held": {"db": 3, "plain": 1},
    }


def test_an_unchanged_item_for_a_version_not_held_is_a_bad_answer(
    settings: BrokerSettings, clock: HandClock
) -> None:
    answer = {
        "secrets": [{"name": "db", "requested_version": None, "version": 2, "unchanged": True}]
    }
    broker = ScriptedBroker((200, answer, {}))
    with pytest.raises(BadAnswer, match="not at the held version 3"):
        _exchange(broker, settings, clock, {"db": 3})


def test_the_token_file_is_read_again_before_each_attempt(
    settings: BrokerSettings, clock: HandClock, token_file: Path
) -> None:
    """The kubelet rotates the projected token: a retry sends the token the file holds now."""

    def busy_then_rotated(request: httpx.Request) -> httpx.Response:
        token_file.write_text("rotated-token-2\n")
        return _response(503, {"error": "busy"}, {"Retry-After": "1"})

    broker = ScriptedBroker(busy_then_rotated, (200, {"secrets": [_entry("db", None, 4, "x")]}, {}))
    _exchange(broker, settings, clock, {"db": 3})
    assert [r.headers["authorization"] for r in broker.requests] == [
        f"Bearer {BROKER_TOKEN}",
        "Bearer rotated-token-2",
    ]
