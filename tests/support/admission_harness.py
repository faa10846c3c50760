"""Builds AdmissionReviews, runs the real `review`, and checks every mutated pod's schema.

Every pod the webhook produces in these tests goes through `admitted`, which validates it
with kubernetes-validate (strict: unknown fields are errors). The oldest schema it ships is
1.25, the closest to our 1.20 floor, so that is the one used.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import kubernetes_validate

from contract import Plan
from injector.operations.reviews import pod_create_review
from injector.serving.admission_review import admission_review
from injector.serving.review_queue import review
from injector.webhook.checks import CheckOutcome
from injector.webhook.settings import WebhookSettings

SCHEMA_VERSION = "1.25"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
VAULT = "123456789012"
P = "sakura-secrets.io/"


def settings(**kw: Any) -> WebhookSettings:
    args: dict[str, Any] = {
        "image": "registry.example/sakura-secrets-injector:0.1.0",
        "broker_url": "https://sakura-secrets-injector.sakura-secrets.svc",
        "broker_ca_pem": CA_PEM,
        "injector_namespace": "sakura-secrets",
        "default_vault_id": VAULT,
    }
    args.update(kw)
    return WebhookSettings(**args)


def pod(
    annotations: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    *,
    inject: bool = True,
    **spec: Any,
) -> dict[str, Any]:
    """A pod as the API server sends it on CREATE (generateName, no namespace in metadata)."""
    notes = {f"{P}inject": "true", f"{P}secret-db-password": "db-password"} if inject else {}
    notes.update(annotations or {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "shop-api-", "labels": {"app": "shop"}, "annotations": notes},
        "spec": {
            "containers": containers
            if containers is not None
            else [{"name": "app", "image": "nginx:1.27", "securityContext": {"runAsUser": 1000}}],
            **spec,
        },
    }


def review_body(
    obj: dict[str, Any],
    *,
    namespace: str = "shop",
    uid: str = "5f0c9f4e-0000-4000-8000-000000000001",
    dry_run: bool = False,
    operation: str = "CREATE",
) -> bytes:
    review = pod_create_review(obj, namespace=namespace, uid=uid, dry_run=dry_run, username="alice")
    review["request"]["operation"] = operation  # tests also send UPDATE, DELETE, ...
    return json.dumps(review).encode()


@dataclass
class RecordingCheck:
    """An AdmissionCheck that records what it was asked and answers a fixed outcome."""

    outcome: CheckOutcome = field(default_factory=CheckOutcome)
    calls: list[tuple[str, str, Plan]] = field(default_factory=list)

    async def __call__(self, namespace: str, service_account: str, plan: Plan) -> CheckOutcome:
        self.calls.append((namespace, service_account, plan))
        return self.outcome


@dataclass
class Admitted:
    response: dict[str, Any]
    patch: list[dict[str, Any]]
    pod: dict[str, Any]
    check: RecordingCheck

    @property
    def init(self) -> dict[str, Any]:
        (ours,) = [c for c in self.pod["spec"]["initContainers"] if c["name"] == INIT]
        return ours

    @property
    def plan(self) -> Plan:
        env = {e["name"]: e for e in self.init["env"]}
        return Plan.from_json(env["SAKURA_SECRETS_PLAN"]["value"])

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.init["env"]}

    @property
    def warnings(self) -> list[str]:
        return list(self.response.get("warnings", []))

    def container(self, name: str) -> dict[str, Any]:
        (found,) = [c for c in self.pod["spec"]["containers"] if c["name"] == name]
        return found


INIT = "sakura-secrets-init"


def validate_pod(obj: dict[str, Any]) -> None:
    """Raises kubernetes_validate.ValidationError if the pod breaks the Pod schema."""
    complete = copy.deepcopy(obj)
    kubernetes_validate.validate(complete, SCHEMA_VERSION, strict=True)


async def run(
    obj: dict[str, Any],
    *,
    webhook: WebhookSettings | None = None,
    check: RecordingCheck | None = None,
    **body: Any,
) -> dict[str, Any]:
    """The full AdmissionReview answer for `obj`."""
    answer = admission_review(
        await review(
            review_body(obj, **body),
            settings=webhook or settings(),
            check=check or RecordingCheck(),
        )
    )
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    return answer


async def admitted(
    obj: dict[str, Any],
    *,
    webhook: WebhookSettings | None = None,
    check: RecordingCheck | None = None,
    **body: Any,
) -> Admitted:
    """Review `obj`, expect an admitting patch, apply it, validate the result's schema."""
    check = check or RecordingCheck()
    original = copy.deepcopy(obj)
    answer = await run(obj, webhook=webhook, check=check, **body)
    response = answer["response"]
    assert response["allowed"] is True, response
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    assert obj == original, "review must not modify the pod it was given"
    mutated = jsonpatch.apply_patch(obj, patch)
    validate_pod(mutated)
    return Admitted(response=response, patch=patch, pod=mutated, check=check)


async def denied(
    obj: dict[str, Any],
    *,
    webhook: WebhookSettings | None = None,
    check: RecordingCheck | None = None,
    **body: Any,
) -> dict[str, Any]:
    """Review `obj`, expect a denial; returns the response (status.message, status.code)."""
    answer = await run(obj, webhook=webhook, check=check, **body)
    response = answer["response"]
    assert response["allowed"] is False, response
    assert "patch" not in response
    assert response["status"]["message"]
    return response  # type: ignore[no-any-return]


async def untouched(obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """Review `obj`, expect it admitted as is (no patch)."""
    answer = await run(obj, **kw)
    response = answer["response"]
    assert response["allowed"] is True, response
    assert "patch" not in response and "patchType" not in response
    return response  # type: ignore[no-any-return]
