"""The access reviewer against a recording fake of the API: what it asks, what it remembers.

The real-server tests (test_broker_http.py, test_broker_admission.py) prove the same grants
against a real API server's RBAC; these pin down the exact SubjectAccessReviews sent (user,
groups, verb, group, resource, name, namespace) and the cache lifetimes on a hand-driven clock.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from support.broker_fakes import RecordingCalls, RecordingReviews
from support.clock import HandClock
from support.stub_kube_api import StubApi, stub_api_server
from support.values import OTHER_VAULT, VAULT

from injector.broker.access import AccessReviewer, Missing, Subject
from injector.kube import KUBE_PER_KEY, KubernetesUnavailable


def reviewer(reviews: RecordingReviews, clock: HandClock) -> AccessReviewer:
    return AccessReviewer(
        None, allow_ttl=30, deny_ttl=5, request_timeout=2.5, clock=clock, reviews=reviews
    )


SUBJECT = Subject(
    "shop", "api", ("system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated")
)
"""Spelled out: `Subject.of` at import time would run before any mutant is switched on."""


def test_a_service_accounts_subject_has_the_groups_kubernetes_gives_it() -> None:
    assert Subject.of("shop", "api") == SUBJECT
    assert Subject.of("shop", "api").username == "system:serviceaccount:shop:api"


COMMON = {
    "user": "system:serviceaccount:shop:api",
    "groups": ["system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"],
    "verb": "get",
    "group": "sakura-secrets.io",
    "namespace": "shop",
    "timeout": 2.5,
}


async def test_it_reviews_the_vault_first_then_each_secret_by_its_pair() -> None:
    reviews = RecordingReviews({("vaults", VAULT), ("secrets", f"{VAULT}/db")})
    missing = await reviewer(reviews, HandClock()).missing(SUBJECT, VAULT, ["db", "api", "db"])
    assert missing == Missing(SUBJECT, VAULT, vault=False, secrets=("api",))
    assert reviews.sent[0] == {**COMMON, "resource": "vaults", "name": VAULT}
    assert sorted(reviews.sent[1:], key=lambda r: r["name"]) == [
        {**COMMON, "resource": "secrets", "name": f"{VAULT}/api"},
        {**COMMON, "resource": "secrets", "name": f"{VAULT}/db"},
    ]


async def test_without_the_vault_grant_one_review_is_made_and_no_secret_is_reviewed() -> None:
    """A namespace with no grant costs the API server one review, not one per name."""
    reviews = RecordingReviews({("secrets", f"{OTHER_VAULT}/db")})
    names = [f"name-{i}" for i in range(100)]
    missing = await reviewer(reviews, HandClock()).missing(SUBJECT, OTHER_VAULT, names)
    assert missing == Missing(SUBJECT, OTHER_VAULT, vault=True)
    assert reviews.sent == [{**COMMON, "resource": "vaults", "name": OTHER_VAULT}]


async def test_grants_never_combine_across_vaults() -> None:
    """Granted VAULT/db and OTHER_VAULT/stripe (and both vaults): db in OTHER_VAULT stays closed."""
    reviews = RecordingReviews(
        {
            ("vaults", VAULT),
            ("vaults", OTHER_VAULT),
            ("secrets", f"{VAULT}/db"),
            ("secrets", f"{OTHER_VAULT}/stripe"),
        }
    )
    access = reviewer(reviews, HandClock())
    assert not await access.missing(SUBJECT, VAULT, ["db"])
    assert not await access.missing(SUBJECT, OTHER_VAULT, ["stripe"])
    cross = await access.missing(SUBJECT, OTHER_VAULT, ["db", "stripe"])
    assert cross == Missing(SUBJECT, OTHER_VAULT, secrets=("db",))
    assert cross.message() == (
        'serviceaccount shop/api may not get sakura-secrets.io secrets "110000000002/db"; '
        "grant it with a Role/RoleBinding (verb get, apiGroup sakura-secrets.io, resource "
        "secrets, resourceName 110000000002/db), e.g. the rule {apiGroups: "
        '[sakura-secrets.io], resources: [secrets], resourceNames: ["110000000002/db"], '
        "verbs: [get]}"
    )
    assert Missing(SUBJECT, VAULT, secrets=("stripe",)) == await access.missing(
        SUBJECT, VAULT, ["stripe"]
    )


async def test_a_name_grant_without_the_vault_grant_opens_nothing() -> None:
    reviews = RecordingReviews({("vaults", VAULT), ("secrets", f"{OTHER_VAULT}/db")})
    access = reviewer(reviews, HandClock())
    missing = await access.missing(SUBJECT, OTHER_VAULT, ["db"])
    assert missing == Missing(SUBJECT, OTHER_VAULT, vault=True)
    assert missing.message().startswith(
        'serviceaccount shop/api may not get sakura-secrets.io vaults "110000000002"; '
    )
    assert 'resources: [vaults], resourceNames: ["110000000002"]' in missing.message()
    assert await access.missing(SUBJECT, VAULT, ["db"]) == Missing(SUBJECT, VAULT, secrets=("db",))


async def test_the_old_cross_product_of_vault_and_name_grants_opens_nothing() -> None:
    """The issue's case: vaults VAULT and OTHER_VAULT, names `db` and `stripe` granted apart.

    Authorized separately, they opened `db` in OTHER_VAULT; bare names are no pairs, so they open
    no secret anywhere now.
    """
    reviews = RecordingReviews(
        {("vaults", VAULT), ("vaults", OTHER_VAULT), ("secrets", "db"), ("secrets", "stripe")}
    )
    access = reviewer(reviews, HandClock())
    assert await access.missing(SUBJECT, OTHER_VAULT, ["db"]) == Missing(
        SUBJECT, OTHER_VAULT, secrets=("db",)
    )
    assert await access.missing(SUBJECT, VAULT, ["db"]) == Missing(SUBJECT, VAULT, secrets=("db",))


async def test_the_secret_grant_is_not_a_vault_grant_of_the_same_name() -> None:
    """A secret named like the vault ID opens nothing: resource and name are checked together."""
    reviews = RecordingReviews({("secrets", VAULT), ("secrets", f"{VAULT}/db")})
    missing = await reviewer(reviews, HandClock()).missing(SUBJECT, VAULT, ["db"])
    assert missing.vault


def test_messages_name_every_missing_grant() -> None:
    assert Missing(SUBJECT, VAULT, vault=True).message() == (
        'serviceaccount shop/api may not get sakura-secrets.io vaults "110000000001"; grant it '
        "with a Role/RoleBinding (verb get, apiGroup sakura-secrets.io, resource vaults, "
        "resourceName 110000000001), e.g. the rule {apiGroups: [sakura-secrets.io], resources: "
        '[vaults], resourceNames: ["110000000001"], verbs: [get]}; each secret also needs the '
        'grant of its pair (secrets "110000000001/NAME"), checked once the vault is granted'
    )
    one = Missing(SUBJECT, VAULT, secrets=("a",))
    assert one and one.message().endswith('resourceNames: ["110000000001/a"], verbs: [get]}')
    two = Missing(SUBJECT, VAULT, secrets=("a", "b"))
    assert two.message().endswith(
        'verbs: [get]}; the same grant is also missing for "110000000001/b"'
    )
    names = Missing(SUBJECT, VAULT, secrets=("a", "b", "c"))
    assert names.message().startswith(
        'serviceaccount shop/api may not get sakura-secrets.io secrets "110000000001/a"; grant '
        "it with a Role/RoleBinding (verb get, apiGroup sakura-secrets.io, resource secrets, "
        "resourceName 110000000001/a)"
    )
    assert names.message().endswith(
        '; the same grant is also missing for "110000000001/b", "110000000001/c"'
    )
    assert not Missing(SUBJECT, VAULT)


def test_a_rule_quotes_a_name_as_yaml_can_read_it() -> None:
    """Sakura names may hold quotes, backslashes and any letter: the printed rule stays valid
    YAML, and a name is printed as written (not as `\\u00fc` escapes)."""
    import yaml

    text = Missing(SUBJECT, VAULT, secrets=('say "hi"\\ü', "clé")).message()
    rule = text[text.index("e.g. the rule ") + len("e.g. the rule ") : text.index("; the same")]
    assert yaml.safe_load(rule)["resourceNames"] == [f'{VAULT}/say "hi"\\ü']
    assert f'resourceNames: ["{VAULT}/say \\"hi\\"\\\\ü"]' in rule
    assert text.endswith(f'; the same grant is also missing for "{VAULT}/clé"')


async def test_allows_are_remembered_longer_than_denials() -> None:
    clock = HandClock()
    reviews = RecordingReviews({("vaults", VAULT)})
    access = reviewer(reviews, clock)

    async def ask() -> tuple[bool, bool]:
        return (
            await access.allowed(SUBJECT, "vaults", VAULT),
            await access.allowed(SUBJECT, "secrets", "db"),
        )

    assert await ask() == (True, False)
    assert len(reviews.sent) == 2
    clock.now += 4.9
    assert await ask() == (True, False)
    assert len(reviews.sent) == 2  # both still remembered
    reviews.grants.add(("secrets", "db"))  # a new grant ...
    clock.now += 0.2  # ... is seen once the denial (5 s) expires
    assert await ask() == (True, True)
    assert [r["name"] for r in reviews.sent[2:]] == ["db"]
    reviews.grants.clear()  # a revoked grant ...
    clock.now += 24.8  # 29.9 s after the vault's allow
    assert await ask() == (True, True)
    assert len(reviews.sent) == 3
    clock.now += 0.2  # ... stops working once the allow (30 s) expires
    assert (await access.allowed(SUBJECT, "vaults", VAULT)) is False
    assert len(reviews.sent) == 4


async def test_answers_are_kept_per_subject_resource_and_name() -> None:
    reviews = RecordingReviews({("secrets", "db")})
    access = reviewer(reviews, HandClock())
    assert await access.allowed(SUBJECT, "secrets", "db")
    assert not await access.allowed(SUBJECT, "vaults", "db")
    assert await access.allowed(Subject.of("other", "api"), "secrets", "db")
    assert [(r["namespace"], r["resource"]) for r in reviews.sent] == [
        ("shop", "secrets"),
        ("shop", "vaults"),
        ("other", "secrets"),
    ]


async def test_an_api_failure_is_kubernetes_unavailable_and_not_remembered() -> None:
    reviews = RecordingReviews({("vaults", VAULT)})
    reviews.fail = ApiException(status=500, reason="Internal Server Error")
    access = reviewer(reviews, HandClock())
    with pytest.raises(KubernetesUnavailable) as caught:
        await access.missing(SUBJECT, VAULT, ["db"])
    assert str(caught.value) == (
        f"the Kubernetes API could not review access to vaults {VAULT!r} (HTTP 500 Internal "
        "Server Error); the injector needs create on subjectaccessreviews"
    )
    assert [r["resource"] for r in reviews.sent] == ["vaults"]  # the vault first, then stop
    reviews.fail = ConnectionRefusedError()
    with pytest.raises(KubernetesUnavailable) as caught:
        await access.allowed(SUBJECT, "secrets", f"{VAULT}/db")
    assert str(caught.value) == (
        "the Kubernetes API could not be reached to review access to secrets "
        "'110000000001/db' (ConnectionRefusedError)"
    )
    reviews.fail = None
    assert (await access.missing(SUBJECT, VAULT, [])) == Missing(SUBJECT, VAULT)


async def test_a_status_that_also_says_denied_is_a_denial() -> None:
    class Contradictory(RecordingReviews):
        def create_subject_access_review(
            self, body: k8s.V1SubjectAccessReview, **kwargs: Any
        ) -> k8s.V1SubjectAccessReview:
            return k8s.V1SubjectAccessReview(
                spec=body.spec, status=k8s.V1SubjectAccessReviewStatus(allowed=True, denied=True)
            )

    access = reviewer(Contradictory(set()), HandClock())
    assert not await access.allowed(SUBJECT, "vaults", VAULT)


async def test_the_default_lifetimes_are_30_s_for_an_allow_and_5_s_for_a_denial() -> None:
    clock = HandClock()
    reviews = RecordingReviews({("vaults", VAULT)})
    access = AccessReviewer(None, clock=clock, reviews=reviews)
    assert await access.allowed(SUBJECT, "vaults", VAULT)
    assert not await access.allowed(SUBJECT, "secrets", "db")
    clock.now += 4.9
    await access.allowed(SUBJECT, "secrets", "db")
    assert len(reviews.sent) == 2
    clock.now += 0.1
    await access.allowed(SUBJECT, "secrets", "db")
    assert [r["name"] for r in reviews.sent] == [VAULT, "db", "db"]
    clock.now += 24.9  # 29.9 s after the allow
    await access.allowed(SUBJECT, "vaults", VAULT)
    assert len(reviews.sent) == 3
    clock.now += 0.1
    await access.allowed(SUBJECT, "vaults", VAULT)
    assert [r["name"] for r in reviews.sent] == [VAULT, "db", "db", VAULT]
    assert reviews.sent[0]["timeout"] == 5.0


async def test_the_reviewer_uses_the_api_client_it_is_given() -> None:
    """Through the real kubernetes client over HTTP to a stub API server."""
    stub = StubApi(grants={("vaults", VAULT)})
    with stub_api_server(stub) as api:
        missing = await AccessReviewer(api).missing(SUBJECT, VAULT, ["db"])
    assert missing == Missing(SUBJECT, VAULT, secrets=("db",))
    sent = sorted(body["spec"]["resourceAttributes"]["resource"] for _, _, body in stub.requests)
    assert sent == ["secrets", "vaults"]
    assert {path for _, path, _ in stub.requests} == {
        "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    }
    assert stub.requests[0][2]["spec"]["user"] == "system:serviceaccount:shop:api"


class GatedReviews(RecordingReviews):
    """Holds every review of namespace `flood` until `release` is set; counts how many of
    them were held at once."""

    def __init__(self, grants: set[tuple[str, str]]) -> None:
        super().__init__(grants)
        self.release = threading.Event()
        self.held = 0
        self.most_held = 0
        self._count = threading.Lock()

    def create_subject_access_review(
        self, body: k8s.V1SubjectAccessReview, **kwargs: Any
    ) -> k8s.V1SubjectAccessReview:
        if body.spec.resource_attributes.namespace != "flood":
            return super().create_subject_access_review(body, **kwargs)
        with self._count:
            self.held += 1
            self.most_held = max(self.most_held, self.held)
        self.release.wait(60)
        with self._count:
            self.held -= 1
        return super().create_subject_access_review(body, **kwargs)


async def test_a_flooding_namespaces_reviews_do_not_hold_up_another_namespaces() -> None:
    """Issue 15, case 5: every review waited in asyncio's one shared pool (6 threads on two
    cores), so 40 slow reviews of one namespace held up everyone's. Now they hold at most
    KUBE_PER_KEY threads of the reviewer's own pool."""
    reviews = GatedReviews({("secrets", "db")})
    access = AccessReviewer(None, reviews=reviews)
    flood = Subject.of("flood", "api")
    floods = [asyncio.ensure_future(access.allowed(flood, "secrets", f"s{i}")) for i in range(40)]
    await asyncio.sleep(0)
    try:
        assert await asyncio.wait_for(access.allowed(SUBJECT, "secrets", "db"), 10)
        assert reviews.most_held == KUBE_PER_KEY
    finally:
        reviews.release.set()
    assert await asyncio.gather(*floods) == [False] * 40


async def test_each_review_waits_in_the_lane_of_the_subjects_namespace() -> None:
    calls = RecordingCalls()
    access = AccessReviewer(None, reviews=RecordingReviews({("vaults", VAULT)}), calls=calls)
    await access.missing(SUBJECT, VAULT, ["db"])
    assert calls.lanes == [("namespace", "shop")] * 2
