"""`doctor`: check an installation against a cluster, one line per check (docs/operations.md,
"Checking an installation: `doctor`"). Exit status 0 when no check fails (warnings allowed),
1 when one does, 2 for a usage error or a cluster that cannot be asked."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from injector.operations.errors import PreviewError, UsageError

DEFAULT_VAULT_ENV = "SAKURA_SECRETS_DEFAULT_VAULT_ID"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check an installation end to end: PASS/WARN/FAIL per check, with the fix",
        description="One line per check: PASS, WARN or FAIL, its finding and, when not "
        "passing, the fix. Exit status 1 when any check fails, 2 on error. It never reads the "
        "sakura-api-key Secret.",
    )
    doctor.add_argument(
        "-n", "--namespace", default="", help="a workload namespace: is it labelled and reachable"
    )
    doctor.add_argument(
        "--injector-namespace", default="sakura-secrets", help="where the injector is installed"
    )
    which = doctor.add_mutually_exclusive_group()
    which.add_argument("--pod", metavar="FILE", help="a Pod manifest (YAML or JSON; - for stdin)")
    which.add_argument("--deployment", metavar="NS/NAME", help="a live Deployment")
    doctor.add_argument(
        "--vault",
        default=os.environ.get(DEFAULT_VAULT_ENV, ""),
        help=f"the injector's default vault ID, for a workload that names none (default: "
        f"${DEFAULT_VAULT_ENV})",
    )
    doctor.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text: one line per check (default); json: a list of {check, status, summary, fix}",
    )
    doctor.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")


def run(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from injector.broker.errors import CanIUsageError
    from injector.kube import KubeConfigError, KubernetesUnavailable, api_client
    from injector.operations.doctor import gather, results
    from injector.operations.doctor.diagnosis import diagnose, diagnose_workload
    from injector.operations.doctor.facts import Install
    from injector.operations.doctor.workload import (
        Workload,
        installed_settings,
        pod_of_deployment,
        preview,
    )
    from injector.operations.render import load_pod
    from injector.webhook.errors import MalformedReview

    pod_text = _read(args.pod) if args.pod else ""
    ns, slash, name = (args.deployment or "").partition("/")
    if args.deployment and (not slash or not ns or not name):
        raise UsageError(f"--deployment {args.deployment!r}: write NAMESPACE/NAME")
    try:
        api = api_client(args.kubeconfig)
    except KubeConfigError as error:
        raise UsageError(str(error)) from None
    install = Install(namespace=args.injector_namespace)
    try:
        given = None
        if args.pod:
            try:
                pod = load_pod(pod_text)
            except PreviewError as error:
                raise UsageError(f"--pod {args.pod}: {error}") from None
            namespace = pod.get("metadata", {}).get("namespace") or args.namespace or "default"
            given = Workload(f"pod in {args.pod}", pod, namespace)
        elif args.deployment:
            live = gather.deployment(api, ns, name)
            if live is None:
                raise UsageError(f"--deployment {args.deployment}: no such Deployment")
            given = Workload(f"Deployment {ns}/{name}", pod_of_deployment(live), ns)
        namespace = given.namespace if given is not None else args.namespace
        facts = gather.gather(api, install, namespace)
        found = diagnose(facts, workload_given=given is not None)
        if given is not None:
            settings = installed_settings(facts.container_env(), install.namespace, args.vault)
            seen = preview(given, settings)
            labels = gather.namespace_labels(api, given.namespace)
            answers = gather.access_answers(api, given, seen)
            found += diagnose_workload(
                facts, given, labels, seen, answers, gather.dry_run(api, given)
            )
    except MalformedReview as error:
        raise UsageError(f"the workload cannot be reviewed: {error}") from None
    except CanIUsageError as error:
        raise UsageError(str(error)) from None
    except (gather.ClusterError, ApiException, KubernetesUnavailable, HTTPError, OSError) as error:
        print(
            f"sakura-secrets-injector doctor: the cluster did not answer: {error}", file=sys.stderr
        )
        return 2
    sys.stdout.write(
        results.as_json(found) + "\n" if args.output == "json" else results.text(found)
    )
    return results.exit_status(found)


def _read(filename: str) -> str:
    try:
        return sys.stdin.read() if filename == "-" else Path(filename).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read --pod {filename}: {error}") from None
