"""The admission's broker check on the access reviewer's recording fake and a fake Sakura.

test_broker_admission.py runs the same check against the local cluster's RBAC and the
emulator; these pin each outcome and its exact text: a refused grant before any Sakura call,
a missing secret or version named with the annotations that ask for it, and admission with a
warning (never a denial) when Kubernetes or Sakura cannot answer.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from kubernetes import client as k8s
from support.broker_fakes import A, B, FakeSakura, RecordingReviews
from support.clock import HandClock

from contract import Broker, Direct, FileSpec, Plan, SecretRef
from injector.broker.access import AccessReviewer
from injector.broker.admission_check import BrokerAdmissionCheck
from injector.broker.inventory import VaultInventory
from injector.webhook.checks import CheckOutcome
from injector.webhook.decision import ReasonCode
from sakura import NotFound, Unauthorized, Unavailable

P = "sakura-secrets.io/"


GRANTS = {("vaults", A), ("secrets", f"{A}/db"), ("secrets", f"{A}/api")}


def check(
    reviews: RecordingReviews,
    sakura: FakeSakura,
    clock: HandClock | None = None,
    *,
    timeout: float = 4.0,
) -> BrokerAdmissionCheck:
    clock = clock if clock is not None else HandClock()
    access = AccessReviewer(None, reviews=reviews, clock=clock)
    return BrokerAdmissionCheck(access, VaultInventory(sakura, clock=clock), timeout=timeout)


def plan(*files: FileSpec, vault_id: str = A, mode: str = "broker") -> Plan:
    how = Broker() if mode == "broker" else Direct("sakura-creds")
    return Plan(files=files, directory="/sakura/secrets", vault_id=vault_id, uid=1, gid=1, mode=how)


def secret_file(name: str, ref: str) -> FileSpec:
    return FileSpec(name=name, mode=0o400, secret=SecretRef.parse(ref))


def template_file(name: str, *refs: str) -> FileSpec:
    parsed = tuple(SecretRef.parse(r) for r in refs)
    text = "".join(f'{{{{ secret("{r}") }}}}' for r in refs)
    return FileSpec(name=name, mode=0o400, template=text, template_refs=parsed)


async def test_granted_and_existing_secrets_are_admitted_in_the_namespaces_turn() -> None:
    reviews, sakura = RecordingReviews(GRANTS), FakeSakura()
    sakura.values[(A, "api")] = ["k"]
    outcome = await check(reviews, sakura)("shop", "app", plan(secret_file("db", "db@2")))
    assert outcome == CheckOutcome()
    sent = [(r["namespace"], r["resource"], r["name"]) for r in reviews.sent]
    assert sent == [("shop", "vaults", A), ("shop", "secrets", f"{A}/db")]  # the vault first
    assert sakura.tenants == [("list", "shop")]  # one listing, no unveil, the pod's namespace


async def test_direct_mode_is_not_checked() -> None:
    reviews, sakura = RecordingReviews(set()), FakeSakura()
    outcome = await check(reviews, sakura)(
        "shop", "app", plan(secret_file("db", "db"), mode="direct")
    )
    assert outcome == CheckOutcome() and reviews.sent == [] and sakura.tenants == []


@pytest.mark.parametrize(
    ("grants", "first"),
    [
        ({("secrets", f"{A}/db")}, f'may not get sakura-secrets.io vaults "{A}"'),
        ({("vaults", A)}, f'may not get sakura-secrets.io secrets "{A}/db"'),
        ({("vaults", B), ("secrets", f"{A}/db")}, f'may not get sakura-secrets.io vaults "{A}"'),
        ({("vaults", A), ("secrets", "db")}, f'may not get sakura-secrets.io secrets "{A}/db"'),
        (
            {("vaults", A), ("secrets", f"{B}/db")},
            f'may not get sakura-secrets.io secrets "{A}/db"',
        ),
    ],
    ids=["no-vault", "no-pair", "other-vault", "bare-name", "other-vaults-pair"],
)
async def test_a_missing_grant_is_denied_before_sakura_is_asked(
    grants: set[tuple[str, str]], first: str
) -> None:
    sakura = FakeSakura()
    outcome = await check(RecordingReviews(grants), sakura)(
        "shop", "app", plan(secret_file("db", "db"))
    )
    assert outcome.denial is not None and outcome.warnings == ()
    assert outcome.denial.startswith(f"serviceaccount shop/app {first}; grant it with a Role")
    assert sakura.tenants == []  # a refused pod learns nothing of the vault


async def test_a_pod_granted_two_pairs_is_denied_the_cross_pair() -> None:
    """Granted A/db and B/stripe: db from B is denied at admission, naming the pair B/db."""
    grants = {("vaults", A), ("vaults", B), ("secrets", f"{A}/db"), ("secrets", f"{B}/stripe")}
    reviews, sakura = RecordingReviews(grants), FakeSakura()
    sakura.values[(B, "stripe")] = ["s"]
    admission = check(reviews, sakura)
    cross = plan(secret_file("db", "db"), secret_file("key", "stripe"), vault_id=B)
    assert await admission("shop", "app", cross) == CheckOutcome(
        denial=f'serviceaccount shop/app may not get sakura-secrets.io secrets "{B}/db"; grant '
        "it with a Role/RoleBinding (verb get, apiGroup sakura-secrets.io, resource secrets, "
        f"resourceName {B}/db), e.g. the rule {{apiGroups: [sakura-secrets.io], resources: "
        f'[secrets], resourceNames: ["{B}/db"], verbs: [get]}}'
    )
    assert sakura.tenants == []
    assert await admission("shop", "app", plan(secret_file("db", "db"))) == CheckOutcome()
    only_b = plan(secret_file("key", "stripe"), vault_id=B)
    assert await admission("shop", "app", only_b) == CheckOutcome()


async def test_a_namespace_without_the_vault_grant_costs_one_review() -> None:
    """However many secrets the pod names, only the vault is reviewed, then the pod denied."""
    reviews, sakura = RecordingReviews(set()), FakeSakura()
    files = tuple(secret_file(f"f{i}", f"s{i}") for i in range(40))
    outcome = await check(reviews, sakura)("shop", "app", plan(*files))
    assert outcome == CheckOutcome(
        denial=f'serviceaccount shop/app may not get sakura-secrets.io vaults "{A}"; grant it '
        "with a Role/RoleBinding (verb get, apiGroup sakura-secrets.io, resource vaults, "
        f"resourceName {A}), e.g. the rule {{apiGroups: [sakura-secrets.io], resources: "
        f'[vaults], resourceNames: ["{A}"], verbs: [get]}}; each secret also needs the grant '
        f'of its pair (secrets "{A}/NAME"), checked once the vault is granted'
    )
    assert [(r["resource"], r["name"]) for r in reviews.sent] == [("vaults", A)]
    assert sakura.tenants == []


async def test_kubernetes_failing_admits_with_a_warning_and_no_existence_check() -> None:
    reviews, sakura = RecordingReviews(GRANTS), FakeSakura()
    reviews.fail = k8s.ApiException(status=500, reason="Internal Server Error")
    outcome = await check(reviews, sakura)("shop", "app", plan(secret_file("db", "nope")))
    assert outcome.denial is None and len(outcome.warnings) == 1
    warning = outcome.warnings[0]
    assert warning.startswith("could not check access to the secrets now (")
    assert warning.endswith("); the injector checks access and existence again when the pod starts")
    assert sakura.tenants == []  # unauthorized: existence is nobody's business


async def test_kubernetes_not_answering_within_the_budget_admits_with_a_warning() -> None:
    reviews, sakura = RecordingReviews(GRANTS), FakeSakura()
    reviews.delay = 0.5  # the check stops waiting at 0.05 s
    outcome = await check(reviews, sakura, timeout=0.05)(
        "shop", "app", plan(secret_file("db", "db"))
    )
    assert outcome.warnings == (
        "could not check access to the secrets now (no answer within 0.05s); the injector "
        "checks access and existence again when the pod starts",
    )
    assert sakura.tenants == []


async def test_a_missing_secret_is_denied_naming_the_annotations_that_ask_for_it() -> None:
    files = (secret_file("a", "gone#k"), template_file("b", "db", "gone"), secret_file("c", "db"))
    outcome = await check(RecordingReviews({*GRANTS, ("secrets", f"{A}/gone")}), FakeSakura())(
        "shop", "app", plan(*files)
    )
    assert outcome == CheckOutcome(
        denial=f"annotation {P}secret-a, {P}template-b asks for secret 'gone', which does not "
        f"exist in vault {A}; create it in Sakura's Secret Manager or fix the name",
        reason_code=ReasonCode.SECRET_MISSING,
    )


async def test_a_version_past_the_latest_is_denied_without_naming_the_latest() -> None:
    outcome = await check(RecordingReviews(GRANTS), FakeSakura())(
        "shop", "app", plan(secret_file("db", "db@3"))
    )
    assert outcome == CheckOutcome(
        denial=f"annotation {P}secret-db asks for version 3 of secret 'db', which does not "
        f"exist in vault {A}; pin an existing version or drop the @VERSION",
        reason_code=ReasonCode.SECRET_MISSING,
    )
    assert outcome.denial is not None and "2" not in outcome.denial.replace(A, "")


async def test_a_listing_that_lacks_a_secret_is_trusted_only_for_the_negative_ttl() -> None:
    grants = {*GRANTS, ("secrets", f"{A}/new")}
    reviews, sakura, clock = RecordingReviews(grants), FakeSakura(), HandClock()
    admission = check(reviews, sakura, clock)
    wanted = plan(secret_file("new", "new"))
    assert (await admission("shop", "app", wanted)).denial is not None
    sakura.values[(A, "new")] = ["v"]  # created in Sakura just after
    assert (await admission("shop", "app", wanted)).denial is not None  # a young listing
    assert sakura.listings == [A]
    clock.now += 11  # past the negative TTL (10 s), within the listing's 30 s
    assert await admission("shop", "app", wanted) == CheckOutcome()
    assert sakura.listings == [A, A]
    assert sakura.tenants == [("list", "shop"), ("list", "shop")]  # the recheck too
    assert await admission("shop", "app", plan(secret_file("db", "db"))) == CheckOutcome()
    assert sakura.listings == [A, A]  # a listing that has the secret is trusted its whole TTL


async def test_a_missing_vault_is_denied_with_the_fix() -> None:
    sakura = FakeSakura()
    sakura.fail = NotFound("no such vault", kind="vault", name=A)
    outcome = await check(RecordingReviews(GRANTS), sakura)(
        "shop", "app", plan(secret_file("db", "db"))
    )
    assert outcome == CheckOutcome(
        denial=f"vault {A} does not exist (or the injector's API key cannot see it); fix the "
        f"{P}vault-id annotation",
        reason_code=ReasonCode.SECRET_MISSING,
    )


async def test_another_not_found_while_listing_admits_with_a_warning() -> None:
    sakura = FakeSakura()
    sakura.fail = NotFound("reading: secret 'x' not found", kind="secret", name="x")
    outcome = await check(RecordingReviews(GRANTS), sakura)(
        "shop", "app", plan(secret_file("db", "db"))
    )
    assert outcome == CheckOutcome(
        warnings=("the secrets could not be listed (reading: secret 'x' not found)",)
    )


async def test_a_rejected_key_admits_with_a_warning_for_the_operator(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sakura = FakeSakura()
    sakura.fail = Unauthorized("listing: HTTP 401", status=401)
    with caplog.at_level(logging.WARNING, logger="injector.broker.admission_check"):
        outcome = await check(RecordingReviews(GRANTS), sakura)(
            "shop", "app", plan(secret_file("db", "db"))
        )
    assert outcome == CheckOutcome(
        warnings=(
            "Sakura rejected the injector's credentials (listing: HTTP 401); the pod is "
            "admitted, but its init container cannot fetch until the injector's operator "
            "fixes the injector's API key",
        )
    )
    assert caplog.messages == ["admitting without the existence check: listing: HTTP 401"]


async def test_sakura_unreachable_admits_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    sakura = FakeSakura()
    sakura.fail = Unavailable("listing: cannot reach Sakura")
    with caplog.at_level(logging.WARNING, logger="injector.broker.admission_check"):
        outcome = await check(RecordingReviews(GRANTS), sakura)(
            "shop", "app", plan(secret_file("db", "db"))
        )
    assert outcome == CheckOutcome(
        warnings=(
            "Sakura could not be reached to check that the secrets exist (listing: cannot reach "
            "Sakura); the pod is admitted and its init container reports any missing secret",
        )
    )
    assert caplog.messages == [
        "admitting without the existence check: listing: cannot reach Sakura"
    ]


async def test_a_listing_slower_than_the_budget_admits_with_a_warning() -> None:
    sakura = FakeSakura()
    sakura.list_gate = asyncio.Event()  # never set: the listing never answers
    outcome = await check(RecordingReviews(GRANTS), sakura, timeout=0.05)(
        "shop", "app", plan(secret_file("db", "db"))
    )
    assert outcome == CheckOutcome(
        warnings=(
            "Sakura could not be reached to check that the secrets exist (no answer within "
            "0.05s); the pod is admitted and its init container reports any missing secret",
        )
    )


async def test_the_listing_gets_only_what_rbac_left_of_the_one_budget() -> None:
    """RBAC takes 0.6 s of a 1 s budget (the vault, then the pair: 0.3 s each); the listing
    must answer within the 0.4 s left.

    The listing is released at 1.3 s on the loop's clock, after the budget's end at 1 s; a
    check that gave the listing a budget of its own would admit without a warning. (Real
    time, with margins: RBAC's two 0.3 s sleeps in worker threads may run 0.4 s late.)
    """
    reviews, sakura = RecordingReviews(GRANTS), FakeSakura()
    reviews.delay = 0.3
    sakura.list_gate = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_at(loop.time() + 1.3, sakura.list_gate.set)
    outcome = await check(reviews, sakura, timeout=1.0)(
        "shop", "app", plan(secret_file("db", "db"))
    )
    assert outcome.warnings == (
        "Sakura could not be reached to check that the secrets exist (no answer within 1s); "
        "the pod is admitted and its init container reports any missing secret",
    )


def test_the_default_budget_leaves_room_within_the_webhooks_timeout() -> None:
    """The API server gives up on the webhook after timeoutSeconds (then failurePolicy)."""
    import yaml

    from injector.broker.tuning import BrokerTuning

    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / "manifests/base/mutatingwebhookconfiguration.yaml").read_text())
    timeout = min(w["timeoutSeconds"] for w in config["webhooks"])
    assert 0 < BrokerTuning().admission_timeout <= timeout / 2
