"""The broker's own token checks on crafted TokenReview statuses and pod facts.

A real API server refuses most bad tokens itself (test_broker_http.py proves the whole path on
the local cluster), so there the broker's checks are never what fails. Here a fake of the API
answers exactly the status under test: audience, pod binding extras, the pod's uid and
ServiceAccount, failures of the API, and the review and pod cache lifetimes on a hand-driven
clock.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import time
from typing import Any

import jwt
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from support.broker_fakes import (
    TOKEN,
    UID,
    YEAR_2100,
    FakeApi,
    RecordingCalls,
    pod,
    projected_token,
    review_status,
    status,
)
from support.clock import HandClock
from support.stub_kube_api import StubApi, stub_api_server

from injector.broker.errors import TokenRejected
from injector.broker.tokens import (
    API_SERVER_REVIEW_CACHE,
    AUDIENCE,
    CLOCK_SKEW,
    MAX_TOKEN_LENGTH,
    POD_NAME_EXTRA,
    POD_UID_EXTRA,
    Identity,
    TokenReviewer,
    identity_from_review,
    parse_service_account,
    service_account_groups,
    service_account_username,
)
from injector.kube import KUBE_PER_KEY, KubernetesUnavailable, kubernetes_calls

NOW = 1_800_000_000.0


def reviewer(api: FakeApi, clock: HandClock, **kwargs: Any) -> TokenReviewer:
    return TokenReviewer(None, clock=clock, reviews=api, pods=api, **kwargs)


async def reread(api: FakeApi, now: k8s.V1Pod | None, **kwargs: Any) -> Identity:
    """The token verified once (the API server checked its pod), then again `pod_ttl` later,
    when the broker reads the pod itself and finds `now` (None: gone)."""
    clock = HandClock()
    tokens = reviewer(api, clock, **kwargs)
    await tokens.verify(TOKEN)
    assert api.reads == []
    api.pods.pop(("shop", "api-7d9"), None)
    if now is not None:
        api.pods[("shop", "api-7d9")] = now
    clock.now += tokens.pod_ttl
    return await tokens.verify(TOKEN)


IDENTITY = Identity(
    "shop", "api", "api-7d9", UID, ("system:serviceaccounts", "system:authenticated")
)


# --- identity_from_review: pure checks on the review's status ---


def test_an_accepted_bound_token_gives_the_pod_identity() -> None:
    identity = identity_from_review(status(), AUDIENCE)
    assert identity == IDENTITY
    assert identity.username == "system:serviceaccount:shop:api"
    assert str(identity) == "serviceaccount shop/api (pod api-7d9)"


def test_an_unauthenticated_token_is_rejected_with_the_api_servers_reason() -> None:
    with pytest.raises(TokenRejected) as caught:
        identity_from_review(status(authenticated=False, error="token  has\n expired"), "aud-x")
    assert str(caught.value) == (
        "the Kubernetes API did not accept the token (token has expired); it may be expired, "
        "for another audience than 'aud-x', or its pod or ServiceAccount may be gone"
    )
    with pytest.raises(TokenRejected, match=r"\(no reason given\)"):
        identity_from_review({"authenticated": False}, AUDIENCE)
    with pytest.raises(TokenRejected, match="did not accept"):
        identity_from_review({}, AUDIENCE)


def test_the_api_servers_reason_is_one_line_of_at_most_300_characters() -> None:
    with pytest.raises(TokenRejected) as caught:
        identity_from_review(status(authenticated=False, error="x" * 400 + "TAIL"), AUDIENCE)
    assert f"({'x' * 300})" in str(caught.value)


def test_a_token_for_another_audience_is_rejected_even_when_authenticated() -> None:
    for audiences in ([], ["https://kubernetes.default.svc"], None):
        fields = status()
        fields["audiences"] = audiences
        with pytest.raises(TokenRejected) as caught:
            identity_from_review(fields, "aud-x")
        assert str(caught.value) == (
            "the token is not for audience 'aud-x'; project it with "
            "serviceAccountToken.audience: aud-x"
        )
    assert identity_from_review(status(audiences=["other", "aud-x"]), "aud-x").pod_uid == UID


@pytest.mark.parametrize(
    "username",
    ["", "admin", "system:node:worker-1", "system:serviceaccounts:shop", "serviceaccount:shop:api"],
)
def test_a_token_not_of_a_service_account_is_rejected(username: str) -> None:
    with pytest.raises(TokenRejected) as caught:
        identity_from_review(status(username=username), AUDIENCE)
    assert str(caught.value) == (
        "the token does not belong to a ServiceAccount; present the projected token of the "
        "pod's ServiceAccount"
    )


@pytest.mark.parametrize(
    "username",
    [
        "system:serviceaccount:shop",
        "system:serviceaccount:shop:",
        "system:serviceaccount::api",
        "system:serviceaccount:shop:api:extra",
    ],
)
def test_a_malformed_service_account_name_is_rejected(username: str) -> None:
    with pytest.raises(TokenRejected) as caught:
        parse_service_account(username)
    assert str(caught.value) == f"the token's user {username!r} is not a ServiceAccount name"


def test_a_missing_user_is_not_a_service_account() -> None:
    fields = status()
    del fields["user"]
    with pytest.raises(TokenRejected, match="does not belong to a ServiceAccount"):
        identity_from_review(fields, AUDIENCE)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        None,
        {POD_NAME_EXTRA: ["api-7d9"]},
        {POD_UID_EXTRA: [UID]},
        {POD_NAME_EXTRA: ["api-7d9"], POD_UID_EXTRA: []},
        {POD_NAME_EXTRA: [], POD_UID_EXTRA: [UID]},
        {POD_NAME_EXTRA: ["api-7d9", "other"], POD_UID_EXTRA: [UID]},
        {POD_NAME_EXTRA: ["api-7d9"], POD_UID_EXTRA: [UID, UID]},
        {POD_NAME_EXTRA: "api-7d9", POD_UID_EXTRA: [UID]},
        {POD_NAME_EXTRA: ["api-7d9"], POD_UID_EXTRA: UID},
        {POD_NAME_EXTRA: [""], POD_UID_EXTRA: [UID]},
        {POD_NAME_EXTRA: ["api-7d9"], POD_UID_EXTRA: [""]},
    ],
)
def test_a_token_not_bound_to_exactly_one_pod_is_rejected(extra: dict[str, Any] | None) -> None:
    fields = status()
    fields["user"]["extra"] = extra
    with pytest.raises(TokenRejected) as caught:
        identity_from_review(fields, AUDIENCE)
    assert str(caught.value) == (
        "the token is not bound to a pod; use the projected token the injector mounts "
        "(serviceAccountToken volume), not a long-lived ServiceAccount Secret token"
    )


def test_groups_come_from_the_review_as_strings_and_may_be_absent() -> None:
    assert identity_from_review(status(groups=["g1", "g2"]), AUDIENCE).groups == ("g1", "g2")
    fields = status()
    fields["user"]["groups"] = None
    assert identity_from_review(fields, AUDIENCE).groups == ()


def test_service_account_names_and_groups() -> None:
    assert service_account_username("shop", "api") == "system:serviceaccount:shop:api"
    assert service_account_groups("shop") == (
        "system:serviceaccounts",
        "system:serviceaccounts:shop",
        "system:authenticated",
    )
    assert parse_service_account("system:serviceaccount:shop:api") == ("shop", "api")


# --- TokenReviewer.verify: the request, the pod check, the caches ---


async def test_it_reviews_the_token_for_its_audience_with_a_timeout() -> None:
    api = FakeApi()
    identity = await reviewer(api, HandClock(), request_timeout=2.5).verify(f"  {TOKEN}\n")
    assert identity == IDENTITY
    assert api.reviews == [{"token": TOKEN, "audiences": [AUDIENCE], "timeout": 2.5}]
    assert api.reads == []  # the API server just checked the pod


async def test_the_pod_is_read_with_the_timeout_once_the_review_is_pod_ttl_old() -> None:
    api = FakeApi()
    assert await reread(api, pod(UID, "api"), request_timeout=2.5) == IDENTITY
    assert api.reads == [{"name": "api-7d9", "namespace": "shop", "timeout": 2.5}]


async def test_the_default_audience_and_timeout() -> None:
    api = FakeApi()
    assert await reread(api, pod(UID, "api")) == IDENTITY
    assert api.reviews[0]["audiences"] == ["sakura-secrets-injector"]
    assert api.reviews[0]["timeout"] == 5.0
    assert api.reads[0]["timeout"] == 5.0


async def test_another_audience_is_asked_for_and_checked() -> None:
    api = FakeApi()
    api.answer = review_status(status(audiences=["aud-x"]))
    token = projected_token(aud=["aud-x"])
    assert await reviewer(api, HandClock(), audience="aud-x").verify(token) == IDENTITY
    assert api.reviews[0]["audiences"] == ["aud-x"]
    with pytest.raises(TokenRejected, match="not for audience 'sakura-secrets-injector'"):
        await reviewer(api, HandClock()).verify(token)
    assert len(api.reviews) == 1  # the token's own claim refused it: no second review


@pytest.mark.parametrize("token", ["", "   ", "\n\t"])
async def test_no_token_is_rejected_without_asking_the_api(token: str) -> None:
    api = FakeApi()
    with pytest.raises(TokenRejected) as caught:
        await reviewer(api, HandClock()).verify(token)
    assert str(caught.value) == (
        "no token; send 'Authorization: Bearer <projected ServiceAccount token>'"
    )
    assert api.reviews == []


@pytest.mark.parametrize(
    "token", ["a" * (MAX_TOKEN_LENGTH + 1), "two words", "tab\tinside", "line\nbreak"]
)
async def test_a_malformed_token_is_rejected_without_asking_the_api(token: str) -> None:
    api = FakeApi()
    with pytest.raises(TokenRejected) as caught:
        await reviewer(api, HandClock()).verify(token)
    assert str(caught.value) == "the bearer token is malformed"
    assert api.reviews == []


def token_of_length(length: int) -> str:
    """A well-formed token of exactly `length` characters (padding in a claim and the header:
    base64 lengths skip some values)."""

    def token(pad: int, kid: int) -> str:
        return jwt.encode(
            {"aud": AUDIENCE, "exp": YEAR_2100, "pad": "x" * pad},
            "a-test-key-of-32-bytes-or-more..",
            algorithm="HS256",
            headers={"kid": "k" * kid},
        )

    near = (length - len(token(0, 0))) * 3 // 4 - 4
    for pad in range(near, near + 8):
        for kid in range(4):
            if len(token(pad, kid)) == length:
                return token(pad, kid)
    raise AssertionError(f"no token of length {length}")


async def test_a_token_of_the_maximum_length_is_reviewed() -> None:
    api = FakeApi()
    await reviewer(api, HandClock()).verify(token_of_length(MAX_TOKEN_LENGTH))
    assert len(api.reviews) == 1


async def test_a_review_without_status_is_a_rejection() -> None:
    api = FakeApi()
    api.answer = None
    with pytest.raises(TokenRejected, match="did not accept the token"):
        await reviewer(api, HandClock()).verify(TOKEN)


async def test_a_token_of_a_deleted_pod_is_rejected() -> None:
    api = FakeApi()
    with pytest.raises(TokenRejected) as caught:
        await reread(api, None)
    assert str(caught.value) == (
        "the token's pod shop/api-7d9 no longer exists; a token of a deleted pod is not accepted"
    )


async def test_a_token_of_a_pod_replaced_under_the_same_name_is_rejected() -> None:
    api = FakeApi()
    with pytest.raises(TokenRejected) as caught:
        await reread(api, pod("another-uid", "api"))
    assert str(caught.value) == (
        "the token's pod shop/api-7d9 no longer exists (another pod now has its name); a token "
        "of a deleted pod is not accepted"
    )


async def test_a_pod_without_uid_counts_as_gone() -> None:
    with pytest.raises(TokenRejected, match="no longer exists; a token"):
        await reread(FakeApi(), pod(None, "api"))
    with pytest.raises(TokenRejected, match="no longer exists; a token"):
        await reread(FakeApi(), k8s.V1Pod(metadata=None, spec=None))


async def test_the_pod_must_run_as_the_tokens_service_account() -> None:
    api = FakeApi()
    with pytest.raises(TokenRejected) as caught:
        await reread(api, pod(UID, "admin"))
    assert str(caught.value) == "pod shop/api-7d9 runs as ServiceAccount 'admin', not 'api'"


async def test_a_pod_without_a_service_account_name_runs_as_default() -> None:
    api = FakeApi()
    api.answer = review_status(status(username="system:serviceaccount:shop:default"))
    identity = await reread(api, pod(UID, None))
    assert identity.service_account == "default"
    api = FakeApi()
    with pytest.raises(TokenRejected, match="runs as ServiceAccount 'default', not 'api'"):
        await reread(api, pod(UID, None))


async def test_a_pod_without_spec_runs_as_no_service_account() -> None:
    api = FakeApi()
    bare = k8s.V1Pod(metadata=k8s.V1ObjectMeta(uid=UID), spec=None)
    with pytest.raises(TokenRejected, match="runs as ServiceAccount '', not 'api'"):
        await reread(api, bare)


async def test_accepted_reviews_are_remembered_for_review_ttl() -> None:
    clock, api = HandClock(), FakeApi()
    tokens = reviewer(api, clock, review_ttl=10.0, pod_ttl=1000.0)
    await tokens.verify(TOKEN)
    clock.now += 9.9
    await tokens.verify(TOKEN)
    assert len(api.reviews) == 1
    clock.now += 0.1
    await tokens.verify(TOKEN)
    assert len(api.reviews) == 2


async def test_reviews_are_kept_per_token_by_digest() -> None:
    clock, api = HandClock(), FakeApi()
    tokens = reviewer(api, clock)
    await tokens.verify(TOKEN)
    await tokens.verify(TOKEN + "x")
    assert [r["token"] for r in api.reviews] == [TOKEN, TOKEN + "x"]
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    assert tokens._reviews.peek(digest) == IDENTITY
    assert tokens._reviews.peek(TOKEN) is None


async def test_the_default_lifetimes_are_300_s_for_reviews_and_30_s_for_pods() -> None:
    """Issue 18: a pod refreshing every 10 s costs a TokenReview per 5 min, a pod read per
    30 s; a deleted pod's token stops working within 30 s."""
    clock, api = HandClock(), FakeApi()
    tokens = TokenReviewer(None, clock=clock, reviews=api, pods=api)
    await tokens.verify(TOKEN)
    clock.now += 19.9  # the review's pod check may be 10 s old (the API server's cache)
    await tokens.verify(TOKEN)
    assert (len(api.reviews), len(api.reads)) == (1, 0)
    clock.now += 0.1
    await tokens.verify(TOKEN)
    assert (len(api.reviews), len(api.reads)) == (1, 1)
    clock.now += 29.9
    await tokens.verify(TOKEN)
    assert (len(api.reviews), len(api.reads)) == (1, 1)
    clock.now += 0.1
    await tokens.verify(TOKEN)
    assert (len(api.reviews), len(api.reads)) == (1, 2)
    clock.now += 250  # 300 s after the review: a new review checks the pod again
    await tokens.verify(TOKEN)
    assert (len(api.reviews), len(api.reads)) == (2, 2)
    api.pods.clear()
    clock.now += 30
    with pytest.raises(TokenRejected, match="no longer exists"):
        await tokens.verify(TOKEN)


async def test_an_acceptance_is_never_remembered_past_the_tokens_expiry() -> None:
    clock, api, now = HandClock(), FakeApi(), 1_900_000_000.0
    token = projected_token(exp=int(now) + 100)
    tokens = reviewer(api, clock, wall_clock=lambda: now, pod_ttl=1000.0)
    await tokens.verify(token)
    clock.now += 99.9
    await tokens.verify(token)
    assert len(api.reviews) == 1
    clock.now += 0.1  # 100 s: the token's own expiry, not the 300 s
    await tokens.verify(token)
    assert len(api.reviews) == 2
    expired = projected_token(exp=int(now) - 30)  # within the 60 s skew: reviewed, not kept
    await tokens.verify(expired)
    await tokens.verify(expired)
    assert len(api.reviews) == 4


async def test_a_rejected_token_costs_one_review_for_reject_ttl() -> None:
    """Issue 15, case 5: the same garbage sent again was one TokenReview each time."""
    clock, api = HandClock(), FakeApi()
    api.answer = review_status(status(authenticated=False, error="invalid  signature"))
    tokens = reviewer(api, clock, reject_ttl=30.0)
    for _ in range(3):
        with pytest.raises(TokenRejected) as caught:
            await tokens.verify(TOKEN)
        assert "(invalid signature)" in str(caught.value)
    clock.now += 29.9
    with pytest.raises(TokenRejected):
        await tokens.verify(TOKEN)
    assert len(api.reviews) == 1
    clock.now += 0.1
    with pytest.raises(TokenRejected):
        await tokens.verify(TOKEN)
    assert len(api.reviews) == 2
    assert api.reads == []
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    assert isinstance(tokens._reviews.peek(digest), str)
    assert tokens._reviews.peek(TOKEN) is None  # remembered by digest, never the token


async def test_a_rejection_is_remembered_per_token_and_an_acceptance_is_not_shadowed() -> None:
    api = FakeApi()
    tokens = reviewer(api, HandClock())
    api.answer = review_status(status(authenticated=False))
    with pytest.raises(TokenRejected):
        await tokens.verify(TOKEN)
    api.answer = review_status(status())
    other = projected_token(sub="another")
    assert await tokens.verify(other) == IDENTITY
    assert [r["token"] for r in api.reviews] == [TOKEN, other]


async def test_the_default_rejection_lifetime_is_30_s() -> None:
    clock, api = HandClock(), FakeApi()
    api.answer = review_status(status(authenticated=False))
    tokens = TokenReviewer(None, clock=clock, reviews=api, pods=api)
    assert tokens.reject_ttl == 30.0
    for seconds in (0.0, 29.9, 0.1):
        clock.now += seconds
        with pytest.raises(TokenRejected):
            await tokens.verify(TOKEN)
    assert len(api.reviews) == 2


async def test_pod_facts_are_remembered_for_pod_ttl_so_a_deletion_is_seen() -> None:
    clock, api = HandClock(), FakeApi()
    tokens = reviewer(api, clock, review_ttl=1000.0, pod_ttl=15.0)
    await tokens.verify(TOKEN)
    clock.now += 4.9
    await tokens.verify(TOKEN)  # the review's own check is at most 14.9 s old
    assert api.reads == []
    clock.now += 0.1
    await tokens.verify(TOKEN)  # at most 15 s old: read
    assert len(api.reads) == 1
    api.pods.clear()  # the pod is deleted ...
    clock.now += 14.9
    await tokens.verify(TOKEN)  # ... its facts are still remembered
    assert len(api.reads) == 1
    clock.now += 0.1
    with pytest.raises(TokenRejected, match="no longer exists"):
        await tokens.verify(TOKEN)
    assert len(api.reads) == 2


async def test_a_fresh_review_stands_for_a_pod_read_only_past_the_api_servers_cache() -> None:
    """The API server may answer a review from its 10 s cache of successes: with pod_ttl 10 s
    or less the review proves nothing fresh enough, and the pod is read at once."""
    assert API_SERVER_REVIEW_CACHE == 10.0
    api = FakeApi()
    await reviewer(api, HandClock(), pod_ttl=10.0).verify(TOKEN)
    assert len(api.reads) == 1
    api = FakeApi()
    clock = HandClock()
    tokens = reviewer(api, clock, pod_ttl=10.5)
    await tokens.verify(TOKEN)
    clock.now += 0.4
    await tokens.verify(TOKEN)
    assert api.reads == []
    clock.now += 0.1
    await tokens.verify(TOKEN)
    assert len(api.reads) == 1


async def test_a_fresh_review_of_a_pod_replaced_under_its_name_outdates_the_old_facts() -> None:
    """The old pod's facts are remembered; the new pod's token is reviewed: the new facts
    replace the old, so the old token (its review still remembered) is refused at once."""
    clock, api = HandClock(), FakeApi()
    tokens = reviewer(api, clock)
    await tokens.verify(TOKEN)
    clock.now += tokens.pod_ttl
    await tokens.verify(TOKEN)  # the old pod read and remembered
    api.answer = review_status(
        status(extra={POD_NAME_EXTRA: ["api-7d9"], POD_UID_EXTRA: ["new-uid"]})
    )
    assert (await tokens.verify(TOKEN + "2")).pod_uid == "new-uid"
    with pytest.raises(TokenRejected, match="another pod now has its name"):
        await tokens.verify(TOKEN)
    assert len(api.reads) == 1


async def test_pod_facts_are_kept_per_namespace_and_name() -> None:
    api = FakeApi()
    api.pods[("shop", "web-1")] = pod("web-uid", "api")
    clock = HandClock()
    tokens = reviewer(api, clock)
    await tokens.verify(TOKEN)
    api.answer = review_status(
        status(extra={POD_NAME_EXTRA: ["web-1"], POD_UID_EXTRA: ["web-uid"]})
    )
    assert (await tokens.verify(TOKEN + "2")).pod_name == "web-1"
    clock.now += tokens.pod_ttl
    await tokens.verify(TOKEN)
    assert (await tokens.verify(TOKEN + "2")).pod_name == "web-1"
    assert [(r["namespace"], r["name"]) for r in api.reads] == [
        ("shop", "api-7d9"),
        ("shop", "web-1"),
    ]


async def test_an_api_error_on_the_review_is_unavailable_not_a_rejection() -> None:
    api = FakeApi()
    api.review_fails = ApiException(status=500, reason="Internal Server Error")
    tokens = reviewer(api, HandClock())
    with pytest.raises(KubernetesUnavailable) as caught:
        await tokens.verify(TOKEN)
    assert str(caught.value) == (
        "the Kubernetes API could not review the token (HTTP 500 Internal Server Error)"
    )
    api.review_fails = ConnectionResetError("peer reset")
    with pytest.raises(KubernetesUnavailable) as caught:
        await tokens.verify(TOKEN)
    assert str(caught.value) == (
        "the Kubernetes API could not be reached to review the token (ConnectionResetError)"
    )
    api.review_fails = None
    assert await tokens.verify(TOKEN) == IDENTITY  # the failure was not remembered


async def test_an_api_error_on_the_pod_read_is_unavailable_not_a_rejection() -> None:
    api, clock = FakeApi(), HandClock()
    tokens = reviewer(api, clock)
    await tokens.verify(TOKEN)
    clock.now += tokens.pod_ttl
    api.read_fails = ApiException(status=403, reason="Forbidden")
    with pytest.raises(KubernetesUnavailable) as caught:
        await tokens.verify(TOKEN)
    assert str(caught.value) == (
        "the Kubernetes API could not read pod shop/api-7d9 (HTTP 403 Forbidden); the injector "
        "needs get on pods"
    )
    api.read_fails = TimeoutError()
    with pytest.raises(KubernetesUnavailable) as caught:
        await tokens.verify(TOKEN)
    assert str(caught.value) == (
        "the Kubernetes API could not be reached to read pod shop/api-7d9 (TimeoutError)"
    )
    api.read_fails = None
    assert await tokens.verify(TOKEN) == IDENTITY


# --- through the real kubernetes client, over HTTP to a stub API ---


async def test_the_reviewer_uses_the_api_client_it_is_given() -> None:
    stub = StubApi(token_status=status())
    stub.pods[("shop", "api-7d9")] = {
        "metadata": {"name": "api-7d9", "namespace": "shop", "uid": UID},
        "spec": {"containers": [], "serviceAccountName": "api"},
    }
    with stub_api_server(stub) as api:
        identity = await TokenReviewer(api, pod_ttl=0.0).verify(TOKEN)  # 0: always read
    assert identity == IDENTITY
    (method, path, body), read = stub.requests
    assert (method, path) == ("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert body["spec"] == {"token": TOKEN, "audiences": [AUDIENCE]}
    assert read == ("GET", "/api/v1/namespaces/shop/pods/api-7d9", None)


# --- what cannot be a projected token for us never costs a TokenReview (issue 15, case 5) ---


def _segment(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


HEADER = _segment(b'{"alg":"RS256"}')
NOT_A_JWT = (
    "the bearer token is not a JWT (three base64url parts with a JSON header and payload); "
    "send the pod's projected ServiceAccount token"
)
GARBAGE: dict[str, tuple[str, str]] = {
    "one part": ("garbage", NOT_A_JWT),
    "two parts": ("a.b", NOT_A_JWT),
    "four parts": (TOKEN + ".x", NOT_A_JWT),
    "not base64": ("%%%.%%%.%%%", NOT_A_JWT),
    "header not JSON": (f"{_segment(b'alg')}.{_segment(b'{}')}.sig", NOT_A_JWT),
    "payload not JSON": (f"{HEADER}.{_segment(b'aud')}.sig", NOT_A_JWT),
    "payload a list": (f"{HEADER}.{_segment(b'[1]')}.sig", NOT_A_JWT),
    "no audience": (projected_token(aud=None), "not for audience 'sakura-secrets-injector'"),
    "another audience": (projected_token(aud=["api"]), "not for audience"),
    "an audience that contains ours": (projected_token(aud="sakura-secrets-injector-x"), "for"),
    "audience a number": (projected_token(aud=7), "not for audience"),
    "no expiry": (
        projected_token(exp=None),
        "the token has no expiry; use the projected token the injector mounts "
        "(serviceAccountToken volume), not a long-lived ServiceAccount Secret token",
    ),
    "expiry a string": (projected_token(exp="2100"), "has no expiry"),
    "expiry a boolean": (projected_token(exp=True), "has no expiry"),
    "expired": (
        projected_token(exp=NOW - CLOCK_SKEW),
        "the token has expired; read the projected token file again before each request "
        "(the kubelet renews it)",
    ),
}


@pytest.mark.parametrize("case", GARBAGE)
async def test_garbage_is_refused_before_any_token_review(case: str) -> None:
    token, message = GARBAGE[case]
    api = FakeApi()
    with pytest.raises(TokenRejected) as caught:
        await reviewer(api, HandClock(), wall_clock=lambda: NOW).verify(token)
    assert message in str(caught.value)
    if message.startswith("the "):
        assert str(caught.value) == message
    assert token not in str(caught.value)
    assert api.reviews == [] and api.reads == []


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "sakura-secrets-injector"},
        {"aud": ["https://kubernetes.default.svc", "sakura-secrets-injector"]},
        {"exp": NOW - CLOCK_SKEW + 1},  # within the clock skew allowed
        {"exp": NOW + 0.5},
    ],
)
async def test_a_well_formed_token_for_us_is_reviewed(claims: dict[str, Any]) -> None:
    api = FakeApi()
    tokens = reviewer(api, HandClock(), wall_clock=lambda: NOW)
    assert await tokens.verify(projected_token(**claims)) == IDENTITY
    assert len(api.reviews) == 1


async def test_the_expiry_is_read_on_the_wall_clock() -> None:
    api = FakeApi()
    tokens = TokenReviewer(None, reviews=api, pods=api)
    with pytest.raises(TokenRejected, match="has expired"):
        await tokens.verify(projected_token(exp=time.time() - CLOCK_SKEW - 5))
    await tokens.verify(projected_token(exp=time.time() + 600))
    assert len(api.reviews) == 1


async def test_reviews_wait_in_the_clients_lane_and_pod_reads_in_the_namespaces() -> None:
    api, calls = FakeApi(), RecordingCalls()
    tokens = TokenReviewer(None, reviews=api, pods=api, calls=calls, pod_ttl=0.0)
    await tokens.verify(TOKEN, client="10.1.2.3")
    assert calls.lanes == [("client", "10.1.2.3"), ("namespace", "shop")]
    await TokenReviewer(None, reviews=api, pods=api, calls=calls).verify(TOKEN)
    assert calls.lanes[2] == ("client", "")


async def test_a_full_lane_is_kubernetes_unavailable() -> None:
    api, calls = FakeApi(), RecordingCalls()
    release = threading.Event()
    lane = ("client", "10.1.2.3")
    blocked = [asyncio.ensure_future(calls.run(lane, release.wait)) for _ in range(5)]
    await asyncio.sleep(0)
    tokens = TokenReviewer(None, reviews=api, pods=api, calls=calls)
    try:
        with pytest.raises(KubernetesUnavailable) as caught:
            await tokens.verify(TOKEN, client="10.1.2.3")
        assert api.reviews == []
    finally:
        release.set()
    await asyncio.gather(*blocked)
    assert str(caught.value) == (
        "too many Kubernetes API calls of the same namespace or client are waiting; "
        "try again shortly"
    )


def test_the_pool_of_kubernetes_calls() -> None:
    calls = kubernetes_calls()
    assert (calls.name, calls.workers, calls.per_key) == ("kubernetes", 8, 2)
    assert (calls.waiting_per_key, calls.max_waiting) == (64, 1024)
    assert KUBE_PER_KEY == 2
