"""The broker's service path on the real reviewers and cache, each on the fake of its next part.

test_broker_http.py and its neighbours prove the same path over TLS against the local cluster
and the emulator; here the token reviewer answers from the fake API of test_tokens_unit.py,
the access reviewer from the recording fake of test_access_unit.py and the cache reads the
FakeSakura of test_cache_unit.py on a hand clock, so every refusal (its status, message,
Retry-After and reason), what is served and what is logged are pinned down, with no cluster.
"""

from __future__ import annotations

import logging
from secrets import token_hex
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry
from support.broker_fakes import (
    TOKEN,
    UID,
    A,
    FakeApi,
    FakeSakura,
    RecordingCalls,
    RecordingReviews,
    cache,
    projected_token,
)
from support.clock import HandClock
from support.event_fakes import RecordingEventsApi

from contract import SecretVersion
from contract.broker import CREDENTIALS_REJECTED, Answer, FetchedSecret, SecretRequest, Unchanged
from injector.broker.access import AccessReviewer
from injector.broker.errors import AccessDenied, BrokerError, CredentialsRejected
from injector.broker.metrics import BrokerAnswers
from injector.broker.service import KUBERNETES_RETRY_AFTER, Broker
from injector.broker.tokens import TokenReviewer
from injector.event_recorder import EventRecorder
from injector.operations.log_format import JsonFormatter, TextFormatter, fields_of
from injector.serving.broker_routes import reason_of, status_of
from sakura import NotFound, Throttled, Unauthorized

OTHER = "110000000003"
SA_GROUPS = ["system:serviceaccounts", "system:authenticated"]
"""The groups of FakeApi's default TokenReview: the subject the access review must ask for."""


class Parts:
    """The real Broker and the fakes behind it, one set per test."""

    def __init__(self, grants: set[tuple[str, str]] | None = None) -> None:
        self.clock = HandClock()
        self.api = FakeApi()
        self.reviews = RecordingReviews(
            {
                ("vaults", A),
                ("secrets", f"{A}/db"),
                ("secrets", f"{A}/api"),
                ("secrets", f"{A}/gone"),
            }
            if grants is None
            else grants
        )
        self.sakura = FakeSakura()
        self.sakura.values[(A, "api")] = ["a-api-1"]
        self.broker = Broker(
            TokenReviewer(None, clock=self.clock, reviews=self.api, pods=self.api),
            AccessReviewer(None, clock=self.clock, reviews=self.reviews),
            cache(self.sakura, self.clock),
        )

    async def fetch(self, *secrets: SecretVersion, vault: str = A, token: str = TOKEN) -> Answer:
        return await self.broker.fetch(token, SecretRequest(vault, secrets))

    async def refused(self, *secrets: SecretVersion, vault: str = A, token: str = TOKEN) -> Any:
        with pytest.raises(BrokerError) as caught:
            await self.fetch(*secrets, vault=vault, token=token)
        error = caught.value
        assert str(error) == error.message
        return error

    def sakura_calls(self) -> list[Any]:
        return [*self.sakura.listings, *self.sakura.calls]


DB, API = SecretVersion("db"), SecretVersion("api")
IDENTITY = {"namespace": "shop", "service_account": "api", "pod": "api-7d9", "pod_uid": UID}
"""The audit line's fields for the pod FakeApi's TokenReview proves."""


async def test_each_secret_is_served_in_order_with_the_wanted_and_the_got_version() -> None:
    parts = Parts()
    served = await parts.fetch(SecretVersion("db", 1), API, DB)
    assert [(s.name, s.requested_version, s.version, s.value) for s in served.items] == [
        ("db", 1, 1, "a-db-1"),
        ("api", None, 1, "a-api-1"),
        ("db", None, 2, "a-db-2"),
    ]
    assert isinstance(served.items, tuple)
    assert served.namespace == "shop"  # whose share of the answer budget sending it takes
    # read as the pod's namespace: its turn at Sakura's quota
    assert {tenant for _, tenant in parts.sakura.tenants} == {"shop"}
    assert sorted(parts.sakura.calls, key=str) == [(A, "api", 1), (A, "db", 1), (A, "db", 2)]


async def test_the_token_is_verified_and_access_reviewed_as_its_service_account() -> None:
    parts = Parts()
    await parts.fetch(DB, API)
    assert [r["token"] for r in parts.api.reviews] == [TOKEN]
    asked = sorted((r["resource"], r["name"]) for r in parts.reviews.sent)
    assert asked == [("secrets", f"{A}/api"), ("secrets", f"{A}/db"), ("vaults", A)]
    for review in parts.reviews.sent:
        assert (review["user"], review["groups"], review["namespace"]) == (
            "system:serviceaccount:shop:api",
            SA_GROUPS,
            "shop",
        )


async def test_a_rejected_token_is_a_401_with_its_reason_before_any_review_or_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = Parts()
    parts.api.answer = k8s.V1TokenReviewStatus(authenticated=False, error="token has expired")
    caplog.set_level(logging.INFO, logger="injector.audit")
    refused = await parts.refused(DB)
    assert status_of(refused) == 401
    assert refused.message.startswith(
        "the Kubernetes API did not accept the token (token has expired); it may be expired"
    )
    assert (refused.retry_after, reason_of(refused)) == (None, None)
    assert parts.reviews.sent == [] and parts.sakura_calls() == []
    assert [r.getMessage() for r in caplog.records] == [
        f"refused an unverified caller vault {A}: {refused.message}"
    ]
    assert fields_of(caplog.records[0]) == {  # what is known: no identity
        "vault_id": A,
        "requested": ["db"],
        "client": "",
        "decision": "refused",
        "refusal": "token-rejected",
        "detail": refused.message,
    }
    assert TOKEN not in caplog.text


async def test_no_token_is_a_401_naming_the_header_to_send() -> None:
    refused = await Parts().refused(DB, token="")
    assert (status_of(refused), refused.message) == (
        401,
        "no token; send 'Authorization: Bearer <projected ServiceAccount token>'",
    )


async def test_kubernetes_failing_on_the_token_review_is_a_503_to_retry_in_5_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = Parts()
    parts.api.review_fails = ApiException(status=502, reason="Bad Gateway")
    caplog.set_level(logging.INFO, logger="injector.audit")
    with pytest.raises(BrokerError) as caught:
        await parts.broker.fetch(TOKEN, SecretRequest(A, (DB,)), client="10.0.0.9")
    refused = caught.value
    assert (status_of(refused), refused.retry_after, reason_of(refused)) == (503, 5.0, None)
    assert KUBERNETES_RETRY_AFTER == 5.0
    assert refused.message == "the Kubernetes API could not review the token (HTTP 502 Bad Gateway)"
    assert parts.reviews.sent == [] and parts.sakura_calls() == []
    [line] = caplog.records
    assert fields_of(line) == {
        "vault_id": A,
        "requested": ["db"],
        "client": "10.0.0.9",
        "decision": "refused",
        "refusal": "review-unavailable",
        "detail": refused.message,
    }


async def test_kubernetes_failing_on_the_access_review_is_a_503_to_retry_in_5_s() -> None:
    parts = Parts()
    parts.reviews.fail = ConnectionRefusedError()
    refused = await parts.refused(DB)
    assert (status_of(refused), refused.retry_after, reason_of(refused)) == (503, 5.0, None)
    assert refused.message.startswith("the Kubernetes API could not be reached to review access")
    assert parts.sakura_calls() == []


async def test_a_missing_vault_grant_is_a_403_naming_it_before_any_sakura_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = Parts(grants={("secrets", f"{A}/db")})
    caplog.set_level(logging.INFO, logger="injector.audit")
    refused = await parts.refused(DB)
    assert status_of(refused) == 403
    assert refused.message.startswith(
        f'serviceaccount shop/api may not get sakura-secrets.io vaults "{A}"; grant it with a '
        "Role/RoleBinding"
    )
    assert (refused.retry_after, reason_of(refused)) == (None, None)
    assert parts.sakura_calls() == []
    assert [r.getMessage() for r in caplog.records] == [
        f"refused serviceaccount shop/api (pod api-7d9) vault {A}: {refused.message}"
    ]
    assert fields_of(caplog.records[0]) == {
        **IDENTITY,
        "vault_id": A,
        "requested": ["db"],
        "client": "",
        "decision": "refused",
        "refusal": "access-denied",
        "detail": refused.message,
    }


async def test_a_missing_secret_grant_is_a_403_naming_each_secret_before_any_sakura_call() -> None:
    parts = Parts(grants={("vaults", A), ("secrets", f"{A}/db")})
    refused = await parts.refused(DB, API, SecretVersion("cfg", 2))
    assert status_of(refused) == 403
    assert refused.message.startswith(
        f'serviceaccount shop/api may not get sakura-secrets.io secrets "{A}/api"; grant it'
    )
    assert refused.message.endswith(f'; the same grant is also missing for "{A}/cfg"')
    assert parts.sakura_calls() == []


async def test_a_missing_vault_is_a_404_with_the_fix_for_the_annotation() -> None:
    parts = Parts(grants={("vaults", OTHER), ("secrets", f"{OTHER}/db")})
    parts.sakura.fail = NotFound("HTTP 404 no such vault", kind="vault", name=OTHER)
    refused = await parts.refused(DB, vault=OTHER)
    assert (status_of(refused), refused.retry_after, reason_of(refused)) == (404, None, None)
    assert refused.message == (
        f"vault {OTHER} was not found (or the injector's API key cannot see it); "
        "fix the vault-id annotation"
    )


async def test_a_missing_secret_is_a_404_with_the_fix_and_is_then_refused_from_memory() -> None:
    parts = Parts()
    first = await parts.refused(DB, SecretVersion("gone"))
    assert (status_of(first), first.retry_after, reason_of(first)) == (404, None, None)
    assert first.message == (
        f"secret 'gone' does not exist in vault {A}; create it in Sakura's Secret Manager or "
        "fix the annotation"
    )
    calls = parts.sakura_calls()
    again = await parts.refused(API, SecretVersion("gone"))
    assert (status_of(again), again.message) == (404, first.message)
    assert parts.sakura_calls() == calls  # known missing: refused before any read, even of api


async def test_a_missing_version_is_a_404_with_the_fix_and_is_then_refused_from_memory() -> None:
    parts = Parts()
    first = await parts.refused(SecretVersion("db", 7))
    assert (status_of(first), first.retry_after, reason_of(first)) == (404, None, None)
    assert first.message == (
        f"secret 'db@7' has no such version in vault {A}; pin an existing version or drop the "
        "@VERSION"
    )  # never the latest version (2): a denial does not tell what the vault holds
    assert parts.sakura.calls == []  # the listing said so: no unveil
    again = await parts.refused(API, SecretVersion("db", 7))
    assert (status_of(again), again.message) == (404, first.message)
    assert len(parts.sakura.listings) == 1 and parts.sakura.calls == []  # not even api is read


async def test_a_missing_version_reported_by_sakura_never_echoes_its_latest_version() -> None:
    """The Sakura client explains a missing version with the latest one; the 404 leaves it out."""
    parts = Parts()
    parts.sakura.values[(A, "db")].append("a-db-3")
    await parts.fetch(SecretVersion("db", 3))  # lists the vault: db@3 exists now
    parts.sakura.fail = NotFound(
        f"secret 'db' has no version 2 in vault {A} (latest is 3): not found",
        kind="version",
        name="db@2",
    )
    refused = await parts.refused(SecretVersion("db", 2))
    assert refused.message == (
        f"secret 'db@2' has no such version in vault {A}; pin an existing version or drop the "
        "@VERSION"
    )


async def test_the_first_refused_secret_in_request_order_is_the_answer() -> None:
    parts = Parts()
    parts.sakura.fail = Throttled("HTTP 429", retry_after=7)
    refused = await parts.refused(SecretVersion("gone"), DB)
    assert (status_of(refused), refused.retry_after) == (503, 7.0)
    assert "secret 'gone' of vault" in refused.message
    parts.sakura.fail = None
    missing = await parts.refused(DB, SecretVersion("gone"), SecretVersion("db", 9))
    assert "secret 'gone' does not exist" in missing.message


async def test_sakura_unavailable_is_the_caches_503_with_its_retry_after() -> None:
    parts = Parts()
    parts.sakura.fail = Throttled("HTTP 429 slow down", retry_after=12)
    refused = await parts.refused(DB)
    assert (status_of(refused), refused.retry_after, reason_of(refused)) == (503, 12.0, None)
    assert refused.message == (
        f"secret 'db' of vault {A} cannot be read now and no copy known current within the last "
        "300s is held (HTTP 429 slow down); retry in 12s"
    )


async def test_a_rejected_injector_key_is_a_503_with_the_credentials_rejected_reason() -> None:
    parts = Parts()
    parts.sakura.fail = Unauthorized("HTTP 401 bad key")
    refused = await parts.refused(DB)
    assert (status_of(refused), refused.retry_after) == (503, 10.0)
    assert reason_of(refused) == CREDENTIALS_REJECTED == "credentials_rejected"
    assert refused.message == (
        f"Sakura rejected the injector's credentials reading secret 'db' of vault {A} (HTTP 401 "
        "bad key); the injector's operator must fix its API key"
    )


async def test_an_unexpected_failure_of_a_read_is_raised_as_it_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = Parts()
    parts.sakura.fail = RuntimeError("a bug in a part")
    caplog.set_level(logging.INFO, logger="injector.audit")
    with pytest.raises(RuntimeError, match="a bug in a part"):
        await parts.broker.fetch(TOKEN, SecretRequest(A, (DB,)), client="10.0.0.9")
    [line] = caplog.records
    assert line.levelname == "ERROR" and "a bug in a part" in caplog.text  # the traceback
    assert fields_of(line) == {
        **IDENTITY,
        "vault_id": A,
        "requested": ["db"],
        "client": "10.0.0.9",
        "decision": "error",
    }


async def test_what_is_served_is_logged_by_name_and_version_never_by_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = Parts()
    caplog.set_level(logging.INFO, logger="injector.audit")
    await parts.broker.fetch(
        TOKEN, SecretRequest(A, (DB, SecretVersion("db", 1), API)), client="10.1.2.3"
    )
    assert [r.getMessage() for r in caplog.records] == [
        f"served serviceaccount shop/api (pod api-7d9) vault {A}"
    ]
    assert fields_of(caplog.records[0]) == {
        **IDENTITY,
        "vault_id": A,
        "requested": ["db", "db@1", "api"],
        "client": "10.1.2.3",
        "decision": "served",
        "served": [
            {"name": "db", "version": 2},
            {"name": "db", "version": 1},
            {"name": "api", "version": 1},
        ],
        "unchanged": [],
    }
    for value in ("a-db-1", "a-db-2", "a-api-1"):
        assert value not in caplog.text


def test_a_broker_error_carries_its_status_retry_after_and_reason() -> None:
    plain = AccessDenied("no grant")
    assert (str(plain), plain.message, status_of(plain), plain.retry_after, reason_of(plain)) == (
        "no grant",
        "no grant",
        403,
        None,
        None,
    )
    full = CredentialsRejected("key", retry_after=2.5)
    assert (status_of(full), full.retry_after, reason_of(full)) == (
        503,
        2.5,
        "credentials_rejected",
    )


async def test_the_token_review_waits_in_the_lane_of_the_clients_address() -> None:
    parts, calls = Parts(), RecordingCalls()
    parts.broker.tokens = TokenReviewer(None, reviews=parts.api, pods=parts.api, calls=calls)
    await parts.broker.fetch(TOKEN, SecretRequest(A, (DB,)), client="10.0.0.7")
    assert calls.lanes[0] == ("client", "10.0.0.7")


async def test_without_an_address_the_token_review_waits_in_the_lane_of_none() -> None:
    parts, calls = Parts(), RecordingCalls()
    parts.broker.tokens = TokenReviewer(None, reviews=parts.api, pods=parts.api, calls=calls)
    await parts.broker.fetch(TOKEN, SecretRequest(A, (DB,)))
    assert calls.lanes[0] == ("client", "")


# ------------------------------------------------ refreshes: held versions


async def refresh(parts: Parts, held: dict[str, int], *secrets: SecretVersion) -> Answer:
    return await parts.broker.fetch(TOKEN, SecretRequest(A, secrets, held))


async def test_a_held_latest_version_is_answered_unchanged_without_a_value_or_an_unveil(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = Parts()
    caplog.set_level(logging.INFO, logger="injector.audit")
    served = await refresh(parts, {"db": 2, "api": 1}, DB, SecretVersion("db", 1), API)
    assert served.items == (
        Unchanged("db", 2),
        FetchedSecret("db", 1, 1, "a-db-1"),  # a pinned version is always a value
        Unchanged("api", 1),
    )
    assert parts.sakura.calls == [(A, "db", 1)]  # nothing unveiled for the unchanged ones
    [line] = caplog.records
    assert fields_of(line)["served"] == [
        {"name": "db", "version": 2},
        {"name": "db", "version": 1},
        {"name": "api", "version": 1},
    ]
    assert fields_of(line)["unchanged"] == ["db", "api"]


async def test_a_held_version_that_is_no_longer_the_latest_gets_the_new_value() -> None:
    parts = Parts()
    parts.sakura.values[(A, "db")].append("a-db-3")
    served = await refresh(parts, {"db": 2}, DB, API)  # api not held: a value, as a fetch
    assert served.items == (
        FetchedSecret("db", None, 3, "a-db-3"),
        FetchedSecret("api", None, 1, "a-api-1"),
    )


async def test_every_refresh_is_reviewed_and_a_revoked_grant_refuses_it() -> None:
    parts = Parts()
    await refresh(parts, {"db": 2}, DB)
    assert [r["resource"] for r in parts.reviews.sent] == ["vaults", "secrets"]
    parts.reviews.grants.discard(("secrets", f"{A}/db"))  # the RoleBinding is revoked
    parts.clock.now += 29.9  # the allow is remembered 30 s
    assert (await refresh(parts, {"db": 2}, DB)).items == (Unchanged("db", 2),)
    parts.clock.now += 0.1
    refused = await parts.refused(DB)
    with pytest.raises(AccessDenied) as caught:
        await refresh(parts, {"db": 2}, DB)
    assert status_of(caught.value) == 403
    assert caught.value.message == refused.message
    assert caught.value.message.startswith(
        f'serviceaccount shop/api may not get sakura-secrets.io secrets "{A}/db"; grant it'
    )
    parts.api.answer = k8s.V1TokenReviewStatus(authenticated=False, error="pod deleted")
    parts.clock.now += parts.broker.tokens.review_ttl  # the acceptance has expired
    with pytest.raises(BrokerError) as rejected:  # the token is checked on a refresh too
        await refresh(parts, {"db": 2}, DB)
    assert status_of(rejected.value) == 401


# ------------------------------------------------ the audit line and the refusal Events


async def test_a_refusal_of_a_running_pod_is_an_event_on_that_pod_by_name_and_uid() -> None:
    parts, api = Parts(grants={("vaults", A)}), RecordingEventsApi()
    events = EventRecorder(api, instance="injector-0", clock=parts.clock)
    old = parts.broker
    parts.broker = Broker(old.tokens, old.access, old.cache, events)
    refused = await parts.refused(DB)
    await events.flush()
    [event] = api.created
    assert event["regarding"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": "shop",
        "name": "api-7d9",
        "uid": UID,
    }
    assert (event["reason"], event["action"], event["type"]) == (
        "SecretsRefused",
        "Fetch",
        "Warning",
    )
    assert event["note"] == f"access-denied: {refused.message}"


async def test_a_rejected_token_or_a_served_answer_is_no_event() -> None:
    parts, api = Parts(), RecordingEventsApi()
    parts.broker.events = EventRecorder(api, clock=parts.clock)
    await parts.fetch(DB)
    parts.api.answer = k8s.V1TokenReviewStatus(authenticated=False, error="expired")
    await parts.refused(DB, token=projected_token(sub="another"))
    await parts.broker.events.flush()
    assert api.created == []  # no pod proven: nothing to put an Event on


async def test_no_value_is_in_the_audit_lines_as_json_or_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Values random per run: one that leaked into a line would be found, whatever it is."""
    parts = Parts()
    values = {name: f"{name}-{token_hex(8)}-VALUE" for name in ("db", "api")}
    parts.sakura.values[(A, "db")] = [values["db"]]
    parts.sakura.values[(A, "api")] = [values["api"]]
    caplog.set_level(logging.DEBUG)
    served = await parts.fetch(DB, API)
    assert [item.value for item in served.items] == [values["db"], values["api"]]  # type: ignore[union-attr]
    await parts.broker.fetch(TOKEN, SecretRequest(A, (DB, API), {"db": 1, "api": 1}))
    await parts.refused(SecretVersion("db", 9))
    lines = [f.format(r) for r in caplog.records for f in (JsonFormatter(), TextFormatter())]
    assert any('"decision": "served"' in line for line in lines)
    assert any("decision=refused" in line for line in lines)
    for value in values.values():
        assert all(value not in line for line in lines)


def answers(parts: Parts) -> dict[tuple[str, str], float]:
    """(namespace, outcome) -> how many answers the broker counted."""
    return {
        (s.labels["namespace"], s.labels["outcome"]): s.value
        for m in parts.broker.answers.answers.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }


async def test_every_answer_is_counted_by_the_verified_namespace_and_its_outcome() -> None:
    parts = Parts()
    await parts.fetch(DB)
    await refresh(parts, {"db": 2}, DB)
    await refresh(parts, {"db": 1}, DB)  # a new version for it: served
    parts.reviews.grants.discard(("secrets", f"{A}/api"))
    await parts.refused(API)
    await parts.refused(SecretVersion("db", 9))
    parts.api.answer = k8s.V1TokenReviewStatus(authenticated=False, error="pod deleted")
    parts.clock.now += parts.broker.tokens.review_ttl
    await parts.refused(DB)
    assert answers(parts) == {
        ("shop", "served"): 2,
        ("shop", "unchanged"): 1,
        ("shop", "access_denied"): 1,
        ("shop", "secret_absent"): 1,
        ("", "token_rejected"): 1,  # no verified namespace: never the token's claim
    }


async def test_kubernetes_failing_on_the_token_review_is_counted_without_a_namespace() -> None:
    parts = Parts()
    parts.api.review_fails = ApiException(status=502, reason="Bad Gateway")
    await parts.refused(DB)
    parts.api.review_fails = None
    parts.sakura.fail = Unauthorized("HTTP 401 bad key")
    await parts.refused(DB)
    assert answers(parts) == {("", "review_unavailable"): 1, ("shop", "credentials_rejected"): 1}


async def test_the_answers_are_counted_in_the_counter_the_wiring_gives() -> None:
    registry, parts = CollectorRegistry(), Parts()
    given = BrokerAnswers(registry)
    broker = Broker(parts.broker.tokens, parts.broker.access, parts.broker.cache, answers=given)
    await broker.fetch(TOKEN, SecretRequest(A, (DB,)))
    assert broker.answers is given
    served = {"namespace": "shop", "outcome": "served"}
    assert registry.get_sample_value("sakura_secrets_broker_answers_total", served) == 1
