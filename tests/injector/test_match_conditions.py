"""The default webhook's matchConditions, evaluated with a CEL implementation on pod shapes: the
API server sends every pod the injector would act on, and errors on none (an evaluation error
counts as a webhook failure: with failurePolicy Fail the pod would be refused).

And no silent skip (issue 16): in a namespace the webhook does not select (no
sakura-secrets-injection=enabled label), the namespace-label ValidatingAdmissionPolicy refuses
exactly the pods the injector would have acted on, with a message that says how to label the
namespace; for every namespace and pod shape, a pod the injector would act on is either sent to
the webhook or refused, never admitted untouched.

cel-python, not the API server's cel-go: close enough for a map lookup, has(), matches() and
string concatenation; the install e2e runs on Kubernetes 1.20, which has neither matchConditions
nor ValidatingAdmissionPolicy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from contract.annotations import INJECT, STATUS, STATUS_INJECTED
from injector.webhook.errors import Denied
from injector.webhook.selection import skip_reason
from injector.webhook.settings import WebhookSettings

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
WEBHOOK = MANIFESTS / "base/mutatingwebhookconfiguration.yaml"
LABEL_POLICY = MANIFESTS / "namespace-label-policy.yaml"
SETTINGS = WebhookSettings(image="sakura-secrets-injector:0.1.0", broker_url="https://broker")
NAMESPACE = "shop"

SHAPES: dict[str, dict[str, Any]] = {
    "no annotations": {},
    "empty annotations": {"annotations": {}},
    "other annotations": {"annotations": {"example.com/x": "true", "sakura-secrets.io/x": "y"}},
    "inject true": {"annotations": {INJECT: "true"}},
    "inject True": {"annotations": {INJECT: " True "}},
    "inject false": {"annotations": {INJECT: "false"}},
    "inject FALSE": {"annotations": {INJECT: "\tFALSE \n"}},
    "inject falsey": {"annotations": {INJECT: "falsey"}},
    "inject yes": {"annotations": {INJECT: "yes"}},
    "already injected": {"annotations": {INJECT: "true", STATUS: STATUS_INJECTED}},
}


def _expression() -> str:
    [config] = [obj for obj in yaml.safe_load_all(WEBHOOK.read_text()) if obj]
    [condition] = config["webhooks"][0]["matchConditions"]
    return str(condition["expression"])


def _evaluate(expression: str, metadata: dict[str, Any], namespace: str = NAMESPACE) -> Any:
    env = celpy.Environment()
    program = env.program(env.compile(expression))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", **metadata}, "spec": {}}
    request = {"namespace": namespace, "operation": "CREATE", "kind": {"kind": "Pod"}}
    return program.evaluate(
        {"object": celpy.json_to_cel(pod), "request": celpy.json_to_cel(request)}
    )


def _true(expression: str, metadata: dict[str, Any]) -> bool:
    result = _evaluate(expression, metadata)
    assert isinstance(result, celpy.celtypes.BoolType), f"not a bool: {result!r}"
    return bool(result)


def _sent(metadata: dict[str, Any]) -> bool:
    return _true(_expression(), metadata)


def _acts(metadata: dict[str, Any]) -> bool:
    """Would the injector inject (or deny) this pod in a namespace it serves?"""
    try:
        return skip_reason(metadata.get("annotations", {}), NAMESPACE, SETTINGS) is None
    except Denied:
        return True  # a clear denial ("yes" is not "true" or "false") must still be given


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_pod_the_injector_acts_on_is_sent(shape: str) -> None:
    metadata = SHAPES[shape]
    acts = _acts(metadata)
    sent = _sent(metadata)
    assert sent or not acts, f"{shape}: the injector would act, the API server would not ask"


def test_only_pods_that_carry_the_annotation_are_sent() -> None:
    sent = {shape for shape, metadata in SHAPES.items() if _sent(metadata)}
    assert sent == {shape for shape in SHAPES if shape.startswith(("inject", "already"))}


def test_without_has_a_pod_without_annotations_would_be_an_error() -> None:
    """Why the expression starts with has(): the lookup alone fails on such a pod."""
    env = celpy.Environment()
    program = env.program(env.compile(f"'{INJECT}' in object.metadata.annotations"))
    with pytest.raises(celpy.CELEvalError, match="annotations"):
        program.evaluate({"object": celpy.json_to_cel({"metadata": {}})})


def _label_policy() -> dict[str, Any]:
    [policy] = [
        obj
        for obj in yaml.safe_load_all(LABEL_POLICY.read_text())
        if obj and obj["kind"] == "ValidatingAdmissionPolicy"
    ]
    return policy  # type: ignore[no-any-return]


def _webhook() -> dict[str, Any]:
    [config] = [obj for obj in yaml.safe_load_all(WEBHOOK.read_text()) if obj]
    return config["webhooks"][0]  # type: ignore[no-any-return]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector as the API server matches it (matchLabels, In, NotIn)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = labels.get(expression["key"]) in expression["values"]
        if present != (expression["operator"] == "In"):
            return False
    return True


def _refused(metadata: dict[str, Any], labels: dict[str, str]) -> bool:
    """As the API server applies the namespace-label policy to a pod in a namespace with
    `labels`: skipped unless its namespace selector and every matchCondition match, then
    refused (its one validation is `false`)."""
    spec = _label_policy()["spec"]
    if not _selects(spec["matchConstraints"]["namespaceSelector"], labels):
        return False
    if not all(_true(c["expression"], metadata) for c in spec["matchConditions"]):
        return False
    return not any(_true(v["expression"], metadata) for v in spec["validations"])


def _namespace(name: str, **labels: str) -> dict[str, str]:
    # the API server sets kubernetes.io/metadata.name on every namespace (1.21+)
    return {"kubernetes.io/metadata.name": name, **labels}


NAMESPACES = {
    "unlabelled": _namespace(NAMESPACE),
    "labelled": _namespace(NAMESPACE, **{"sakura-secrets-injection": "enabled"}),
    "labelled otherwise": _namespace(NAMESPACE, **{"sakura-secrets-injection": "disabled"}),
    "the injector's": _namespace("sakura-secrets"),
    "kube-system": _namespace("kube-system", **{"sakura-secrets-injection": "enabled"}),
}
PROTECTED = {"the injector's", "kube-system"}


@pytest.mark.parametrize("namespace", sorted(NAMESPACES))
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_pod_the_injector_would_act_on_is_sent_or_refused_never_skipped(
    shape: str, namespace: str
) -> None:
    """Issue 16: an annotated pod in an unlabelled namespace used to start without its secrets.
    Now: sent to the webhook where it selects the namespace, refused by the policy elsewhere,
    and in the namespaces that are never mutated neither (the injector skips them itself)."""
    metadata, labels = SHAPES[shape], NAMESPACES[namespace]
    sent = _selects(_webhook()["namespaceSelector"], labels) and _sent(metadata)
    refused = _refused(metadata, labels)
    assert not (sent and refused), "the webhook and the policy both take the pod"
    if namespace in PROTECTED:
        assert not sent and not refused
    else:
        assert sent or refused or not _acts(metadata), "the pod would start without its secrets"
        assert not refused or _acts(metadata), "a pod the injector leaves alone is refused"


def test_the_refusal_says_how_to_label_the_namespace() -> None:
    [validation] = _label_policy()["spec"]["validations"]
    message = _evaluate(validation["messageExpression"], SHAPES["inject true"], "shop")
    assert isinstance(message, str)
    assert "namespace shop is not enabled for sakura-secrets-injector" in message
    assert message.endswith("kubectl label namespace shop sakura-secrets-injection=enabled")
    assert "NAMESPACE sakura-secrets-injection=enabled" in validation["message"]  # the fallback
    assert validation["reason"] == "Forbidden"


def test_the_policy_is_bound_to_deny_on_pod_creation_and_mirrors_the_webhook() -> None:
    [binding] = [
        obj
        for obj in yaml.safe_load_all(LABEL_POLICY.read_text())
        if obj and obj["kind"] == "ValidatingAdmissionPolicyBinding"
    ]
    policy = _label_policy()
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
    ]
    # the same namespaces are never touched by either
    webhook = _webhook()["namespaceSelector"]["matchExpressions"]
    assert spec["matchConstraints"]["namespaceSelector"]["matchExpressions"][1:] == webhook
