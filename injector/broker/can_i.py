"""`sakura-secrets-injector can-i`: may a ServiceAccount read these secrets? Same reviewer.

One line per secret, `yes NAME` or `no NAME: <the missing grant>`; exit status 0 when every
secret is allowed, 1 otherwise, 2 for a usage error or when Kubernetes cannot answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from injector.broker.access import AccessReviewer, Subject, missing_grant
from injector.broker.tokens import KubernetesUnavailable
from plan import PlanError, SecretRef


class CanIUsageError(ValueError):
    """The arguments are not a namespace, a ServiceAccount and secret names."""


@dataclass(frozen=True)
class Answer:
    secret: str
    allowed: bool
    reason: str = ""

    def line(self) -> str:
        return f"yes {self.secret}" if self.allowed else f"no  {self.secret}: {self.reason}"


def secret_names(args: Sequence[str]) -> list[str]:
    """Names from NAME, NAME@VERSION, NAME#KEY (as written in annotations), without repeats."""
    if not args:
        raise CanIUsageError("name at least one secret, e.g. can-i -n shop --serviceaccount api db")
    try:
        return list(dict.fromkeys(SecretRef.parse(a).name for a in args))
    except PlanError as exc:
        raise CanIUsageError(str(exc)) from None


async def can_i(
    access: AccessReviewer, namespace: str, service_account: str, secrets: Sequence[str]
) -> list[Answer]:
    if not namespace or not service_account:
        raise CanIUsageError("--namespace and --serviceaccount are both required")
    subject = Subject.of(namespace, service_account)
    names = secret_names(secrets)
    denied = set(await access.denied(subject, names))
    return [
        Answer(n, n not in denied, missing_grant(subject, n) if n in denied else "") for n in names
    ]


async def run_can_i(
    access: AccessReviewer, namespace: str, service_account: str, secrets: Sequence[str]
) -> tuple[int, list[str]]:
    """The exit status and the lines to print (errors as one line too)."""
    try:
        answers = await can_i(access, namespace, service_account, secrets)
    except CanIUsageError as exc:
        return 2, [f"error: {exc}"]
    except KubernetesUnavailable as exc:
        return 2, [f"error: {exc}"]
    return (0 if all(a.allowed for a in answers) else 1), [a.line() for a in answers]


def add_can_i_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `can-i` subcommand's arguments (mounted by injector.cli)."""
    parser = commands.add_parser(
        "can-i",
        help="may a ServiceAccount read these Sakura secrets? (the broker's RBAC check)",
        description="One line per secret: 'yes NAME', or 'no NAME: <the missing grant>'. "
        "Exit status 0 when all are allowed, 1 when any is not, 2 on error.",
    )
    parser.add_argument("-n", "--namespace", required=True, help="the pod's namespace")
    parser.add_argument(
        "--serviceaccount", "--service-account", required=True, help="the pod's ServiceAccount"
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    parser.add_argument("secrets", nargs="+", metavar="SECRET", help="NAME (or NAME@V#KEY)")


def can_i_command(args: argparse.Namespace) -> int:
    """Run `can-i` from parsed arguments; prints answers to stdout, errors to stderr."""
    from injector.kube import KubeConfigError, api_client

    try:
        access = AccessReviewer(api_client(args.kubeconfig))
    except KubeConfigError as error:
        print(f"sakura-secrets-injector can-i: {error}", file=sys.stderr)
        return 2
    code, lines = asyncio.run(run_can_i(access, args.namespace, args.serviceaccount, args.secrets))
    out = sys.stderr if code == 2 else sys.stdout
    for line in lines:
        print(line, file=out)
    return code
