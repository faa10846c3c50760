"""Who may read a secret? The cluster's RBAC objects, read as the API server's authorizer does.

Pure: the Roles, ClusterRoles, RoleBindings and ClusterRoleBindings come in as the API's JSON
objects (rbac.authorization.k8s.io/v1; aggregated ClusterRoles already hold their rules), with
the fields the API always writes (names, namespaces, roleRef, a subject's kind and name). A rule
opens `get` on a resource of `sakura-secrets.io` when its apiGroups hold the group or `*`, its
resources the resource or `*`, its verbs `get` or `*`, and its resourceNames are empty (every
name) or hold the name. A secret is read only with two grants in one namespace: the vault
(`vaults` named by its ID) and the pair (`secrets` named `VAULT_ID/NAME`). A RoleBinding grants
in its own namespace, a ClusterRoleBinding in every namespace. The broker reviews a
ServiceAccount in its own namespace (the pod's), so a RoleBinding elsewhere opens nothing to it.
A `*` rule (cluster-admin's) opens every secret of every vault: such grants are flagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from injector.broker.access import API_GROUP, SECRETS, VAULTS, VERB

WILDCARD = "*"
EVERY_NAMESPACE = ""
"""The scope of a ClusterRoleBinding's grant."""
SERVICE_ACCOUNT = "ServiceAccount"

Json = Mapping[str, Any]


@dataclass(frozen=True)
class Rule:
    """One PolicyRule (nonResourceURLs rules have no resources, so they match nothing here)."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    resource_names: tuple[str, ...] = ()

    @classmethod
    def of(cls, rule: Json) -> Rule:
        def strings(key: str) -> tuple[str, ...]:
            return tuple(rule.get(key) or ())

        return cls(
            strings("apiGroups"), strings("resources"), strings("verbs"), strings("resourceNames")
        )

    def allows(self, resource: str, name: str) -> bool:
        """May this rule `get` `name` of `resource` in API group sakura-secrets.io?"""
        return (
            _holds(self.api_groups, API_GROUP)
            and _holds(self.resources, resource)
            and _holds(self.verbs, VERB)
            and (not self.resource_names or name in self.resource_names)
        )

    @property
    def wildcard(self) -> bool:
        """A `*` in apiGroups, resources or verbs: not a sakura-secrets rule, it opens more."""
        return WILDCARD in self.api_groups + self.resources + self.verbs


def _holds(values: tuple[str, ...], wanted: str) -> bool:
    return wanted in values or WILDCARD in values


@dataclass(frozen=True, order=True)
class Who:
    """A binding's subject: kind ServiceAccount (with its namespace), User or Group."""

    kind: str
    name: str
    namespace: str = ""

    def __str__(self) -> str:
        if self.kind == SERVICE_ACCOUNT:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, order=True)
class Grant:
    """Which binding and role open one of the two grants, and how broadly."""

    binding: str
    """`RoleBinding NS/NAME` or `ClusterRoleBinding NAME`."""
    role: str
    """`Role NS/NAME` or `ClusterRole NAME`."""
    wildcard: bool = False
    """Through a `*` rule (apiGroups, resources or verbs) without resourceNames."""
    every_name: bool = False
    """Through a rule without resourceNames: every vault, or every secret of a granted vault."""

    def __str__(self) -> str:
        tag = " [* rule]" if self.wildcard else " [every name]" if self.every_name else ""
        return f"{self.binding} -> {self.role}{tag}"

    @property
    def named(self) -> bool:
        return not self.wildcard and not self.every_name


@dataclass(frozen=True)
class Reader:
    """A subject that may read the secret in `scope` (a namespace, or EVERY_NAMESPACE)."""

    who: Who
    scope: str
    vault: tuple[Grant, ...]
    pair: tuple[Grant, ...]

    @property
    def every_secret(self) -> bool:
        """True when some vault grant and some pair grant name nothing: it reads every
        secret of every vault in its scope, not this one only."""
        return any(not g.named for g in self.vault) and any(not g.named for g in self.pair)

    def line(self) -> str:
        flag = "WILDCARD" if self.every_secret else "named   "
        where = "every namespace" if self.scope == EVERY_NAMESPACE else f"namespace {self.scope}"
        vault = ", ".join(map(str, self.vault))
        if self.vault == self.pair:
            return f"{flag} {self.who} in {where}: vault and secret by {vault}"
        pair = ", ".join(map(str, self.pair))
        return f"{flag} {self.who} in {where}: vault by {vault}; secret by {pair}"


Grants = dict[tuple[Who, str], set[Grant]]
"""(subject, the namespace it reads in, or EVERY_NAMESPACE) -> the grants that open it."""


def readers(
    vault_id: str,
    pair: str,
    roles: Iterable[Json],
    cluster_roles: Iterable[Json],
    role_bindings: Iterable[Json],
    cluster_role_bindings: Iterable[Json],
) -> list[Reader]:
    """Every subject granted both the vault and the pair in one scope; readers of every
    secret first, then by scope and subject."""
    rules = {("ClusterRole", "", _name(r)): _rules(r) for r in cluster_roles}
    rules.update({("Role", _namespace(r), _name(r)): _rules(r) for r in roles})
    bindings = [(b, _namespace(b)) for b in role_bindings]
    bindings += [(b, EVERY_NAMESPACE) for b in cluster_role_bindings]
    vaults = _granted(rules, bindings, VAULTS, vault_id)
    pairs = _granted(rules, bindings, SECRETS, pair)
    found = []
    for who, scope in sorted(set(vaults) | set(pairs)):
        where = {(who, scope), (who, EVERY_NAMESPACE)}  # a cluster-wide grant holds here too
        vault: set[Grant] = set().union(*(vaults.get(k, ()) for k in where))
        secret: set[Grant] = set().union(*(pairs.get(k, ()) for k in where))
        if vault and secret:
            found.append(Reader(who, scope, tuple(sorted(vault)), tuple(sorted(secret))))
    return sorted(found, key=lambda r: (not r.every_secret, r.scope, r.who))


def _granted(
    rules: Mapping[tuple[str, str, str], tuple[Rule, ...]],
    bindings: Iterable[tuple[Json, str]],
    resource: str,
    name: str,
) -> Grants:
    """Who each binding (in its scope) lets `get` `name` of `resource`, and where."""
    grants: Grants = {}
    for binding, scope in bindings:
        ref = binding["roleRef"]
        kind, role_name = ref["kind"], ref["name"]
        role_rules = rules.get((kind, scope if kind == "Role" else "", role_name), ())
        label = _name(binding)
        grant = _grant(
            role_rules,
            resource,
            name,
            f"RoleBinding {scope}/{label}" if scope else f"ClusterRoleBinding {label}",
            f"Role {scope}/{role_name}" if kind == "Role" else f"ClusterRole {role_name}",
        )
        if grant is None:
            continue
        for who in _subjects(binding, scope):
            reach = who.namespace if who.kind == SERVICE_ACCOUNT else scope
            if scope in (EVERY_NAMESPACE, reach):
                grants.setdefault((who, reach), set()).add(grant)
    return grants


def _grant(
    rules: Iterable[Rule], resource: str, name: str, binding: str, role: str
) -> Grant | None:
    """The grant the role's rules give (named before every-name before `*`), or None."""
    matching = [r for r in rules if r.allows(resource, name)]
    if not matching:
        return None
    if any(r.resource_names for r in matching):
        return Grant(binding, role)
    if any(not r.wildcard for r in matching):
        return Grant(binding, role, every_name=True)
    return Grant(binding, role, wildcard=True)


def _subjects(binding: Json, scope: str) -> list[Who]:
    """The binding's subjects; a ServiceAccount without a namespace is the binding's."""
    return [
        Who(
            s["kind"],
            s["name"],
            (s.get("namespace") or scope) if s["kind"] == SERVICE_ACCOUNT else "",
        )
        for s in binding.get("subjects") or ()
    ]


def _rules(role: Json) -> tuple[Rule, ...]:
    return tuple(Rule.of(r) for r in role.get("rules") or ())


def _name(obj: Json) -> str:
    return str(obj["metadata"]["name"])


def _namespace(obj: Json) -> str:
    return str(obj["metadata"]["namespace"])
