"""Offline preview: the pod the webhook would admit, or its denial, without a cluster.

It runs the very same `review` on a synthetic AdmissionReview, with a check that does not
reach Kubernetes or Sakura and says so in a warning.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonpatch
import yaml

from contract import Plan
from injector.operations.errors import PreviewDenied, PreviewError
from injector.operations.reviews import pod_create_review
from injector.serving.review_queue import review
from injector.webhook.checks import CheckOutcome
from injector.webhook.decision import Injected, Refused
from injector.webhook.errors import MalformedReview
from injector.webhook.settings import WebhookSettings

OFFLINE_WARNING = "admission-time RBAC and existence checks were not run (offline preview)"
PREVIEW_UID = "offline-preview"


class OfflineCheck:
    """Stands in for the RBAC/existence check: admits, and says nothing was checked."""

    async def __call__(self, namespace: str, service_account: str, plan: Plan) -> CheckOutcome:
        return CheckOutcome(warnings=(OFFLINE_WARNING,))


def render_pod(pod_yaml_text: str, settings: WebhookSettings) -> str:
    """The mutated pod as YAML, preceded by `# warning:` lines; raises PreviewDenied/PreviewError.

    A pod that would not be injected comes back unchanged after a `# not injected:` line.
    """
    pod = load_pod(pod_yaml_text)
    metadata = pod.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    namespace = metadata.get("namespace") or "default"
    body = json.dumps(
        pod_create_review(pod, namespace=namespace, uid=PREVIEW_UID, dry_run=True)
    ).encode()
    try:
        decision = asyncio.run(review(body, settings=settings, check=OfflineCheck()))
    except MalformedReview as exc:
        raise PreviewError(f"the pod cannot be reviewed: {exc}") from None
    if isinstance(decision, Refused):
        raise PreviewDenied(decision.message, decision.code, decision.warnings)
    if not isinstance(decision, Injected):
        return "\n".join([f"# not injected: {decision.reason}", _dump(pod)])
    header = [f"# warning: {w}" for w in decision.warnings]
    injected: dict[str, Any] = jsonpatch.apply_patch(pod, list(decision.patch))
    return "\n".join([*header, _dump(injected)])


def load_pod(text: str) -> dict[str, Any]:
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise PreviewError(f"the input is not YAML: {exc}") from None
    if len(documents) != 1:
        raise PreviewError(f"expected one Pod manifest, found {len(documents)} YAML documents")
    pod = documents[0]
    if not isinstance(pod, dict) or pod.get("kind") != "Pod":
        kind = pod.get("kind") if isinstance(pod, dict) else type(pod).__name__
        raise PreviewError(
            f"expected a Pod manifest (kind: Pod), got {kind!r}; for a Deployment or Job, "
            "render its spec.template as a Pod"
        )
    return pod


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the CA bundle, templates) as readable literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def _dump(pod: dict[str, Any]) -> str:
    return yaml.dump(
        pod, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False, width=2**16
    )
