"""The installation's own objects: the webhook configuration, the replicas and their budget,
matchConditions for the cluster's version, the namespace label, and what the replicas say
about the Sakura key."""

from __future__ import annotations

from typing import Any

from injector.broker.credentials import HOW_TO_FIX, REJECTED
from injector.operations.doctor.facts import CERTS, INJECTION_LABEL, Facts, Json
from injector.operations.doctor.results import Finding, Result, Status, judged
from injector.operations.doctor.selectors import selects

APPLY = (
    "kubectl apply -k manifests/ (Kubernetes 1.30+; manifests/legacy on 1.21 to 1.29, "
    "manifests/legacy-1.20 on 1.20)"
)
DEFAULT_TIMEOUT = 10.0
"""The injector's --webhook-timeout default, equal to the manifests' timeoutSeconds."""
MATCH_CONDITIONS_SINCE = 28
"""Kubernetes 1.28 uses matchConditions by default (GA in 1.30); older servers drop them."""


def our_webhook(facts: Facts) -> Json | None:
    """The configuration's webhook that calls the injector's Service (None without one)."""
    if facts.webhook is None:
        return None
    for hook in facts.webhook.get("webhooks") or []:
        service = hook.get("clientConfig", {}).get("service") or {}
        if (service.get("namespace"), service.get("name")) == (
            facts.install.namespace,
            facts.install.name,
        ):
            return dict(hook)
    return None


def webhook_configuration(facts: Facts) -> Result:
    check = "webhook-configuration"
    name = facts.install.name
    if facts.webhook is None:
        return Result(check, Status.FAIL, f"MutatingWebhookConfiguration {name} not found", APPLY)
    hook = our_webhook(facts)
    if hook is None:
        return Result(
            check,
            Status.FAIL,
            f"no webhook of MutatingWebhookConfiguration {name} calls Service "
            f"{facts.install.namespace}/{name}",
            APPLY,
        )
    findings = []
    policy = hook.get("failurePolicy", "Fail")
    if policy != "Fail":
        findings.append(
            Finding(
                Status.WARN,
                f"failurePolicy is {policy}: while no replica answers, pods that asked for "
                "secrets start without them",
                "set failurePolicy: Fail (the manifests' choice; docs/webhook.md, "
                '"failurePolicy: Fail") unless you chose Ignore on purpose',
            )
        )
    timeout = float(hook.get("timeoutSeconds", 10))
    answers_within = _float(facts.container_env().get("SAKURA_SECRETS_WEBHOOK_TIMEOUT"))
    if timeout != answers_within:
        findings.append(
            Finding(
                Status.WARN,
                f"timeoutSeconds is {timeout:g} but the injector sheds reviews it cannot "
                f"answer within {answers_within:g}s (SAKURA_SECRETS_WEBHOOK_TIMEOUT)",
                "make the webhook's timeoutSeconds and the Deployment's "
                "SAKURA_SECRETS_WEBHOOK_TIMEOUT equal",
            )
        )
    labels = (hook.get("namespaceSelector") or {}).get("matchLabels") or {}
    if labels.get(INJECTION_LABEL) != "enabled":
        findings.append(
            Finding(
                Status.FAIL,
                f"its namespaceSelector does not ask for {INJECTION_LABEL}=enabled",
                APPLY,
            )
        )
    return judged(
        check,
        findings,
        f"{name}: failurePolicy {policy}, timeoutSeconds {timeout:g}, namespaces labelled "
        f"{INJECTION_LABEL}=enabled",
    )


def _float(value: str | None) -> float:
    try:
        return float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT


def replicas(facts: Facts) -> Result:
    check = "replicas"
    ns, name = facts.install.namespace, facts.install.name
    logs = (
        f"kubectl -n {ns} describe pods -l app.kubernetes.io/component=injector; "
        f"kubectl -n {ns} logs deploy/{name}"
    )
    if facts.deployment is None:
        return Result(check, Status.FAIL, f"Deployment {ns}/{name} not found", APPLY)
    ready, wanted = _ready(facts.deployment)
    findings = []
    if ready == 0:
        findings.append(
            Finding(
                Status.FAIL,
                f"0 of {wanted} injector replicas ready: opted-in pods are refused "
                "(failurePolicy Fail)",
                logs,
            )
        )
    elif ready < wanted:
        findings.append(Finding(Status.WARN, f"{ready} of {wanted} replicas ready", logs))
    if 0 < wanted < 2:
        findings.append(
            Finding(
                Status.WARN,
                f"{wanted} replica: losing its node refuses opted-in pods until it is back",
                f"kubectl -n {ns} scale deploy/{name} --replicas 2",
            )
        )
    certs = facts.certs_deployment
    certs_name = CERTS
    if certs is None or _ready(certs)[0] == 0:
        findings.append(
            Finding(
                Status.WARN,
                f"Deployment {ns}/{certs_name} has no ready replica: certificates are not renewed",
                f"kubectl -n {ns} describe deploy/{certs_name}; kubectl -n {ns} logs "
                f"deploy/{certs_name}",
            )
        )
    return judged(check, findings, f"{ready} of {wanted} injector replicas ready; certs ready")


def _ready(deployment: Json) -> tuple[int, int]:
    wanted = deployment.get("spec", {}).get("replicas", 1)
    return int(deployment.get("status", {}).get("readyReplicas") or 0), int(wanted)


def disruption_budget(facts: Facts) -> Result:
    check = "disruption-budget"
    ns, name = facts.install.namespace, facts.install.name
    if facts.pdb is None:
        return Result(
            check,
            Status.WARN,
            f"no PodDisruptionBudget {ns}/{name}: a node drain may evict every replica at once",
            APPLY,
        )
    minimum = facts.pdb.get("spec", {}).get("minAvailable")
    wanted = _ready(facts.deployment)[1] if facts.deployment is not None else 0
    if isinstance(minimum, int) and wanted and minimum >= wanted:
        return Result(
            check,
            Status.WARN,
            f"minAvailable {minimum} with {wanted} replica(s): a node drain waits until "
            "another replica runs",
            f"kubectl -n {ns} scale deploy/{name} --replicas {minimum + 1}",
        )
    return Result(check, Status.PASS, f"{name}: minAvailable {minimum} of {wanted} replicas")


def match_conditions(facts: Facts) -> Result:
    check = "match-conditions"
    hook = our_webhook(facts)
    if hook is None:
        return Result(check, Status.WARN, "not checked: no webhook configuration", APPLY)
    major, minor = facts.server_version
    version = f"{major}.{minor.rstrip('+')}"
    present = bool(hook.get("matchConditions"))
    if _minor(minor) >= MATCH_CONDITIONS_SINCE:
        if present:
            return Result(
                check, Status.PASS, f"present (Kubernetes {version}): only opted-in pods wait"
            )
        return Result(
            check,
            Status.WARN,
            f"absent on Kubernetes {version}: every pod created in a labelled namespace waits "
            "on the injector, not only those that opted in",
            "kubectl apply -k manifests/ (Kubernetes 1.30+; the legacy variants have none)",
        )
    return Result(
        check,
        Status.PASS,
        f"not supported by Kubernetes {version} (the legacy manifests): every pod of a "
        "labelled namespace goes through the webhook",
    )


def _minor(minor: str) -> int:
    digits = "".join(c for c in minor if c.isdigit())
    return int(digits) if digits else 0


def namespace_label(facts: Facts) -> Result:
    check = "namespace"
    ns = facts.namespace
    label = f"kubectl label namespace {ns} {INJECTION_LABEL}=enabled"
    if facts.namespace_object is None:
        return Result(
            check,
            Status.FAIL,
            f"namespace {ns} not found",
            f"kubectl create namespace {ns}; {label}",
        )
    labels = facts.namespace_object.get("metadata", {}).get("labels") or {}
    if ns in (facts.install.namespace, "kube-system"):
        return Result(
            check,
            Status.FAIL,
            f"pods of {ns} are never injected (the injector's own namespace and kube-system "
            "are excluded)",
            "run the workload in another namespace",
        )
    if labels.get(INJECTION_LABEL) != "enabled":
        return Result(
            check,
            Status.FAIL,
            f"namespace {ns} lacks the label {INJECTION_LABEL}=enabled: its pods are never "
            "injected",
            label,
        )
    hook = our_webhook(facts)
    selector: Any = (hook or {}).get("namespaceSelector")
    if hook is not None and not selects(selector, labels):
        return Result(
            check,
            Status.FAIL,
            f"namespace {ns} is labelled but the webhook's namespaceSelector does not select "
            f"it ({selector})",
            f"give namespace {ns} the labels the namespaceSelector asks for, or apply the "
            "manifests' selector",
        )
    return Result(
        check,
        Status.PASS,
        f"{ns} is labelled {INJECTION_LABEL}=enabled and selected by the webhook",
    )


def sakura_key(facts: Facts) -> Result:
    """What the replicas' /readyz say; the key is never read from its Secret."""
    check = "sakura-key"
    ns = facts.install.namespace
    if not facts.readiness:
        return Result(
            check,
            Status.FAIL,
            "no injector pod to ask",
            f"kubectl -n {ns} get pods -l app.kubernetes.io/component=injector",
        )
    findings = []
    for answer in facts.readiness:
        forward = (
            f"kubectl -n {ns} port-forward pod/{answer.pod} 8081 & curl -s localhost:8081/readyz"
        )
        if answer.error:
            findings.append(
                Finding(
                    Status.WARN,
                    f"could not ask {answer.pod}'s /readyz through the API server ({answer.error})",
                    forward,
                )
            )
            continue
        reasons = [str(r) for r in answer.body.get("reasons") or []]
        rejected = [r for r in reasons if REJECTED in r]
        if rejected:
            said = rejected[0].removesuffix(f"; {HOW_TO_FIX}")
            findings.append(Finding(Status.FAIL, f"{answer.pod}: {said}", HOW_TO_FIX))
        elif answer.status != 200:
            findings.append(
                Finding(
                    Status.FAIL,
                    f"{answer.pod} is not ready: {'; '.join(reasons) or f'HTTP {answer.status}'}",
                    f"kubectl -n {ns} logs pod/{answer.pod}",
                )
            )
    return judged(
        check,
        findings,
        f"{len(facts.readiness)} replica(s) ready; none reports Sakura rejecting the key "
        f"(as of its last Sakura call); {credentials_in_use(facts)}",
    )


def credentials_in_use(facts: Facts) -> str:
    """What the replicas say they authenticate with (their /readyz `sakura` field): the kind,
    the key's fingerprint and, for a service principal, the time its token has left."""
    seen = []
    for answer in facts.readiness:
        about = answer.body.get("sakura")
        if not isinstance(about, dict):
            continue
        kind, fingerprint = about.get("kind"), about.get("fingerprint", "?")
        if kind == "service-principal":
            left = about.get("token_expires_in_seconds")
            token = "no token yet" if left is None else f"its token expires in {left} s"
            seen.append(f"{answer.pod}: service principal key {fingerprint}, {token}")
        elif kind == "api-key":
            seen.append(f"{answer.pod}: API key {fingerprint}")
    return "credentials: " + ("; ".join(seen) if seen else "not reported (an older injector)")


def default_vault(facts: Facts, workload_given: bool) -> Result | None:
    """Checked only through a workload's dry run (workload.admission); doctor reads no key."""
    if workload_given:
        return None
    return Result(
        "default-vault",
        Status.WARN,
        "not checked: doctor never reads the sakura-api-key Secret",
        "run doctor with --pod FILE or --deployment NS/NAME naming a secret of the default "
        "vault: its server-side dry run goes through the installed injector, which lists the "
        "vault with its key",
    )
