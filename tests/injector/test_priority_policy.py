"""The default install's ValidatingAdmissionPolicy on the injector's PriorityClass (issue 15,
case 9: a tenant pod that named it was admitted and preempted other tenants' pods), evaluated
with a CEL implementation on pod shapes: only the injector's own pods may name the class, every
other pod that does is refused with a message that says why, and no pod shape is an evaluation
error (failurePolicy Fail would refuse it, whatever it names).

cel-python, not the API server's cel-go, as for the webhook's matchConditions
(test_match_conditions.py): close enough for has(), field reads and string equality. The local
e2e cluster (Kubernetes 1.20) has no ValidatingAdmissionPolicy."""

from __future__ import annotations

from typing import Any

import celpy
import pytest
import yaml
from support.manifests import MANIFESTS, NAMESPACE, by_kind, render

POLICY = MANIFESTS / "priorityclass-policy.yaml"
CLASS = "sakura-secrets-injector"
INJECTOR_ACCOUNT = "sakura-secrets-injector"


def _objects() -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in yaml.safe_load_all(POLICY.read_text()) if obj}


def _evaluate(expression: str, pod: dict[str, Any], namespace: str) -> bool:
    env = celpy.Environment()
    program = env.program(env.compile(expression))
    request = {"namespace": namespace, "operation": "CREATE", "kind": {"kind": "Pod"}}
    activation = {"object": celpy.json_to_cel(pod), "request": celpy.json_to_cel(request)}
    result = program.evaluate(activation)
    assert isinstance(result, celpy.celtypes.BoolType), f"not a bool: {result!r}"
    return bool(result)


def admitted(pod: dict[str, Any], namespace: str) -> bool:
    """As the API server applies the policy: skipped unless every matchCondition holds, then
    refused unless every validation holds."""
    spec = _objects()["ValidatingAdmissionPolicy"]["spec"]
    if not all(_evaluate(c["expression"], pod, namespace) for c in spec["matchConditions"]):
        return True
    return all(_evaluate(v["expression"], pod, namespace) for v in spec["validations"])


def _pod(namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "i"}], **spec},
    }


ALLOWED = {
    "the injector's pod": (NAMESPACE, {"priorityClassName": CLASS, "serviceAccountName": CLASS}),
    "a tenant pod without a class": ("shop", {"serviceAccountName": "default"}),
    "a tenant pod with its own class": ("shop", {"priorityClassName": "batch"}),
    "a system pod": ("kube-system", {"priorityClassName": "system-cluster-critical"}),
    "an empty spec": ("shop", {}),
    "the class's name as the ServiceAccount": ("shop", {"serviceAccountName": CLASS}),
}
DENIED = {
    "a tenant pod naming the class": (
        "shop",
        {"priorityClassName": CLASS, "serviceAccountName": "default"},
    ),
    "a tenant pod with the injector's account name": (
        "shop",
        {"priorityClassName": CLASS, "serviceAccountName": INJECTOR_ACCOUNT},
    ),
    "another account in the injector's namespace": (
        NAMESPACE,
        {"priorityClassName": CLASS, "serviceAccountName": "sakura-secrets-certs"},
    ),
    "no account in the injector's namespace": (NAMESPACE, {"priorityClassName": CLASS}),
    "a namespace whose name contains the injector's": (
        f"{NAMESPACE}-x",
        {"priorityClassName": CLASS, "serviceAccountName": INJECTOR_ACCOUNT},
    ),
}


@pytest.mark.parametrize("shape", sorted(ALLOWED))
def test_pods_that_may_run_at_their_priority_are_admitted(shape: str) -> None:
    namespace, spec = ALLOWED[shape]
    assert admitted(_pod(namespace, **spec), namespace)


@pytest.mark.parametrize("shape", sorted(DENIED))
def test_other_pods_naming_the_injectors_class_are_refused(shape: str) -> None:
    namespace, spec = DENIED[shape]
    assert not admitted(_pod(namespace, **spec), namespace)


def test_the_installed_pods_pass_and_name_what_the_policy_names() -> None:
    """The Deployments as rendered: the serving pods run at the class, the certs pods at none."""
    base = by_kind(render(MANIFESTS))
    assert base["PriorityClass"]["metadata"]["name"] == CLASS
    serving = base["Deployment"]["spec"]["template"]["spec"]
    assert (serving["priorityClassName"], serving["serviceAccountName"]) == (
        CLASS,
        INJECTOR_ACCOUNT,
    )
    assert base["ServiceAccount"]["metadata"]["name"] == INJECTOR_ACCOUNT
    serving_pod = {"apiVersion": "v1", "kind": "Pod", **base["Deployment"]["spec"]["template"]}
    certs_pod = {"apiVersion": "v1", "kind": "Pod", **base["certs:Deployment"]["spec"]["template"]}
    assert admitted(serving_pod, NAMESPACE) and admitted(certs_pod, NAMESPACE)
    assert not admitted(serving_pod, "shop")  # the same pod, created in a tenant's namespace


def test_the_policy_is_bound_to_deny_on_pod_creation_and_says_why() -> None:
    objects = _objects()
    policy, binding = (
        objects["ValidatingAdmissionPolicy"],
        objects["ValidatingAdmissionPolicyBinding"],
    )
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }  # every namespace: no matchResources, no params
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
    ]
    [validation] = spec["validations"]
    assert validation["reason"] == "Forbidden"
    message = validation["message"]
    for words in (f"priorityClassName {CLASS}", NAMESPACE, INJECTOR_ACCOUNT, "preempts"):
        assert words in message
    assert "Name another PriorityClass, or none." in message


def test_without_has_a_pod_without_the_fields_would_be_an_error() -> None:
    """Why both expressions test has() first: the bare read fails on such a pod, and an error
    counts as a failure (Fail: the pod is refused, whatever it names)."""
    env = celpy.Environment()
    program = env.program(env.compile(f"object.spec.priorityClassName == '{CLASS}'"))
    with pytest.raises(celpy.CELEvalError, match="priorityClassName"):
        program.evaluate({"object": celpy.json_to_cel(_pod("shop"))})


def test_the_legacy_overlays_have_no_policy_and_a_class_that_does_not_preempt() -> None:
    for directory in (MANIFESTS / "legacy", MANIFESTS / "legacy-1.20"):
        objects = by_kind(render(directory))
        assert "ValidatingAdmissionPolicy" not in objects
        assert objects["PriorityClass"]["preemptionPolicy"] == "Never"
