"""`who-can` against the local cluster's RBAC: its own Roles and bindings, and the built-ins."""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from injector.operations.cli import main

pytestmark = pytest.mark.cluster

RBAC_GROUP = "rbac.authorization.k8s.io"


def rule(resource: str, *names: str, verbs: tuple[str, ...] = ("get",)) -> k8s.V1PolicyRule:
    return k8s.V1PolicyRule(
        api_groups=["sakura-secrets.io"],
        resources=[resource],
        resource_names=list(names) or None,
        verbs=list(verbs),
    )


@pytest.fixture
def shop(kube: k8s.ApiClient) -> Iterator[tuple[str, str]]:
    """A namespace, a vault ID no other test grants, and a ServiceAccount granted V/db there;
    plus a ClusterRole with a `*` rule bound cluster-wide to a Group, removed afterwards."""
    suffix = uuid.uuid4().hex[:6]
    namespace, wide = f"who-can-{suffix}", f"who-can-wide-{suffix}"
    vault = str(random.randrange(10**11, 10**12))
    core, rbac = k8s.CoreV1Api(kube), k8s.RbacAuthorizationV1Api(kube)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    try:
        core.create_namespaced_service_account(
            namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="api"))
        )
        rbac.create_namespaced_role(
            namespace,
            k8s.V1Role(
                metadata=k8s.V1ObjectMeta(name="read-db"),
                rules=[rule("vaults", vault), rule("secrets", f"{vault}/db")],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            k8s.V1RoleBinding(
                metadata=k8s.V1ObjectMeta(name="read-db"),
                role_ref=k8s.V1RoleRef(api_group=RBAC_GROUP, kind="Role", name="read-db"),
                subjects=[
                    k8s.RbacV1Subject(kind="ServiceAccount", name="api", namespace=namespace)
                ],
            ),
        )
        rbac.create_cluster_role(
            k8s.V1ClusterRole(
                metadata=k8s.V1ObjectMeta(name=wide),
                rules=[rule("*"), rule("vaults", verbs=("*",))],
            )
        )
        rbac.create_cluster_role_binding(
            k8s.V1ClusterRoleBinding(
                metadata=k8s.V1ObjectMeta(name=wide),
                role_ref=k8s.V1RoleRef(api_group=RBAC_GROUP, kind="ClusterRole", name=wide),
                subjects=[k8s.RbacV1Subject(kind="Group", name=wide, api_group=RBAC_GROUP)],
            )
        )
        yield namespace, vault
    finally:
        for delete in (
            lambda: rbac.delete_cluster_role_binding(wide),
            lambda: rbac.delete_cluster_role(wide),
            lambda: core.delete_namespace(namespace),
        ):
            with contextlib.suppress(ApiException):
                delete()


def who_can(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["who-can", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_who_can_names_the_service_account_and_flags_wildcards(
    shop: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, vault = shop
    wide = namespace.replace("who-can-", "who-can-wide-")
    code, lines, err = who_can(capsys, f"{vault}/db@2#user")
    assert code == 0, err
    assert (
        f"named    ServiceAccount {namespace}/api in namespace {namespace}: vault and secret by "
        f"RoleBinding {namespace}/read-db -> Role {namespace}/read-db"
    ) in lines
    assert (
        f"WILDCARD Group {wide} in every namespace: vault and secret by ClusterRoleBinding "
        f"{wide} -> ClusterRole {wide} [* rule]"
    ) in lines
    assert (
        "WILDCARD Group system:masters in every namespace: vault and secret by "
        "ClusterRoleBinding cluster-admin -> ClusterRole cluster-admin [* rule]"
    ) in lines
    # wildcard readers first; the ServiceAccount is the only named reader of this new vault
    named = [line for line in lines if line.startswith("named")]
    assert lines[-len(named) :] == named and len(named) == 1

    # another secret of the vault: the wildcard readers only
    code, others, err = who_can(capsys, f"{vault}/other")
    assert code == 0, err
    assert others and all(line.startswith("WILDCARD") for line in others)
    assert not any(namespace + "/api" in line for line in others)


def test_who_can_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = who_can(capsys, "db")
    assert (code, lines) == (2, [])
    assert err == (
        "sakura-secrets-injector who-can: 'db' is not VAULT_ID/NAME: name the secret by its "
        "pair, e.g. who-can 123456789012/db-password\n"
    )
    code, lines, err = who_can(capsys, "123456789012/db@x")
    assert (code, lines) == (2, []) and "db@x" in err
