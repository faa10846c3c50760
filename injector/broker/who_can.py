"""`sakura-secrets-injector who-can VAULT_ID/NAME`: who may read this secret? From RBAC itself.

It lists the cluster's Roles, ClusterRoles, RoleBindings and ClusterRoleBindings (whoever runs
it needs `list` on them, cluster-wide) and prints `injector.broker.readers`' answer, one line
per subject and namespace; `WILDCARD` lines read every secret of every vault there (a `*` rule
such as cluster-admin's, or rules without resourceNames). Exit status 0, 2 for a usage error
or when Kubernetes cannot answer. It never reads a Secret.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from contract import PlanError, SecretRef
from contract.plan import VAULT_ID
from injector.broker.access import secret_pair
from injector.broker.errors import CanIUsageError
from injector.broker.readers import Reader, readers
from injector.kube import KUBE_TIMEOUT


def parse_pair(text: str) -> tuple[str, str]:
    """`VAULT_ID/NAME` (NAME as in annotations: NAME@V#KEY is accepted) -> (vault ID, pair)."""
    vault_id, slash, ref = text.partition("/")
    if not slash or not VAULT_ID.match(vault_id):
        raise CanIUsageError(
            f"{text!r} is not VAULT_ID/NAME: name the secret by its pair, "
            "e.g. who-can 123456789012/db-password"
        )
    try:
        name = SecretRef.parse(ref).name
    except PlanError as exc:
        raise CanIUsageError(str(exc)) from None
    return vault_id, secret_pair(vault_id, name)


def who_can(api: k8s.ApiClient, vault_id: str, pair: str) -> list[Reader]:
    """The cluster's readers of the pair; KubernetesUnavailable-like errors as CanIUsageError."""
    rbac = k8s.RbacAuthorizationV1Api(api)
    listings = (
        ("roles", rbac.list_role_for_all_namespaces),
        ("clusterroles", rbac.list_cluster_role),
        ("rolebindings", rbac.list_role_binding_for_all_namespaces),
        ("clusterrolebindings", rbac.list_cluster_role_binding),
    )
    items: list[list[Any]] = []
    for what, listing in listings:
        try:
            # the raw answer (a urllib3 response): the JSON as the API server wrote it
            answer: Any = listing(_preload_content=False, _request_timeout=KUBE_TIMEOUT)
        except ApiException as exc:
            raise CanIUsageError(
                f"cannot list {what}.rbac.authorization.k8s.io (HTTP {exc.status} "
                f"{exc.reason}); who-can needs list on Roles, ClusterRoles and their bindings "
                "in every namespace"
            ) from None
        except Exception as exc:
            raise CanIUsageError(
                f"the Kubernetes API did not answer the list of {what} ({type(exc).__name__}); "
                "try again shortly"
            ) from None
        items.append(json.loads(answer.data).get("items") or [])
    roles, cluster_roles, role_bindings, cluster_role_bindings = items
    return readers(vault_id, pair, roles, cluster_roles, role_bindings, cluster_role_bindings)


def add_who_can_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `who-can` subcommand's arguments (mounted by injector.operations.cli)."""
    parser = commands.add_parser(
        "who-can",
        help="who may read this Sakura secret? (ServiceAccounts, users and groups, from RBAC)",
        description="One line per subject that RBAC grants both the vault and the pair "
        "VAULT_ID/NAME, with the namespace it reads in and the bindings and roles that grant "
        "it. Lines flagged WILDCARD read every secret of every vault there (cluster-admin and "
        "other '*' rules, or rules without resourceNames). Exit status 0, 2 on error.",
    )
    parser.add_argument("secret", metavar="VAULT_ID/NAME", help="the secret, by its pair")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")


def who_can_command(args: argparse.Namespace) -> int:
    """Run `who-can` from parsed arguments; prints readers to stdout, errors to stderr."""
    from injector.kube import KubeConfigError, api_client

    try:
        vault_id, pair = parse_pair(args.secret)
        found = who_can(api_client(args.kubeconfig), vault_id, pair)
    except (KubeConfigError, CanIUsageError) as error:
        print(f"sakura-secrets-injector who-can: {error}", file=sys.stderr)
        return 2
    if not found:
        print(f"nobody may read {pair} (no subject is granted both its vault and its pair)")
    for reader in found:
        print(reader.line())
    return 0
