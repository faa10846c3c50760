"""`certs`: create or reuse the TLS Secret, keep the CA, patch the webhook's caBundle;
once, or as a renewal loop (docs/webhook.md explains each flag)."""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Mapping

from injector.operations.authority import Policy
from injector.operations.errors import BootstrapError, UsageError
from injector.operations.flags import (
    configure_logging,
    flagged,
    location_options,
    log_level_option,
    option,
)
from injector.setting import OutOfRange

DEFAULT_TLS_SECRET = "sakura-secrets-injector-tls"  # noqa: S105 (a Secret name)
DEFAULT_WEBHOOK_CONFIGURATION = "sakura-secrets-injector"
DEFAULT_CA_SECRET = "sakura-secrets-injector-ca"  # noqa: S105 (a Secret name)
POLICY_FLAGS = {"renew_before": "--renew-before", "overlap": "--ca-overlap"}
"""The fields of Policy a flag sets (in days)."""


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], env: Mapping[str, str]
) -> None:
    certs = commands.add_parser(
        "certs", help="create or reuse the TLS Secret and patch the webhook's caBundle"
    )
    location_options(certs, env)
    option(
        certs,
        env,
        "--secret",
        "SAKURA_SECRETS_TLS_SECRET",
        "kubernetes.io/tls Secret holding tls.crt, tls.key, ca.crt",
        DEFAULT_TLS_SECRET,
    )
    option(
        certs,
        env,
        "--webhook-configuration",
        "SAKURA_SECRETS_WEBHOOK_CONFIGURATION",
        "MutatingWebhookConfiguration whose caBundle is patched",
        DEFAULT_WEBHOOK_CONFIGURATION,
    )
    _renewal_options(certs, env)
    log_level_option(certs, env)


def run(args: argparse.Namespace) -> int:
    from injector.operations.certs_bootstrap import (
        BootstrapTarget,
        bootstrap,
        describe,
        kube_api_client,
        renew_forever,
    )

    configure_logging(args.log_level, args.log_format)
    target = BootstrapTarget(
        namespace=args.namespace,
        service=args.service,
        secret=args.secret,
        webhook_configuration=args.webhook_configuration,
        ca_secret=args.ca_secret,
    )
    policy = policy_from_args(args)
    if args.interval < 0:
        raise UsageError(f"--interval {args.interval:g} must be 0 (run once) or more")
    try:
        api = kube_api_client()
        if args.interval and not (args.once or args.rotate_ca):
            renew_forever(api, target, interval=args.interval, policy=policy)
            return 0
        result = bootstrap(api, target, policy=policy, rotate_ca=args.rotate_ca)
    except BootstrapError as error:
        print(f"sakura-secrets-injector certs: {error}", file=sys.stderr)
        return 1
    print(describe(result))
    return 0


def policy_from_args(args: argparse.Namespace) -> Policy:
    """The renewal policy from the parsed flags (days); UsageError names the flag to fix."""
    try:
        return Policy(
            renew_before=datetime.timedelta(days=args.renew_before),
            overlap=datetime.timedelta(days=args.ca_overlap),
        )
    except OutOfRange as error:
        raise flagged(error, args, POLICY_FLAGS) from None


def _renewal_options(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """How `certs` keeps the CA and renews; docs/webhook.md explains each."""
    option(
        parser,
        env,
        "--ca-secret",
        "SAKURA_SECRETS_CA_SECRET",
        "Secret holding the CA key (ca.crt, ca.key, retired.crt); only certs may read it",
        DEFAULT_CA_SECRET,
    )
    option(
        parser,
        env,
        "--interval",
        "SAKURA_SECRETS_CERTS_INTERVAL",
        "seconds between renewal checks; 0 runs once and exits",
        0.0,
        float,
    )
    option(
        parser,
        env,
        "--renew-before",
        "SAKURA_SECRETS_RENEW_BEFORE",
        "days before expiry the serving certificate is renewed (a wide window forces a renewal)",
        30.0,
        float,
    )
    option(
        parser,
        env,
        "--ca-overlap",
        "SAKURA_SECRETS_CA_OVERLAP",
        "days a CA rotation keeps serving the old CA's certificate while both CAs are trusted",
        30.0,
        float,
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="run one round and exit, whatever --interval says (kubectl exec into the loop)",
    )
    parser.add_argument(
        "--rotate-ca",
        action="store_true",
        help="make a new CA now (trusted at once, signing after --ca-overlap); implies --once",
    )
