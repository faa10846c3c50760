"""The admission check and can-i: real SubjectAccessReviews, the emulator as Sakura."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from support.broker_world import (
    MISSING_VAULT,
    OTHER_VAULT,
    PAIRS_OF_CROSS,
    VAULT,
    World,
    plan_of,
    sakura_config,
)
from support.emulator import EmulatorHandle

from contract import FileSpec, Plan, SecretRef
from emulator.knobs import Fault
from injector.broker.can_i import run_can_i
from injector.broker.tuning import BrokerTuning
from injector.kube import api_client as kube_api_client
from injector.operations.wiring import BrokerParts, build_broker
from injector.webhook.checks import CheckOutcome

pytestmark = pytest.mark.cluster


def grant_text(ns: str, sa: str, name: str, resource: str = "secrets") -> str:
    """The refusal for one grant: `name` is the vault ID, or the pair `VAULT_ID/NAME`."""
    return (
        f'serviceaccount {ns}/{sa} may not get sakura-secrets.io {resource} "{name}"; grant it '
        f"with a Role/RoleBinding (verb get, apiGroup sakura-secrets.io, resource {resource}, "
        f"resourceName {name}), e.g. the rule {{apiGroups: [sakura-secrets.io], resources: "
        f'[{resource}], resourceNames: ["{name}"], verbs: [get]}}'
    )


@pytest.fixture
async def parts(emulator: EmulatorHandle, world: World) -> AsyncIterator[BrokerParts]:
    built = build_broker(
        sakura_config(emulator.url),
        kube_api_client=kube_api_client(os.environ["KUBECONFIG"]),
        tuning=BrokerTuning(sakura_deadline=1.0, sakura_retries=0, admission_timeout=3.0),
        registry=CollectorRegistry(),
    )
    yield built
    await built.aclose()


async def test_granted_and_existing_secrets_are_admitted(world: World, parts: BrokerParts) -> None:
    outcome = await parts.check(world.ns_a, "app", plan_of("db", "db@1#user", "api"))
    assert outcome == CheckOutcome()


async def test_secret_granted_only_in_another_namespace_is_denied(
    world: World, parts: BrokerParts
) -> None:
    outcome = await parts.check(world.ns_b, "app", plan_of("other", "db"))
    assert outcome.denial == grant_text(world.ns_b, "app", f"{VAULT}/db")


async def test_template_refs_are_checked_too(world: World, parts: BrokerParts) -> None:
    plan = Plan(
        files=(
            FileSpec(
                name="app.conf",
                mode=0o400,
                template='{{ secret("api") }}',
                template_refs=(SecretRef("api"),),
            ),
        ),
        directory="/sakura/secrets",
        vault_id=VAULT,
        uid=1,
        gid=1,
    )
    outcome = await parts.check(world.ns_b, "app", plan)
    assert outcome.denial == grant_text(world.ns_b, "app", f"{VAULT}/api")


async def test_missing_secret_is_denied_naming_the_annotation(
    world: World, parts: BrokerParts, emulator: EmulatorHandle
) -> None:
    outcome = await parts.check(world.ns_a, "app", plan_of("db", vault_id=OTHER_VAULT))
    assert outcome.denial is not None
    assert "annotation sakura-secrets.io/secret-f0 asks for secret 'db'" in outcome.denial
    assert f"does not exist in vault {OTHER_VAULT}" in outcome.denial


async def test_version_past_the_latest_is_denied_without_the_latest(
    world: World, parts: BrokerParts
) -> None:
    outcome = await parts.check(world.ns_a, "app", plan_of("api", "db@3"))
    assert outcome.denial == (
        "annotation sakura-secrets.io/secret-f1 asks for version 3 of secret 'db', which does "
        f"not exist in vault {VAULT}; pin an existing version or drop the @VERSION"
    )


async def test_a_newly_created_secret_is_seen_despite_the_cached_listing(
    world: World, parts: BrokerParts, emulator: EmulatorHandle
) -> None:
    assert (await parts.check(world.ns_a, "app", plan_of("extra"))).denial is None
    emulator.store.put(VAULT, "extra", "extra-v2-new-VALUE")
    # the listing (30 s TTL) says latest is 1; a pod pinning @2 makes the check look again
    # once the listing is older than the negative TTL (10 s)
    parts.check.inventory._held[VAULT] = (
        parts.check.inventory._held[VAULT][0] - parts.check.inventory.negative_ttl - 1,
        parts.check.inventory._held[VAULT][1],
    )
    assert (await parts.check(world.ns_a, "app", plan_of("extra@2"))).denial is None


async def test_unknown_vault_is_denied(world: World, parts: BrokerParts) -> None:
    outcome = await parts.check(world.ns_a, "app", plan_of("db", vault_id=MISSING_VAULT))
    assert outcome.denial is not None
    assert f"vault {MISSING_VAULT} does not exist" in outcome.denial
    assert "sakura-secrets.io/vault-id" in outcome.denial


async def test_a_name_grant_does_not_open_another_vault_at_admission(
    world: World, parts: BrokerParts, emulator: EmulatorHandle
) -> None:
    """app in B may get `other` in VAULT only: in OTHER_VAULT (which has `other` too) and in
    a vault that does not exist it is denied alike, naming the vault grant, costing no call."""
    emulator.store.put(OTHER_VAULT, "other", "other-in-the-second-vault-VALUE")
    emulator.knobs.reset_stats()
    for vault_id in (OTHER_VAULT, MISSING_VAULT):
        outcome = await parts.check(world.ns_b, "app", plan_of("other", vault_id=vault_id))
        assert outcome.denial == grant_text(world.ns_b, "app", vault_id, "vaults") + (
            f'; each secret also needs the grant of its pair (secrets "{vault_id}/NAME"), '
            "checked once the vault is granted"
        )
    assert emulator.knobs.stats()["calls"] == {}
    assert (await parts.check(world.ns_b, "app", plan_of("other"))).denial is None


def api_allows(world: World, ns: str, sa: str, resource: str, name: str) -> bool:
    """The API server's own SubjectAccessReview, without the reviewer's memory."""
    from kubernetes import client as k8s

    body = k8s.V1SubjectAccessReview(
        spec=k8s.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{ns}:{sa}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{ns}"],
            resource_attributes=k8s.V1ResourceAttributes(
                namespace=ns, verb="get", group="sakura-secrets.io", resource=resource, name=name
            ),
        )
    )
    answer = k8s.AuthorizationV1Api(world.api).create_subject_access_review(body)
    allowed = bool(answer.status.allowed)
    print(f"[rbac] SubjectAccessReview {ns}/{sa} get {resource} {name!r}: allowed={allowed}")
    return allowed


def test_the_api_server_stores_and_matches_a_pair_as_a_resource_name(world: World) -> None:
    """RBAC takes `VAULT_ID/NAME` (a slash inside a resourceName) and matches it whole.

    The Role the `world` fixture created for `cross` reads back unchanged, and the API
    server's own SubjectAccessReview allows exactly its pairs: not the bare name, not the
    name in the other granted vault, not a longer or shorter name.
    """
    from kubernetes import client as k8s

    role = k8s.RbacAuthorizationV1Api(world.api).read_namespaced_role("read-cross", world.ns_a)
    assert [(r.resources, r.resource_names) for r in role.rules] == [
        (["vaults"], [VAULT, OTHER_VAULT]),
        (["secrets"], PAIRS_OF_CROSS),
    ]
    names = [
        f"{VAULT}/db",
        f"{OTHER_VAULT}/stripe",
        f"{OTHER_VAULT}/db",
        f"{VAULT}/stripe",
        "db",
        f"{VAULT}/db/x",
        f"{VAULT}/",
        VAULT,
    ]
    allowed = [api_allows(world, world.ns_a, "cross", "secrets", n) for n in names]
    assert allowed == [True, True] + [False] * 6


async def test_a_cross_pair_is_denied_at_admission(
    world: World, parts: BrokerParts, emulator: EmulatorHandle
) -> None:
    """cross is granted VAULT/db and OTHER_VAULT/stripe (and both vaults): each pair is
    admitted, db from OTHER_VAULT (which has one) is denied naming the pair, before Sakura."""
    emulator.store.put(OTHER_VAULT, "stripe", "stripe-in-the-second-vault-VALUE")
    emulator.store.put(OTHER_VAULT, "db", "db-in-the-second-vault-VALUE")
    assert await parts.check(world.ns_a, "cross", plan_of("db")) == CheckOutcome()
    second = plan_of("stripe", vault_id=OTHER_VAULT)
    assert await parts.check(world.ns_a, "cross", second) == CheckOutcome()
    emulator.knobs.reset_stats()
    outcome = await parts.check(world.ns_a, "cross", plan_of("stripe", "db", vault_id=OTHER_VAULT))
    print(f"[rbac] cross pair at admission: {outcome.denial}")
    assert outcome.denial == grant_text(world.ns_a, "cross", f"{OTHER_VAULT}/db")
    assert emulator.knobs.stats()["calls"] == {}


async def test_a_rule_without_resource_names_opens_every_name_in_the_granted_vaults_only(
    world: World, parts: BrokerParts
) -> None:
    world.service_account(world.ns_b, "every")
    world.grant(world.ns_b, "every", None, [VAULT])
    for _ in range(100):  # the authorizer sees a new RoleBinding within moments
        if api_allows(world, world.ns_b, "every", "vaults", VAULT):
            break
        await asyncio.sleep(0.1)
    assert api_allows(world, world.ns_b, "every", "secrets", f"{OTHER_VAULT}/any-name")
    assert await parts.check(world.ns_b, "every", plan_of("db", "api", "other")) == CheckOutcome()
    other = await parts.check(world.ns_b, "every", plan_of("db", vault_id=OTHER_VAULT))
    assert other.denial is not None
    assert other.denial.startswith(grant_text(world.ns_b, "every", OTHER_VAULT, "vaults"))


async def test_reviews_naming_an_unknown_vault_cost_one_call_per_negative_ttl(
    world: World, parts: BrokerParts, emulator: EmulatorHandle
) -> None:
    emulator.knobs.reset_stats()
    for _ in range(20):  # forged reviews, dry runs: the same unknown vault again and again
        outcome = await parts.check(world.ns_a, "app", plan_of("db@7", vault_id="999999999999"))
        assert outcome.denial is not None and "vault 999999999999 does not exist" in outcome.denial
    assert emulator.knobs.stats()["calls"] == {"list_secrets": 1, "total": 1}


async def test_admission_spends_sakuras_budget_in_the_pods_namespaces_turn(
    world: World, emulator: EmulatorHandle
) -> None:
    parts = build_broker(
        sakura_config(emulator.url),
        kube_api_client=kube_api_client(os.environ["KUBECONFIG"]),
        tuning=BrokerTuning(sakura_deadline=30, admission_timeout=9),
        registry=CollectorRegistry(),
    )
    limiter = parts.sakura.limiter
    limiter.hold_off(30)  # every call waits in its tenant's line
    check = asyncio.create_task(parts.check(world.ns_b, "app", plan_of("other")))
    for _ in range(3000):
        if limiter.waiting(world.ns_b) == 1:
            break
        await asyncio.sleep(0.01)
    assert limiter.waiting(world.ns_b) == 1 and limiter.waiting(None) == 0
    for _ in range(100):
        limiter.refund()
    limiter.dispatch()
    assert (await check) == CheckOutcome()
    await parts.aclose()


async def test_listing_is_shared_between_pods(
    world: World, parts: BrokerParts, emulator: EmulatorHandle
) -> None:
    emulator.knobs.reset_stats()
    for _ in range(20):
        assert (await parts.check(world.ns_a, "app", plan_of("db", "api"))).denial is None
    assert emulator.knobs.stats()["calls"].get("list_secrets") == 1


async def test_unreachable_sakura_admits_with_a_warning(
    world: World, parts: BrokerParts, emulator: EmulatorHandle
) -> None:
    emulator.knobs.set_faults([Fault(503, 1.0)])
    outcome = await parts.check(world.ns_a, "app", plan_of("db"))
    assert outcome.denial is None
    assert len(outcome.warnings) == 1
    assert "Sakura could not be reached" in outcome.warnings[0]
    assert "admitted" in outcome.warnings[0]


async def test_rbac_still_denies_when_sakura_is_unreachable(
    world: World, parts: BrokerParts, emulator: EmulatorHandle
) -> None:
    emulator.knobs.set_faults([Fault(503, 1.0)])
    outcome = await parts.check(world.ns_a, "nogrant", plan_of("db"))
    assert outcome.denial == grant_text(world.ns_a, "nogrant", VAULT, "vaults") + (
        f'; each secret also needs the grant of its pair (secrets "{VAULT}/NAME"), checked '
        "once the vault is granted"
    )


async def test_direct_mode_skips_rbac_and_existence(
    world: World, parts: BrokerParts, emulator: EmulatorHandle
) -> None:
    emulator.knobs.reset_stats()
    outcome = await parts.check(world.ns_a, "nogrant", plan_of("no-such-secret", mode="direct"))
    assert outcome == CheckOutcome()
    assert emulator.knobs.stats()["calls"].get("list_secrets") is None


async def test_can_i_answers_per_pair(world: World, parts: BrokerParts) -> None:
    code, lines = await run_can_i(
        parts.access, world.ns_a, "app", VAULT, ["db", "api@2#key", "other"]
    )
    assert code == 1
    assert lines == [
        f"yes vault {VAULT}",
        f"yes {VAULT}/db",
        f"yes {VAULT}/api",
        f"no  {VAULT}/other: " + grant_text(world.ns_a, "app", f"{VAULT}/other"),
    ]
    code, lines = await run_can_i(parts.access, world.ns_b, "app", VAULT, ["other"])
    assert (code, lines) == (0, [f"yes vault {VAULT}", f"yes {VAULT}/other"])


async def test_can_i_checks_the_vault_and_every_pair_even_without_the_vault(
    world: World, parts: BrokerParts
) -> None:
    """An admin sees every grant to add at once; `other` is granted in VAULT, not here."""
    code, lines = await run_can_i(parts.access, world.ns_b, "app", OTHER_VAULT, ["other"])
    assert code == 1
    pair = f"{OTHER_VAULT}/other"
    assert lines == [
        f"no  vault {OTHER_VAULT}: " + grant_text(world.ns_b, "app", OTHER_VAULT, "vaults"),
        f"no  {pair}: " + grant_text(world.ns_b, "app", pair),
    ]


async def test_can_i_usage_errors_exit_2(world: World, parts: BrokerParts) -> None:
    assert (await run_can_i(parts.access, world.ns_a, "app", VAULT, []))[0] == 2
    code, lines = await run_can_i(parts.access, world.ns_a, "app", VAULT, ["db@x"])
    assert code == 2 and lines[0].startswith("error: ")
    code, lines = await run_can_i(parts.access, world.ns_a, "app", "12", ["db"])
    assert code == 2 and "--vault '12' is not a 12-digit" in lines[0]


def test_can_i_command_line(world: World) -> None:
    """The real `sakura-secrets-injector can-i` in a subprocess, against the cluster."""
    import subprocess
    import sys

    command = [
        sys.executable,
        "-c",
        "import sys; from injector.operations.cli import main; sys.exit(main())",
    ]
    allowed = subprocess.run(
        [
            *command,
            "can-i",
            "-n",
            world.ns_a,
            "--serviceaccount",
            "app",
            "--vault",
            VAULT,
            "db",
            "api",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.splitlines() == [
        f"yes vault {VAULT}",
        f"yes {VAULT}/db",
        f"yes {VAULT}/api",
    ]
    # no --vault: the injector's default vault, here from the environment
    env = {**os.environ, "SAKURA_SECRETS_DEFAULT_VAULT_ID": OTHER_VAULT}
    denied = subprocess.run(
        [*command, "can-i", "-n", world.ns_a, "--serviceaccount", "cross", "stripe", "db"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert denied.returncode == 1
    cross = f"{OTHER_VAULT}/db"  # cross is granted VAULT/db and OTHER_VAULT/stripe
    assert denied.stdout.splitlines() == [
        f"yes vault {OTHER_VAULT}",
        f"yes {OTHER_VAULT}/stripe",
        f"no  {cross}: " + grant_text(world.ns_a, "cross", cross),
    ]


def test_can_i_without_a_vault_is_a_usage_error(world: World) -> None:
    """No --vault and no variable: exit 2 naming both; the injector's Secret is never read,
    even where one holds a default vault."""
    import subprocess
    import sys

    from kubernetes import client as k8s

    k8s.CoreV1Api(world.api).create_namespaced_secret(
        world.ns_b,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="sakura-api-key"),
            string_data={"SAKURA_SECRETS_DEFAULT_VAULT_ID": MISSING_VAULT},
        ),
    )
    env = {k: v for k, v in os.environ.items() if k != "SAKURA_SECRETS_DEFAULT_VAULT_ID"}
    command = [
        sys.executable,
        "-c",
        "import sys; from injector.operations.cli import main; sys.exit(main())",
    ]
    args = ["can-i", "-n", world.ns_b, "--serviceaccount", "app", "db"]
    missing = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, env=env)
    assert (missing.returncode, missing.stdout) == (2, ""), missing.stderr
    assert "name the vault with --vault VAULT_ID (or set $SAKURA_SECRETS_DEFAULT_VAULT_ID)" in (
        missing.stderr
    ), missing.stderr
