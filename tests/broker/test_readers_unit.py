"""Who may read a secret, from RBAC objects written as the API returns them (no cluster).

test_who_can.py asks the local cluster's RBAC the same question through the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from injector.broker.readers import EVERY_NAMESPACE, Grant, Reader, Rule, Who, readers

V = "123456789012"
W = "210987654321"
PAIR = f"{V}/db"
VAULT_RULE = {"apiGroups": ["sakura-secrets.io"], "resources": ["vaults"], "verbs": ["get"]}
PAIR_RULE = {"apiGroups": ["sakura-secrets.io"], "resources": ["secrets"], "verbs": ["get"]}
STAR = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}


def named(rule: dict[str, Any], *names: str) -> dict[str, Any]:
    return {**rule, "resourceNames": list(names)}


def role(name: str, *rules: dict[str, Any], namespace: str = "") -> dict[str, Any]:
    meta = {"name": name, "namespace": namespace} if namespace else {"name": name}
    return {"metadata": meta, "rules": list(rules)}


def binding(
    name: str, kind: str, role_name: str, *subjects: dict[str, str], namespace: str = ""
) -> dict[str, Any]:
    meta = {"name": name, "namespace": namespace} if namespace else {"name": name}
    return {
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role_name},
        "subjects": list(subjects),
    }


def sa(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def group(name: str) -> dict[str, str]:
    return {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def lines(
    roles: Sequence[dict[str, Any]] = (),
    cluster_roles: Sequence[dict[str, Any]] = (),
    role_bindings: Sequence[dict[str, Any]] = (),
    cluster_role_bindings: Sequence[dict[str, Any]] = (),
    pair: str = PAIR,
) -> list[str]:
    vault = pair.partition("/")[0]
    found = readers(vault, pair, roles, cluster_roles, role_bindings, cluster_role_bindings)
    return [r.line() for r in found]


READ_DB = role("read-db", named(VAULT_RULE, V), named(PAIR_RULE, PAIR), namespace="shop")
READ_DB_BINDING = binding("read-db", "Role", "read-db", sa("shop", "api"), namespace="shop")


def test_a_role_with_the_vault_and_the_pair_bound_to_a_service_account() -> None:
    assert lines([READ_DB], role_bindings=[READ_DB_BINDING]) == [
        "named    ServiceAccount shop/api in namespace shop: vault and secret by "
        "RoleBinding shop/read-db -> Role shop/read-db"
    ]


def test_another_secret_or_vault_is_not_read() -> None:
    assert lines([READ_DB], role_bindings=[READ_DB_BINDING], pair=f"{V}/other") == []
    assert lines([READ_DB], role_bindings=[READ_DB_BINDING], pair=f"{W}/db") == []


def test_the_vault_alone_or_the_pair_alone_reads_nothing() -> None:
    only_vault = role("v", named(VAULT_RULE, V), namespace="shop")
    only_pair = role("p", named(PAIR_RULE, PAIR), namespace="shop")
    for only in (only_vault, only_pair):
        bound = binding("b", "Role", only["metadata"]["name"], sa("shop", "api"), namespace="shop")
        assert lines([only], role_bindings=[bound]) == []


def test_the_two_grants_may_come_from_two_bindings_in_one_namespace() -> None:
    roles = [
        role("v", named(VAULT_RULE, V), namespace="shop"),
        role("p", named(PAIR_RULE, PAIR), namespace="shop"),
    ]
    bindings = [
        binding("platform", "Role", "v", sa("shop", "api"), namespace="shop"),
        binding("app", "Role", "p", sa("shop", "api"), namespace="shop"),
    ]
    assert lines(roles, role_bindings=bindings) == [
        "named    ServiceAccount shop/api in namespace shop: vault by RoleBinding "
        "shop/platform -> Role shop/v; secret by RoleBinding shop/app -> Role shop/p"
    ]


def test_grants_in_two_namespaces_do_not_combine() -> None:
    """A group bound to the vault in one namespace and to the pair in another reads neither."""
    roles = [
        role("v", named(VAULT_RULE, V), namespace="a"),
        role("p", named(PAIR_RULE, PAIR), namespace="b"),
    ]
    bindings = [
        binding("v", "Role", "v", group("team"), namespace="a"),
        binding("p", "Role", "p", group("team"), namespace="b"),
    ]
    assert lines(roles, role_bindings=bindings) == []


def test_a_cluster_wide_grant_meets_a_namespaced_one_in_that_namespace() -> None:
    cluster_roles = [role("vault-v", named(VAULT_RULE, V))]
    roles = [role("p", named(PAIR_RULE, PAIR), namespace="shop")]
    assert lines(
        roles,
        cluster_roles,
        [binding("p", "Role", "p", group("team"), namespace="shop")],
        [binding("all-v", "ClusterRole", "vault-v", group("team"))],
    ) == [
        "named    Group team in namespace shop: vault by ClusterRoleBinding all-v -> "
        "ClusterRole vault-v; secret by RoleBinding shop/p -> Role shop/p"
    ]


def test_a_rolebinding_may_bind_a_cluster_role_in_its_namespace() -> None:
    cluster_roles = [role("read-db", named(VAULT_RULE, V), named(PAIR_RULE, PAIR))]
    bound = binding("r", "ClusterRole", "read-db", group("devs"), namespace="shop")
    assert lines([], cluster_roles, [bound]) == [
        "named    Group devs in namespace shop: vault and secret by RoleBinding shop/r -> "
        "ClusterRole read-db"
    ]


def test_a_role_is_looked_up_in_the_bindings_namespace_only() -> None:
    elsewhere = role("read-db", named(VAULT_RULE, V), named(PAIR_RULE, PAIR), namespace="other")
    assert lines([elsewhere], role_bindings=[READ_DB_BINDING]) == []
    # a ClusterRoleBinding cannot name a Role; a Role does not stand for a ClusterRole
    as_cluster = binding("x", "Role", "read-db", group("g"))
    assert lines([READ_DB], cluster_role_bindings=[as_cluster]) == []
    assert lines([], [role("read-db", STAR)], [READ_DB_BINDING]) == []


def test_a_service_account_reads_only_in_its_own_namespace() -> None:
    """The broker reviews a pod's ServiceAccount in the pod's namespace, its own."""
    foreign = binding("read-db", "Role", "read-db", sa("web", "api"), namespace="shop")
    assert lines([READ_DB], role_bindings=[foreign]) == []
    cluster_roles = [role("read-db", named(VAULT_RULE, V), named(PAIR_RULE, PAIR))]
    everywhere = binding("all", "ClusterRole", "read-db", sa("web", "api"), group("g"))
    assert lines([], cluster_roles, cluster_role_bindings=[everywhere]) == [
        "named    Group g in every namespace: vault and secret by ClusterRoleBinding all -> "
        "ClusterRole read-db",
        "named    ServiceAccount web/api in namespace web: vault and secret by "
        "ClusterRoleBinding all -> ClusterRole read-db",
    ]


def test_a_service_account_without_a_namespace_is_the_bindings() -> None:
    subject = {"kind": "ServiceAccount", "name": "api"}
    bound = binding("read-db", "Role", "read-db", subject, namespace="shop")
    assert lines([READ_DB], role_bindings=[bound]) == [
        "named    ServiceAccount shop/api in namespace shop: vault and secret by "
        "RoleBinding shop/read-db -> Role shop/read-db"
    ]


def test_cluster_admin_reads_every_secret_and_is_flagged() -> None:
    cluster_roles = [role("cluster-admin", STAR, {"nonResourceURLs": ["*"], "verbs": ["*"]})]
    admins = binding("cluster-admin", "ClusterRole", "cluster-admin", group("system:masters"))
    user = {"kind": "User", "name": "alice"}
    alice = binding("alice", "ClusterRole", "cluster-admin", user, namespace="shop")
    assert lines([], cluster_roles, [alice], [admins]) == [
        "WILDCARD Group system:masters in every namespace: vault and secret by "
        "ClusterRoleBinding cluster-admin -> ClusterRole cluster-admin [* rule]",
        "WILDCARD User alice in namespace shop: vault and secret by RoleBinding shop/alice -> "
        "ClusterRole cluster-admin [* rule]",
    ]


@pytest.mark.parametrize(
    "rule",
    [
        {"apiGroups": ["*"], "resources": ["vaults", "secrets"], "verbs": ["get"]},
        {"apiGroups": ["sakura-secrets.io"], "resources": ["*"], "verbs": ["get"]},
        {"apiGroups": ["sakura-secrets.io"], "resources": ["vaults", "secrets"], "verbs": ["*"]},
    ],
)
def test_any_star_is_a_wildcard(rule: dict[str, Any]) -> None:
    bound = binding("b", "ClusterRole", "r", group("g"))
    assert lines([], [role("r", rule)], cluster_role_bindings=[bound]) == [
        "WILDCARD Group g in every namespace: vault and secret by ClusterRoleBinding b -> "
        "ClusterRole r [* rule]"
    ]


def test_rules_without_resource_names_read_every_name() -> None:
    every = role("every", VAULT_RULE, PAIR_RULE, namespace="shop")
    bound = binding("b", "Role", "every", group("g"), namespace="shop")
    assert lines([every], role_bindings=[bound]) == [
        "WILDCARD Group g in namespace shop: vault and secret by RoleBinding shop/b -> "
        "Role shop/every [every name]"
    ]
    # every secret, but of a named vault only: not flagged, the pair's grant is tagged
    some = role("some", named(VAULT_RULE, V), PAIR_RULE, namespace="shop")
    bound = binding("b", "Role", "some", group("g"), namespace="shop")
    assert lines([some], role_bindings=[bound]) == [
        "named    Group g in namespace shop: vault by RoleBinding shop/b -> Role shop/some; "
        "secret by RoleBinding shop/b -> Role shop/some [every name]"
    ]


def test_a_named_rule_wins_over_a_broad_one_in_the_same_role() -> None:
    both = role("r", STAR, PAIR_RULE, named(VAULT_RULE, V), named(PAIR_RULE, PAIR))
    bound = binding("b", "ClusterRole", "r", group("g"))
    assert lines([], [both], cluster_role_bindings=[bound]) == [
        "named    Group g in every namespace: vault and secret by ClusterRoleBinding b -> "
        "ClusterRole r"
    ]
    broad = role("r", STAR, PAIR_RULE, VAULT_RULE)
    assert lines([], [broad], cluster_role_bindings=[bound]) == [
        "WILDCARD Group g in every namespace: vault and secret by ClusterRoleBinding b -> "
        "ClusterRole r [every name]"
    ]
    # a `*` verb on a rule that names the pair still names it
    star_verb = {**named(PAIR_RULE, PAIR), "verbs": ["*"]}
    mixed = role("r", named(VAULT_RULE, V), star_verb)
    assert lines([], [mixed], cluster_role_bindings=[bound]) == [
        "named    Group g in every namespace: vault and secret by ClusterRoleBinding b -> "
        "ClusterRole r"
    ]


@pytest.mark.parametrize(
    "rule",
    [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},  # the core Secrets
        {"apiGroups": ["sakura-secrets.io"], "resources": ["secrets"], "verbs": ["list"]},
        {"apiGroups": ["sakura-secrets.io"], "resources": ["pods"], "verbs": ["get"]},
        named(PAIR_RULE, "db", f"{W}/db"),  # a bare name, another vault's pair
        {"nonResourceURLs": ["*"], "verbs": ["*"]},
        {},
    ],
)
def test_rules_that_do_not_open_the_pair(rule: dict[str, Any]) -> None:
    r = role("r", named(VAULT_RULE, V), rule)
    bound = binding("b", "ClusterRole", "r", group("g"))
    assert lines([], [r], cluster_role_bindings=[bound]) == []


def test_empty_rules_and_subjects_open_nothing() -> None:
    """A ClusterRole whose aggregation matched nothing has no rules; a binding may have no
    subjects: the API leaves those fields out (or null)."""
    no_subjects = {**binding("b", "ClusterRole", "r"), "subjects": None}
    assert lines([], [role("r", STAR)], cluster_role_bindings=[no_subjects]) == []
    del no_subjects["subjects"]
    assert lines([], [role("r", STAR)], cluster_role_bindings=[no_subjects]) == []
    bound = binding("b", "ClusterRole", "r", group("g"))
    for empty in ({"metadata": {"name": "r"}, "rules": None}, {"metadata": {"name": "r"}}):
        assert lines([], [empty], cluster_role_bindings=[bound]) == []


def test_every_grant_of_a_side_is_named() -> None:
    roles = [
        role("v", named(VAULT_RULE, V), namespace="shop"),
        role("p", named(PAIR_RULE, PAIR), namespace="shop"),
    ]
    bindings = [
        binding("v1", "Role", "v", group("g"), namespace="shop"),
        binding("v2", "Role", "v", group("g"), namespace="shop"),
        binding("p1", "Role", "p", group("g"), namespace="shop"),
        binding("p2", "Role", "p", group("g"), namespace="shop"),
    ]
    assert lines(roles, role_bindings=bindings) == [
        "named    Group g in namespace shop: vault by RoleBinding shop/v1 -> Role shop/v, "
        "RoleBinding shop/v2 -> Role shop/v; secret by RoleBinding shop/p1 -> Role shop/p, "
        "RoleBinding shop/p2 -> Role shop/p"
    ]
    both = [role("r", named(VAULT_RULE, V), named(PAIR_RULE, PAIR), namespace="shop")]
    twice = [binding(n, "Role", "r", group("g"), namespace="shop") for n in ("a", "b")]
    assert lines(both, role_bindings=twice) == [
        "named    Group g in namespace shop: vault and secret by RoleBinding shop/a -> "
        "Role shop/r, RoleBinding shop/b -> Role shop/r"
    ]


def test_readers_of_every_secret_come_first_then_by_namespace_and_subject() -> None:
    cluster_roles = [role("admin", STAR), role("read-db", named(VAULT_RULE, V), PAIR_RULE)]
    crbs = [
        binding("read", "ClusterRole", "read-db", group("z"), sa("a", "x"), group("b")),
        binding("admin", "ClusterRole", "admin", group("y")),
    ]
    found = readers(V, PAIR, [], cluster_roles, [], crbs)
    assert [(r.every_secret, r.scope, r.who) for r in found] == [
        (True, EVERY_NAMESPACE, Who("Group", "y")),
        (False, EVERY_NAMESPACE, Who("Group", "b")),
        (False, EVERY_NAMESPACE, Who("Group", "z")),
        (False, "a", Who("ServiceAccount", "x", "a")),
    ]


def test_the_pieces_read_as_rbac_does() -> None:
    rule = Rule.of({"apiGroups": ["sakura-secrets.io"], "resources": ["secrets"]})
    assert rule == Rule(("sakura-secrets.io",), ("secrets",), ())
    assert not rule.allows("secrets", PAIR) and not rule.wildcard
    assert Rule(("*",), ("x",), ("get",)).wildcard
    assert str(Who("User", "alice", "ignored")) == "User alice"
    assert str(Who("ServiceAccount", "api", "shop")) == "ServiceAccount shop/api"
    grant = Grant("ClusterRoleBinding b", "ClusterRole r", wildcard=True, every_name=True)
    assert str(grant) == "ClusterRoleBinding b -> ClusterRole r [* rule]"
    assert not grant.named and Grant("b", "r").named
    assert not Grant("b", "r", every_name=True).named
    one = Grant("b", "r")
    assert not Reader(Who("Group", "g"), "", (one,), (Grant("b", "r", wildcard=True),)).every_secret
