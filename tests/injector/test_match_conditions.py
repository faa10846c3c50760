"""The default webhook's matchConditions, evaluated with a CEL implementation on pod shapes: the
API server sends every pod the injector would act on, and errors on none (an evaluation error
counts as a webhook failure: with failurePolicy Fail the pod would be refused).

cel-python, not the API server's cel-go: close enough for a map lookup and has(); the install
e2e runs on Kubernetes 1.20, which has no matchConditions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from injector.annotations import INJECT, STATUS, STATUS_INJECTED
from injector.checks import Denied
from injector.selection import skip_reason
from injector.settings import WebhookSettings

WEBHOOK = Path(__file__).resolve().parents[2] / "manifests/base/mutatingwebhookconfiguration.yaml"
SETTINGS = WebhookSettings(image="sakura-secrets-injector:0.1.0", broker_url="https://broker")
NAMESPACE = "shop"

SHAPES: dict[str, dict[str, Any]] = {
    "no annotations": {},
    "empty annotations": {"annotations": {}},
    "other annotations": {"annotations": {"example.com/x": "true", "sakura-secrets.io/x": "y"}},
    "inject true": {"annotations": {INJECT: "true"}},
    "inject True": {"annotations": {INJECT: " True "}},
    "inject false": {"annotations": {INJECT: "false"}},
    "inject yes": {"annotations": {INJECT: "yes"}},
    "already injected": {"annotations": {INJECT: "true", STATUS: STATUS_INJECTED}},
}


def _expression() -> str:
    [config] = [obj for obj in yaml.safe_load_all(WEBHOOK.read_text()) if obj]
    [condition] = config["webhooks"][0]["matchConditions"]
    return str(condition["expression"])


def _sent(metadata: dict[str, Any]) -> bool:
    env = celpy.Environment()
    program = env.program(env.compile(_expression()))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", **metadata}, "spec": {}}
    result = program.evaluate({"object": celpy.json_to_cel(pod)})
    assert isinstance(result, celpy.celtypes.BoolType), f"not a bool: {result!r}"
    return bool(result)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_pod_the_injector_acts_on_is_sent(shape: str) -> None:
    metadata = SHAPES[shape]
    try:
        acts = skip_reason(metadata.get("annotations", {}), NAMESPACE, SETTINGS) is None
    except Denied:
        acts = True  # a clear denial ("yes" is not "true" or "false") must still be given
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
