"""The broker's HTTP shell in process (ASGI): statuses, headers and error bodies.

test_broker_http.py drives the same routes over TLS against the local cluster; here the broker
behind them is a fake that answers or refuses exactly as a test says, and one test puts the real
Broker on fakes of the Kubernetes API to show an API failure is a retryable 503, not a 500.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from support.broker_fakes import TOKEN, FakeApi, RecordingReviews
from support.values import VAULT

from contract import SecretVersion
from contract.broker import (
    ANSWER_TOO_LARGE,
    CREDENTIALS_REJECTED,
    MAX_ANSWER_BYTES,
    MAX_BODY_BYTES,
    SECRETS_PATH,
    Answer,
    FetchedSecret,
    SecretRequest,
)
from injector.broker.access import AccessReviewer
from injector.broker.errors import (
    AccessDenied,
    BrokerError,
    CredentialsRejected,
    NamespaceCrowded,
    ReviewUnavailable,
    SecretAbsent,
    SecretsUnavailable,
    TokenRejected,
)
from injector.broker.metrics import BrokerAnswers
from injector.broker.service import Broker
from injector.broker.tokens import TokenReviewer
from injector.operations.log_format import fields_of
from injector.serving.answers import AnswerBudget
from injector.serving.broker_routes import (
    bearer_token,
    broker_routes,
    reason_of,
    status_of,
)

BODY = {"vault_id": VAULT, "secrets": [{"name": "db", "version": None}]}


class FakeBroker:
    """Answers `items`, or raises `error`; records what it was asked."""

    def __init__(self) -> None:
        self.items: tuple[FetchedSecret, ...] = (FetchedSecret("db", None, 4, "v-db"),)
        self.error: BrokerError | None = None
        self.asked: list[tuple[str, SecretRequest]] = []
        self.clients: list[str] = []
        self.answers = BrokerAnswers(CollectorRegistry())

    def counted(self) -> dict[tuple[str, str], float]:
        """(namespace, outcome) -> answers counted here (the broker counts those it gives)."""
        return {
            (s.labels["namespace"], s.labels["outcome"]): s.value
            for m in self.answers.answers.collect()
            for s in m.samples
            if s.name.endswith("_total")
        }

    async def fetch(self, token: str, request: SecretRequest, *, client: str) -> Answer:
        self.asked.append((token, request))
        self.clients.append(client)
        if self.error is not None:
            raise self.error
        return Answer("shop", self.items)


async def post(
    broker: Any,
    *,
    body: Any = BODY,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    budget: AnswerBudget | None = None,
) -> httpx.Response:
    app = Starlette(routes=broker_routes(broker, budget))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://broker") as client:
        return await client.post(
            SECRETS_PATH,
            content=json.dumps(body).encode() if raw is None else raw,
            headers={"Authorization": f"Bearer {TOKEN}"} if headers is None else headers,
        )


async def test_an_answer_is_the_values_uncached() -> None:
    broker = FakeBroker()
    response = await post(broker)
    assert response.status_code == 200
    assert response.json() == {
        "secrets": [{"name": "db", "requested_version": None, "version": 4, "value": "v-db"}]
    }
    assert response.headers["cache-control"] == "no-store"
    assert broker.asked == [(TOKEN, SecretRequest(VAULT, (SecretVersion("db"),)))]
    assert broker.clients == ["127.0.0.1"]  # its TokenReview's lane: the caller's address


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   ", "bearer"])
async def test_no_bearer_token_is_a_401_with_a_challenge(header: str | None) -> None:
    broker = FakeBroker()
    response = await post(broker, headers={} if header is None else {"Authorization": header})
    assert response.status_code == 401
    assert response.json() == {
        "error": "no bearer token; send 'Authorization: Bearer <projected ServiceAccount token>' "
        "(audience sakura-secrets-injector)"
    }
    assert response.headers["www-authenticate"] == 'Bearer realm="sakura-secrets-injector"'
    assert response.headers["cache-control"] == "no-store"
    assert "retry-after" not in response.headers
    assert broker.asked == []
    assert broker.counted() == {("", "token_rejected"): 1}


async def test_a_refusal_is_json_compact_and_keeps_text_as_utf8() -> None:
    broker = FakeBroker()
    broker.error = AccessDenied("нет доступа")
    response = await post(broker)
    assert response.headers["content-type"] == "application/json"
    assert response.content == '{"error":"нет доступа"}'.encode()


def test_the_bearer_token_is_read_from_the_header() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("  bearer   abc  ") == "abc"
    assert bearer_token("BEARER abc") == "abc"
    assert bearer_token("Bearer") is None
    assert bearer_token("Token abc") is None
    assert bearer_token(None) is None


async def test_a_too_large_body_is_a_413_before_parsing() -> None:
    broker = FakeBroker()
    response = await post(broker, raw=b" " * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413
    assert response.json() == {"error": f"the body is larger than {MAX_BODY_BYTES} bytes"}
    assert "www-authenticate" not in response.headers
    assert broker.asked == []
    assert broker.counted() == {("", "malformed"): 1}


async def test_a_bad_body_is_a_400_naming_the_field() -> None:
    broker = FakeBroker()
    response = await post(broker, body={"vault_id": "1", "secrets": []})
    assert response.status_code == 400
    assert response.json() == {"error": "'vault_id' must be the 12-digit Sakura vault ID, not '1'"}
    assert response.headers["cache-control"] == "no-store"
    assert broker.asked == []
    assert broker.counted() == {("", "malformed"): 1}


@pytest.mark.parametrize(
    ("retry_after", "header"), [(None, None), (0.2, "1"), (1.0, "1"), (4.01, "5"), (9, "9")]
)
async def test_a_refusal_keeps_its_status_message_and_retry_after(
    retry_after: float | None, header: str | None
) -> None:
    broker = FakeBroker()
    broker.error = BrokerError("try later", retry_after=retry_after)
    response = await post(broker)
    assert response.status_code == 503
    assert response.json() == {"error": "try later"}
    assert response.headers.get("retry-after") == header
    assert response.headers["cache-control"] == "no-store"


async def test_a_refusal_with_a_reason_carries_it_next_to_the_message() -> None:
    """The init container tells a rejected key from an outage by `reason` (its own exit code)."""
    broker = FakeBroker()
    broker.error = CredentialsRejected("Sakura rejected the injector's credentials", retry_after=30)
    response = await post(broker)
    assert (response.status_code, response.json()) == (
        503,
        {"error": "Sakura rejected the injector's credentials", "reason": CREDENTIALS_REJECTED},
    )
    assert response.headers["retry-after"] == "30"


@pytest.mark.parametrize(
    ("refusal", "status", "reason"),
    [
        (TokenRejected("expired"), 401, None),
        (AccessDenied("no grant"), 403, None),
        (SecretAbsent("no such secret"), 404, None),
        (NamespaceCrowded("crowded", retry_after=3), 429, None),
        (SecretsUnavailable("outage", retry_after=3), 503, None),
        (CredentialsRejected("bad key", retry_after=3), 503, CREDENTIALS_REJECTED),
        (ReviewUnavailable("no API", retry_after=3), 503, None),
        (BrokerError("a kind without its own status"), 503, None),
    ],
)
async def test_each_kind_of_refusal_has_its_status_here(
    refusal: BrokerError, status: int, reason: str | None
) -> None:
    """The broker's core names what went wrong; only this shell knows HTTP."""
    assert (status_of(refusal), reason_of(refusal)) == (status, reason)
    broker = FakeBroker()
    broker.error = refusal
    response = await post(broker)
    body = (
        {"error": refusal.message}
        if reason is None
        else {"error": refusal.message, "reason": reason}
    )
    assert (response.status_code, response.json()) == (status, body)
    assert response.headers.get("retry-after") == (None if refusal.retry_after is None else "3")


async def test_a_401_from_the_broker_carries_the_challenge() -> None:
    broker = FakeBroker()
    broker.error = TokenRejected("expired")
    response = await post(broker)
    assert (response.status_code, response.json()) == (401, {"error": "expired"})
    assert response.headers["www-authenticate"] == 'Bearer realm="sakura-secrets-injector"'
    broker.error = AccessDenied("no grant")
    response = await post(broker)
    assert response.status_code == 403
    assert "www-authenticate" not in response.headers


async def test_only_post_is_served() -> None:
    app = Starlette(routes=broker_routes(FakeBroker()))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://broker") as client:
        assert (await client.get(SECRETS_PATH)).status_code == 405


async def test_the_kubernetes_api_failing_during_the_access_review_is_a_retryable_503() -> None:
    """The real Broker on fakes of the API: the review fails, the init container may retry."""
    reviews = RecordingReviews(set())
    reviews.fail = ApiException(status=500, reason="Internal Server Error")
    api = FakeApi()
    broker = Broker(
        TokenReviewer(None, reviews=api, pods=api),
        AccessReviewer(None, reviews=reviews),
        cache=None,  # type: ignore[arg-type]  # never reached
    )
    api.review_fails = ApiException(status=502, reason="Bad Gateway")
    response = await post(broker)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json() == {
        "error": "the Kubernetes API could not review the token (HTTP 502 Bad Gateway)"
    }
    api.review_fails = None
    response = await post(broker)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "could not review access to" in response.json()["error"]


async def test_an_answer_over_the_bound_is_a_final_422_naming_it_and_the_way_out() -> None:
    broker = FakeBroker()
    broker.items = tuple(
        FetchedSecret(f"s{i}", None, 1, "\x01" * 65536) for i in range(22)
    )  # 22 values of 64 KiB of control characters: 8.6 MiB of JSON
    response = await post(broker)
    assert response.status_code == 422
    assert response.json() == {
        "error": (
            f"the answer for these 22 secrets would be larger than {MAX_ANSWER_BYTES} bytes "
            "(8 MiB), the broker's bound on one answer (values JSON-encoded: a control character "
            "takes 6 bytes); split the pod's secrets between pods, so each reads fewer or "
            "smaller values, or store binary values base64-encoded"
        ),
        "reason": ANSWER_TOO_LARGE,
    }
    assert ANSWER_TOO_LARGE == "answer_too_large"
    assert response.headers["cache-control"] == "no-store"
    assert "retry-after" not in response.headers


async def test_an_answer_the_budget_cannot_hold_is_a_503_to_retry() -> None:
    budget = AnswerBudget(total=1000, share=2)
    budget.take("shop", 480)
    response = await post(FakeBroker(), budget=budget)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json() == {
        "error": (
            "the answer is not sent now: this namespace's answers already being sent hold 480 "
            "bytes, and this one needs at least 21 more; one namespace may hold 500 bytes of "
            "answers at once; retry in 2s"
        )
    }
    assert budget.held == 480


async def test_an_answer_sent_gives_its_bytes_back_to_the_budget() -> None:
    budget = AnswerBudget()
    response = await post(FakeBroker(), budget=budget)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert budget.held == 0


async def test_a_request_without_a_peer_address_is_fetched_in_the_lane_of_no_address() -> None:
    """Some ASGI servers (a Unix socket) give no client address: the lane is then ''."""
    broker = FakeBroker()
    app = Starlette(routes=broker_routes(broker))  # type: ignore[arg-type]
    body = json.dumps(BODY).encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": SECRETS_PATH,
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode())],
        "query_string": b"",
        "client": None,
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    assert broker.clients == [""]


async def test_a_request_refused_before_the_broker_is_one_audit_line_with_what_is_known(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="injector.audit")
    await post(FakeBroker(), headers={})
    await post(FakeBroker(), raw=b" " * (MAX_BODY_BYTES + 1))
    await post(FakeBroker(), body={"vault_id": "1", "secrets": []})
    budget = AnswerBudget(total=1000, share=2)
    budget.take("shop", 480)
    await post(FakeBroker(), budget=budget)  # after the broker's own served line
    lines = [fields_of(r) for r in caplog.records]
    assert [r.levelname for r in caplog.records] == ["WARNING"] * 4
    assert [(f["decision"], f["refusal"], f["client"]) for f in lines] == [
        ("refused", "token-rejected", "127.0.0.1"),
        ("refused", "bad-request", "127.0.0.1"),
        ("refused", "bad-request", "127.0.0.1"),
        ("refused", "answer-refused", "127.0.0.1"),
    ]
    assert lines[0]["detail"].startswith("no bearer token; send 'Authorization: Bearer")
    assert lines[1]["detail"] == "the body is too large"
    assert lines[2]["detail"] == "'vault_id' must be the 12-digit Sakura vault ID, not '1'"
    assert (lines[3]["vault_id"], lines[3]["requested"]) == (VAULT, ["db"])
    assert lines[3]["detail"].startswith("the answer is not sent now")
    assert all("vault_id" not in f for f in lines[:3]) and "v-db" not in caplog.text
