"""A given pod or Deployment: would the webhook inject it (its pure core run offline on the
installed settings, as `render` does), may its ServiceAccount read every secret it names
(SubjectAccessReviews, as `can-i`), and what the installed injector answers a server-side
dry run of it (the key and the vault, for real)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from contract import Broker, Plan
from contract.annotations import INJECT, STATUS, STATUS_INJECTED, STATUS_WARNINGS
from injector.broker.can_i import Answer
from injector.broker.credentials import HOW_TO_FIX, REJECTED
from injector.operations.doctor.facts import INJECTION_LABEL, Facts, Json
from injector.operations.doctor.install import our_webhook
from injector.operations.doctor.results import Result, Status
from injector.operations.doctor.selectors import selects
from injector.operations.flags import settings_from_args, settings_options
from injector.operations.reviews import pod_create_review
from injector.serving.review_queue import review
from injector.webhook.checks import CheckOutcome
from injector.webhook.decision import Decision, Injected, ReasonCode, Refused, Skipped
from injector.webhook.settings import WebhookSettings

LOCAL_ONLY = ("SAKURA_SECRETS_BROKER_CA_FILE",)
"""Settings naming files inside the injector's pod, which this machine does not have."""


@dataclass(frozen=True)
class Preview:
    """The offline review of the workload's pod; the ServiceAccount and plan the webhook would
    check ("" and None when it did not get that far)."""

    decision: Decision
    service_account: str
    plan: Plan | None = None


@dataclass(frozen=True)
class DryRun:
    """The API server's answer to creating the pod with dryRun=All through the real webhook."""

    created: Json | None = None
    refusal: str = ""


@dataclass(frozen=True)
class Workload:
    what: str
    """`Deployment NS/NAME` or `pod in FILE`."""
    pod: Json
    namespace: str


class _Capture:
    """The admission check of the preview: admits, and keeps the ServiceAccount and plan."""

    def __init__(self) -> None:
        self.checked: tuple[str, Plan] | None = None

    async def __call__(self, namespace: str, service_account: str, plan: Plan) -> CheckOutcome:
        self.checked = (service_account, plan)
        return CheckOutcome()


def installed_settings(env: Mapping[str, str], namespace: str, vault: str) -> WebhookSettings:
    """The webhook settings of the installed Deployment's literal env (its flags' twins);
    UsageError when they do not parse."""
    source = {k: v for k, v in env.items() if k not in LOCAL_ONLY}
    source["POD_NAMESPACE"] = namespace
    if vault:
        source["SAKURA_SECRETS_DEFAULT_VAULT_ID"] = vault
    parser = argparse.ArgumentParser()
    settings_options(parser, source, image_default="sakura-secrets-injector")
    return settings_from_args(parser.parse_args([]), source)


def preview(workload: Workload, settings: WebhookSettings) -> Preview:
    """The webhook's decision for the pod, offline (MalformedReview when it is no pod)."""
    body = pod_create_review(workload.pod, namespace=workload.namespace, uid="doctor")
    capture = _Capture()
    decision = asyncio.run(review(json.dumps(body).encode(), settings=settings, check=capture))
    if capture.checked is None:
        return Preview(decision, "")
    return Preview(decision, *capture.checked)


def pod_of_deployment(deployment: Json) -> Json:
    """The Pod its ReplicaSet would create (template, namespace, a generated name)."""
    metadata = deployment.get("metadata", {})
    template = deployment.get("spec", {}).get("template", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **template.get("metadata", {}),
            "namespace": metadata.get("namespace", "default"),
            "generateName": f"{metadata.get('name', 'doctor')}-",
        },
        "spec": template.get("spec", {}),
    }


def injection(facts: Facts, workload: Workload, labels: Mapping[str, str], seen: Preview) -> Result:
    check = "workload-injection"
    ns = workload.namespace
    hook = our_webhook(facts)
    if hook is not None and not selects(hook.get("namespaceSelector"), labels):
        return Result(
            check,
            Status.FAIL,
            f"{workload.what}: namespace {ns} is not selected by the webhook, so it is never "
            "injected",
            f"kubectl label namespace {ns} {INJECTION_LABEL}=enabled",
        )
    decision = seen.decision
    if isinstance(decision, Injected):
        assert seen.plan is not None  # an injected pod went through the check
        return Result(
            check,
            Status.PASS,
            f"{workload.what} would be injected: {len(seen.plan.secrets())} secret(s) of vault "
            f"{seen.plan.vault_id} (the webhook's core, offline, with the installed settings)",
        )
    if isinstance(decision, Skipped):
        fixes = {
            ReasonCode.NOT_OPTED_IN: f'annotate the pod (template) with {INJECT}: "true"',
            ReasonCode.OPTED_OUT: f'set {INJECT}: "true" on the pod (template)',
        }
        return Result(
            check,
            Status.FAIL,
            f"{workload.what} would not be injected ({decision.reason_code}): {decision.reason}",
            fixes.get(decision.reason_code, ""),
        )
    assert isinstance(decision, Refused)
    return Result(
        check,
        Status.FAIL,
        f"{workload.what} would be refused ({decision.reason_code}): {decision.message}",
        "--vault VAULT_ID names the default vault to doctor"
        if "no vault" in decision.message
        else "",
    )


def access(workload: Workload, seen: Preview, answers: Sequence[Answer] | None) -> Result | None:
    """None when there is nothing to review (not injected, or Sakura read with its own key)."""
    plan = seen.plan
    if plan is None or not isinstance(plan.mode, Broker) or answers is None:
        return None
    who = f"serviceaccount {workload.namespace}/{seen.service_account}"
    denied = [a for a in answers if not a.allowed]
    if denied:
        return Result(
            "workload-access",
            Status.FAIL,
            f"{who} may not read {', '.join(a.what for a in denied)}",
            # each reason: "... may not get ...; grant it with ..."; the fix is its second half
            "; ".join(a.reason.partition("; ")[2] or a.reason for a in denied),
        )
    return Result(
        "workload-access",
        Status.PASS,
        f"{who} may read {', '.join(a.what for a in answers)} (SubjectAccessReviews)",
    )


def admission(workload: Workload, answer: DryRun) -> Result:
    check = "workload-admission"
    if answer.created is None:
        fix = ""
        if "x509" in answer.refusal:
            fix = "see ca-bundle"
        elif "deadline exceeded" in answer.refusal or "connection refused" in answer.refusal:
            fix = "see replicas and network-policy"
        return Result(
            check,
            Status.FAIL,
            f"the API server refused a server-side dry run of {workload.what}: {answer.refusal}",
            fix,
        )
    annotations = answer.created.get("metadata", {}).get("annotations") or {}
    if annotations.get(STATUS) != STATUS_INJECTED:
        return Result(
            check,
            Status.FAIL,
            f"a server-side dry run of {workload.what} was admitted without injection",
            "see namespace and workload-injection",
        )
    warnings = [w for w in annotations.get(STATUS_WARNINGS, "").split("\n") if w]
    unchecked = [w for w in warnings if "Sakura" in w or "could not" in w]
    if unchecked:
        return Result(
            check,
            Status.FAIL if any(REJECTED in w for w in unchecked) else Status.WARN,
            f"a server-side dry run of {workload.what} was injected unchecked: "
            + "; ".join(unchecked),
            HOW_TO_FIX if any(REJECTED in w for w in unchecked) else "",
        )
    return Result(
        check,
        Status.PASS,
        f"a server-side dry run of {workload.what} was injected by the installed injector "
        "(its key listed the vault and every secret exists)",
    )
