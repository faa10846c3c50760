"""The broker over real TLS with real TokenReview/SubjectAccessReview and the emulator."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from support.broker_world import (
    MISSING_VAULT,
    OTHER_VAULT,
    VALUES,
    VAULT,
    BrokerServer,
    World,
    fetch,
)
from support.emulator import EmulatorHandle

pytestmark = pytest.mark.cluster


def missing_grant(ns: str, sa: str, name: str, resource: str = "secrets") -> str:
    """The contract's refusal, written out here so a change to it is a visible test change.

    `name` is the vault ID for `vaults`, the pair `VAULT_ID/NAME` for `secrets`.
    """
    return (
        f'serviceaccount {ns}/{sa} may not get sakura-secrets.io {resource} "{name}"; grant it '
        f"with a Role/RoleBinding (verb get, apiGroup sakura-secrets.io, resource {resource}, "
        f"resourceName {name}), e.g. the rule {{apiGroups: [sakura-secrets.io], resources: "
        f'[{resource}], resourceNames: ["{name}"], verbs: [get]}}'
    )


async def test_allowed_secrets_are_fetched_in_order(world: World, broker: BrokerServer) -> None:
    token = world.token(world.ns_a, "app")
    response = await fetch(
        broker,
        token,
        [
            {"name": "db", "version": None},
            {"name": "db", "version": 1},
            {"name": "api", "version": None},
        ],
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "secrets": [
            {"name": "db", "requested_version": None, "version": 2, "value": VALUES["db"][1]},
            {"name": "db", "requested_version": 1, "version": 1, "value": VALUES["db"][0]},
            {"name": "api", "requested_version": None, "version": 1, "value": VALUES["api"][0]},
        ]
    }


async def test_secret_without_grant_is_403_naming_the_grant(
    world: World, broker: BrokerServer
) -> None:
    token = world.token(world.ns_a, "app")
    response = await fetch(
        broker, token, [{"name": "db", "version": None}, {"name": "other", "version": None}]
    )
    assert response.status_code == 403
    assert response.json() == {"error": missing_grant(world.ns_a, "app", f"{VAULT}/other")}
    assert VALUES["db"][1] not in response.text  # nothing of the allowed one either


async def test_serviceaccount_without_any_grant_is_403(world: World, broker: BrokerServer) -> None:
    token = world.token(world.ns_a, "nogrant")
    response = await fetch(
        broker, token, [{"name": "db", "version": None}, {"name": "api", "version": None}]
    )
    assert response.status_code == 403
    assert response.json()["error"] == missing_grant(world.ns_a, "nogrant", VAULT, "vaults") + (
        f'; each secret also needs the grant of its pair (secrets "{VAULT}/NAME"), checked once '
        "the vault is granted"
    )


async def test_a_name_grant_does_not_open_the_name_in_another_vault(
    world: World, broker: BrokerServer, emulator: EmulatorHandle
) -> None:
    """app in B may get `other` in VAULT; OTHER_VAULT is not granted to it, MISSING_VAULT
    neither: both are refused alike, before any Sakura call, so nothing is learnt of them."""
    emulator.store.put(OTHER_VAULT, "other", "other-in-the-second-vault-VALUE")
    token = world.token(world.ns_b, "app")
    emulator.knobs.reset_stats()
    for vault_id in (OTHER_VAULT, MISSING_VAULT):
        response = await fetch(
            broker, token, [{"name": "other", "version": None}], vault_id=vault_id
        )
        assert response.status_code == 403, response.text
        assert response.json()["error"].startswith(
            missing_grant(world.ns_b, "app", vault_id, "vaults") + "; each secret also needs"
        )
        assert "VALUE" not in response.text
    assert emulator.knobs.stats()["calls"] == {}
    ok = await fetch(broker, token, [{"name": "other", "version": None}], vault_id=VAULT)
    assert ok.status_code == 200, ok.text
    assert ok.json()["secrets"][0]["value"] == VALUES["other"][0]


async def test_grants_by_pair_never_combine_across_vaults(
    world: World, broker: BrokerServer, emulator: EmulatorHandle
) -> None:
    """cross (ns A) is granted both vaults, VAULT/db and OTHER_VAULT/stripe: each pair reads,
    `db` from OTHER_VAULT (which has one) is 403 naming the pair, before any Sakura call."""
    emulator.store.put(OTHER_VAULT, "stripe", "stripe-in-the-second-vault-VALUE")
    emulator.store.put(OTHER_VAULT, "db", "db-in-the-second-vault-VALUE")
    token = world.token(world.ns_a, "cross")
    own = await fetch(broker, token, [{"name": "db", "version": None}])
    assert own.status_code == 200, own.text
    assert own.json()["secrets"][0]["value"] == VALUES["db"][1]
    second = await fetch(broker, token, [{"name": "stripe", "version": None}], vault_id=OTHER_VAULT)
    assert second.status_code == 200, second.text
    assert second.json()["secrets"][0]["value"] == "stripe-in-the-second-vault-VALUE"
    emulator.knobs.reset_stats()
    cross = await fetch(broker, token, [{"name": "db", "version": None}], vault_id=OTHER_VAULT)
    print(f"[rbac] cross pair at the broker: {cross.status_code} {cross.text}")
    assert cross.status_code == 403, cross.text
    assert cross.json() == {"error": missing_grant(world.ns_a, "cross", f"{OTHER_VAULT}/db")}
    assert "VALUE" not in cross.text
    assert emulator.knobs.stats()["calls"] == {}


async def test_other_namespaces_serviceaccount_cannot_use_a_grant_of_the_first(
    world: World, broker: BrokerServer
) -> None:
    """`db` is granted to app in namespace A only; app in namespace B asks for it."""
    token = world.token(world.ns_b, "app")
    response = await fetch(broker, token, [{"name": "db", "version": None}])
    assert response.status_code == 403
    assert response.json() == {"error": missing_grant(world.ns_b, "app", f"{VAULT}/db")}
    # and its own grant works: the identity came from the token, not from anything sent
    ok = await fetch(broker, token, [{"name": "other", "version": None}])
    assert ok.status_code == 200
    assert ok.json()["secrets"][0]["value"] == VALUES["other"][0]


async def test_token_for_another_audience_is_401(world: World, broker: BrokerServer) -> None:
    token = world.token(world.ns_a, "app", audience="some-other-service")
    response = await fetch(broker, token, [{"name": "db", "version": None}])
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "sakura-secrets-injector" in response.json()["error"]


async def test_token_of_a_deleted_pod_is_401(world: World, broker: BrokerServer) -> None:
    """Stands in for an expired token: TokenRequest's minimum lifetime is 600 s, too long for a
    test, but a bound token stops being valid the moment its pod is gone, which is the same
    rejection path (the API server refuses the token) that an expired token takes.
    """
    world.pod(world.ns_a, "short-lived", "app")
    token = world.token(world.ns_a, "short-lived")
    world.delete_pod(world.ns_a, "short-lived")
    response = await fetch(broker, token, [{"name": "db", "version": None}])
    assert response.status_code == 401
    assert (
        "not accept" in response.json()["error"] or "no longer exists" in response.json()["error"]
    )


async def test_token_of_a_deleted_serviceaccount_is_401(world: World, broker: BrokerServer) -> None:
    """The other way a token dies before it expires: its ServiceAccount is deleted (the pod
    stays). The token is not presented before the deletion because the API server itself
    remembers a successful authentication for 10 s; a token first seen afterwards is refused.
    """
    world.service_account(world.ns_a, "doomed")
    world.grant(world.ns_a, "doomed", [f"{VAULT}/db"], [VAULT])
    world.pod(world.ns_a, "doomed", "doomed")
    token = world.token(world.ns_a, "doomed")
    world.core.delete_namespaced_service_account("doomed", world.ns_a)
    response = await fetch(broker, token, [{"name": "db", "version": None}])
    assert response.status_code == 401
    assert "did not accept the token" in response.json()["error"]


async def test_token_with_a_bad_signature_is_401(world: World, broker: BrokerServer) -> None:
    """A syntactically valid JWT with our audience and the right claims, but a forged signature:
    the header and payload of a real token with the signature's bytes changed.
    """
    header, payload, signature = world.token(world.ns_a, "app").split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0xFF
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    response = await fetch(
        broker, f"{header}.{payload}.{forged}", [{"name": "db", "version": None}]
    )
    assert response.status_code == 401
    assert "did not accept the token" in response.json()["error"]


async def test_legacy_serviceaccount_secret_token_is_401(
    world: World, broker: BrokerServer
) -> None:
    """A long-lived token from a ServiceAccount Secret is not bound to a pod: refused."""
    sa = world.core.read_namespaced_service_account("app", world.ns_a)
    secret = world.core.read_namespaced_secret(sa.secrets[0].name, world.ns_a)
    token = base64.b64decode(secret.data["token"]).decode()
    response = await fetch(broker, token, [{"name": "db", "version": None}])
    assert response.status_code == 401


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Token abc", "Basic dXNlcjpwYXNz", "Bearer not-a-jwt"]
)
async def test_missing_or_malformed_token_is_401(
    broker: BrokerServer, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with httpx.AsyncClient(verify=broker.ssl_context) as http:
        response = await http.post(
            f"{broker.url}/v1/secrets",
            json={"vault_id": VAULT, "secrets": [{"name": "db", "version": None}]},
            headers=headers,
        )
    assert response.status_code == 401
    assert response.json()["error"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (json.dumps({"secrets": [{"name": "db", "version": None}]}).encode(), "'vault_id'"),
        (json.dumps({"vault_id": "12", "secrets": [{"name": "db"}]}).encode(), "12-digit"),
        (json.dumps({"vault_id": VAULT, "secrets": []}).encode(), "non-empty"),
        (
            json.dumps({"vault_id": VAULT, "secrets": [{"name": "db", "version": 0}]}).encode(),
            "secrets[0]",
        ),
        (
            json.dumps({"vault_id": VAULT, "secrets": [{"name": "db", "version": "2"}]}).encode(),
            "secrets[0].version",
        ),
        (
            json.dumps({"vault_id": VAULT, "secrets": [{"name": "db", "version": True}]}).encode(),
            "secrets[0].version",
        ),
        (json.dumps({"vault_id": VAULT, "secrets": [{"name": ""}]}).encode(), "secrets[0]"),
        (
            json.dumps({"vault_id": VAULT, "secrets": [{"nam": "db"}]}).encode(),
            "unknown field 'nam'",
        ),
        (
            json.dumps({"vault_id": VAULT, "secrets": ["db"]}).encode(),
            "secrets[0] must be an object",
        ),
        (
            json.dumps({"vault_id": VAULT, "namespace": "x", "secrets": [{"name": "db"}]}).encode(),
            "unknown field 'namespace'",
        ),
        (  # case 3 of issue 15: one value named 100 times bought a 100-fold answer
            json.dumps({"vault_id": VAULT, "secrets": [{"name": "db"}] * 100}).encode(),
            "secrets[1] repeats secrets[0] ('db'); list each name and version once",
        ),
    ],
)
async def test_bad_body_is_400_naming_the_problem(
    world: World, broker: BrokerServer, body: bytes, says: str
) -> None:
    token = world.token(world.ns_a, "app")
    response = await fetch(broker, token, [], body=body)
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]


async def test_oversized_body_is_413(broker: BrokerServer) -> None:
    response = await fetch(broker, "x", [], body=b"{" + b" " * 70_000 + b"}")
    assert response.status_code == 413


async def test_missing_secret_version_and_vault_are_404(world: World, broker: BrokerServer) -> None:
    token = world.token(world.ns_a, "app")
    missing = await fetch(
        broker, token, [{"name": "extra", "version": None}, {"name": "tls", "version": 9}]
    )
    assert missing.status_code == 404
    assert missing.json()["error"] == (
        f"secret 'tls@9' has no such version in vault {VAULT}; pin an existing version or "
        "drop the @VERSION"
    )  # never the latest version: a denial does not tell what the vault holds
    vault = await fetch(broker, token, [{"name": "db", "version": None}], vault_id=MISSING_VAULT)
    assert vault.status_code == 404
    assert f"vault {MISSING_VAULT}" in vault.json()["error"]
    secret = await fetch(broker, token, [{"name": "db", "version": None}], vault_id=OTHER_VAULT)
    assert secret.status_code == 404
    assert "secret 'db' does not exist" in secret.json()["error"]


async def test_repeated_reads_are_served_from_the_cache(
    world: World, broker: BrokerServer, emulator: EmulatorHandle
) -> None:
    token = world.token(world.ns_a, "app")
    emulator.knobs.reset_stats()
    for _ in range(3):
        response = await fetch(
            broker, token, [{"name": "cfg", "version": None}, {"name": "db", "version": 1}]
        )
        assert response.status_code == 200
    assert emulator.knobs.stats()["calls"].get("unveil") == 2
