"""`sakura-secrets-injector can-i`: may a ServiceAccount read these secrets? Same reviewer.

A first line for the vault, `yes vault ID` or `no  vault ID: <the missing grant>`, then one
line per secret's pair, `yes ID/NAME` or `no  ID/NAME: <the missing grant>`; a secret is read
only when both its vault and its pair are granted. Unlike the broker, `can-i` reviews every
pair even when the vault is denied, so an admin sees every grant to add at once. Exit status 0
when the vault and every pair are allowed, 1 otherwise, 2 for a usage error or when Kubernetes
cannot answer. The vault is `--vault`, else $SAKURA_SECRETS_DEFAULT_VAULT_ID (set inside the
injector's pod); neither is a usage error. `can-i` never reads the injector's `sakura-api-key`
Secret, where the manifests keep the default vault: whoever checks a grant needs no access to
the Sakura key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from contract import PlanError, SecretRef
from contract.plan import VAULT_ID
from injector.broker.access import (
    SECRETS,
    VAULTS,
    AccessReviewer,
    Subject,
    missing_grant,
    secret_pair,
)
from injector.broker.errors import CanIUsageError
from injector.kube import KubernetesUnavailable

DEFAULT_VAULT_ENV = "SAKURA_SECRETS_DEFAULT_VAULT_ID"
NO_VAULT = (
    f"name the vault with --vault VAULT_ID (or set ${DEFAULT_VAULT_ENV}); can-i does not read "
    "the injector's sakura-api-key Secret to find its default vault"
)


@dataclass(frozen=True)
class Answer:
    """`what` is a secret's pair `ID/NAME`, or `vault ID` for the vault's own grant."""

    what: str
    allowed: bool
    reason: str = ""

    def line(self) -> str:
        return f"yes {self.what}" if self.allowed else f"no  {self.what}: {self.reason}"


def secret_names(args: Sequence[str]) -> list[str]:
    """Names from NAME, NAME@VERSION, NAME#KEY (as written in annotations), without repeats."""
    if not args:
        raise CanIUsageError("name at least one secret, e.g. can-i -n shop --serviceaccount api db")
    try:
        return list(dict.fromkeys(SecretRef.parse(a).name for a in args))
    except PlanError as exc:
        raise CanIUsageError(str(exc)) from None


async def can_i(
    access: AccessReviewer,
    namespace: str,
    service_account: str,
    vault_id: str,
    secrets: Sequence[str],
) -> list[Answer]:
    """The vault's answer, then each secret's pair (a secret needs both grants to be read)."""
    if not namespace or not service_account:
        raise CanIUsageError("--namespace and --serviceaccount are both required")
    if not VAULT_ID.match(vault_id):
        raise CanIUsageError(f"--vault {vault_id!r} is not a 12-digit Sakura vault ID")
    subject = Subject.of(namespace, service_account)
    asked = [(VAULTS, vault_id)] + [
        (SECRETS, secret_pair(vault_id, n)) for n in secret_names(secrets)
    ]
    allowed = await asyncio.gather(*(access.allowed(subject, r, name) for r, name in asked))
    return [
        Answer(
            f"vault {name}" if resource == VAULTS else name,
            ok,
            "" if ok else missing_grant(subject, resource, name),
        )
        for (resource, name), ok in zip(asked, allowed, strict=True)
    ]


async def run_can_i(
    access: AccessReviewer,
    namespace: str,
    service_account: str,
    vault_id: str,
    secrets: Sequence[str],
) -> tuple[int, list[str]]:
    """The exit status and the lines to print (errors as one line too)."""
    try:
        answers = await can_i(access, namespace, service_account, vault_id, secrets)
    except CanIUsageError as exc:
        return 2, [f"error: {exc}"]
    except KubernetesUnavailable as exc:
        return 2, [f"error: {exc}"]
    return (0 if all(a.allowed for a in answers) else 1), [a.line() for a in answers]


def add_can_i_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `can-i` subcommand's arguments (mounted by injector.operations.cli)."""
    parser = commands.add_parser(
        "can-i",
        help="may a ServiceAccount read these Sakura secrets? (the broker's RBAC check)",
        description="One line for the vault, then one per secret's pair VAULT_ID/NAME: "
        "'yes VAULT_ID/NAME', or 'no VAULT_ID/NAME: <the missing grant>'. A secret is read "
        "only when its vault and its pair are both granted. Exit status 0 when all are "
        "allowed, 1 when any is not, 2 on error.",
    )
    parser.add_argument("-n", "--namespace", required=True, help="the pod's namespace")
    parser.add_argument(
        "--serviceaccount", "--service-account", required=True, help="the pod's ServiceAccount"
    )
    parser.add_argument(
        "--vault",
        help=f"the 12-digit vault ID (default: ${DEFAULT_VAULT_ENV}; one of them is required)",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    parser.add_argument(
        "secrets",
        nargs="+",
        metavar="SECRET",
        help="NAME (or NAME@V#KEY) in the vault; reviewed as the pair VAULT_ID/NAME",
    )


def can_i_command(args: argparse.Namespace) -> int:
    """Run `can-i` from parsed arguments; prints answers to stdout, errors to stderr."""
    from injector.kube import KubeConfigError, api_client

    vault_id = args.vault or os.environ.get(DEFAULT_VAULT_ENV)
    if not vault_id:
        print(f"sakura-secrets-injector can-i: {NO_VAULT}", file=sys.stderr)
        return 2
    try:
        api = api_client(args.kubeconfig)
    except KubeConfigError as error:
        print(f"sakura-secrets-injector can-i: {error}", file=sys.stderr)
        return 2
    access = AccessReviewer(api)
    code, lines = asyncio.run(
        run_can_i(access, args.namespace, args.serviceaccount, vault_id, args.secrets)
    )
    out = sys.stderr if code == 2 else sys.stdout
    for line in lines:
        print(line, file=out)
    return code
