"""AdmissionReview (admission.k8s.io/v1) in, AdmissionReview out: the webhook's pipeline.

One straight line with early returns: decode the review, decide whether to inject, parse the
annotations into a plan, resolve the files' owner, run the admission check, build the JSON
patch that adds our parts to the pod. Any step may deny with a message naming what to fix.
There are no side effects here, so a dryRun request gets exactly the answer a real one would.

Everything but the admission check is CPU work on the request alone (`prepare`, `finish`); it
runs on a small thread pool, so the event loop keeps answering probes and the broker while a
large pod is reviewed. Its cost is linear in the review's size and bounded by the limits in
`injector.annotations` (see docs/webhook.md, "Bounds").
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from injector.annotations import Injection, parse_annotations
from injector.checks import AdmissionCheck, CheckOutcome, Denied
from injector.mutation import fit, patch_operations
from injector.pod.ownership import resolve_owner
from injector.selection import skip_reason
from injector.settings import WebhookSettings
from plan import Plan

API_VERSION = "admission.k8s.io/v1"
MAX_DEPTH = 64
"""Nesting a review may have; a real pod review is about 15 deep. Deeper ones are refused
before anything that recurses over the pod (a copy in `render`, a YAML dump) can fail."""


class MalformedReview(ValueError):
    """The body is not an AdmissionReview we can answer; the server maps this to HTTP 400."""


@dataclass(frozen=True)
class Checked:
    """A pod that passed every step before the admission check, which it now waits for."""

    uid: str
    pod: dict[str, Any]
    namespace: str
    service_account: str
    injection: Injection
    targets: tuple[str, ...]
    plan: Plan
    warnings: tuple[str, ...]


def _cpu_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="admission")


_CPU = _cpu_pool()
"""Where the pipeline's CPU work runs: not on the event loop, which must keep answering health
probes and the broker, and not in the default pool the broker's Kubernetes calls wait in. One
thread: with the GIL a second adds no throughput, and it would take turns from the loop."""


def _renew_cpu_pool() -> None:
    """A forked child inherits the pool but not its thread, so work sent there never ran
    (mutation testing forks a process per mutant; so would a pre-forking server)."""
    global _CPU
    _CPU = _cpu_pool()


os.register_at_fork(after_in_child=_renew_cpu_pool)


async def review(
    body: bytes, *, settings: WebhookSettings, check: AdmissionCheck
) -> dict[str, Any]:
    """Answer one AdmissionReview; raises MalformedReview, never anything for a bad pod.

    Only the admission check, which waits on Kubernetes and Sakura, runs on the event loop;
    `prepare` and `finish`, the pure CPU work before and after it, run in `_CPU`.
    """
    loop = asyncio.get_running_loop()
    checked = await loop.run_in_executor(_CPU, prepare, body, settings)
    if not isinstance(checked, Checked):
        return checked
    outcome = await check(checked.namespace, checked.service_account, checked.plan)
    return await loop.run_in_executor(_CPU, finish, checked, outcome, settings)


def prepare(body: bytes, settings: WebhookSettings) -> Checked | dict[str, Any]:
    """Decode the review and turn the pod into a plan: the answer itself when that decides it."""
    request = _decode(body)
    uid: str = request["uid"]
    kind = request["kind"]
    if (
        request["operation"] != "CREATE"
        or kind.get("group", "") != ""
        or kind.get("kind") != "Pod"
        or request.get("subResource")
    ):
        return _answer(uid, {"allowed": True})
    pod = _pod(request)
    namespace = _namespace(request, pod)
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        if skip_reason(annotations, namespace, settings) is not None:
            return _answer(uid, {"allowed": True})
        injection = parse_annotations(annotations, settings)
        spec = pod["spec"]
        targets = fit(spec, injection.options, settings.mesh_proxy_containers)
        owner = resolve_owner(
            spec,
            targets,
            run_as_user=injection.options.run_as_user,
            run_as_group=injection.options.run_as_group,
            fallback_uid=settings.fallback_uid,
        )
    except Denied as denied:
        return _denial(uid, denied)
    return Checked(
        uid=uid,
        pod=pod,
        namespace=namespace,
        service_account=spec.get("serviceAccountName") or "default",
        injection=injection,
        targets=targets,
        plan=owner.own(injection.plan, injection.options.explicit_modes),
        warnings=owner.warnings,
    )


def finish(checked: Checked, outcome: CheckOutcome, settings: WebhookSettings) -> dict[str, Any]:
    """The check's denial, or the JSON patch that injects."""
    warnings = [*checked.warnings, *outcome.warnings]
    if outcome.denial is not None:
        return _denial(checked.uid, Denied(outcome.denial, code=403), warnings)
    patch = patch_operations(
        checked.pod,
        checked.plan,
        checked.injection.options,
        checked.targets,
        settings,
        checked.warnings,
    )
    encoded = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    return _answer(
        checked.uid, {"allowed": True, "patchType": "JSONPatch", "patch": encoded}, warnings
    )


def _denial(uid: str, denied: Denied, warnings: list[str] | None = None) -> dict[str, Any]:
    status = {"code": denied.code, "message": denied.message}
    return _answer(uid, {"allowed": False, "status": status}, warnings)


def _answer(
    uid: str, response: dict[str, Any], warnings: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"uid": uid, **response}
    if warnings:
        body["warnings"] = list(dict.fromkeys(warnings))
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": body}


def _decode(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedReview(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedReview(_TOO_DEEP) from None
    if not isinstance(document, dict):
        raise MalformedReview("the body is not a JSON object")
    if _deeper_than(document, MAX_DEPTH):
        raise MalformedReview(_TOO_DEEP)
    if document.get("apiVersion") != API_VERSION or document.get("kind") != "AdmissionReview":
        raise MalformedReview(
            f"expected an AdmissionReview of apiVersion {API_VERSION}, got kind "
            f"{document.get('kind')!r} apiVersion {document.get('apiVersion')!r}; "
            "set admissionReviewVersions: [v1] in the webhook configuration"
        )
    request = document.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("the AdmissionReview has no request object")
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        raise MalformedReview("request.uid is missing or not a string")
    if not isinstance(request.get("kind"), dict):
        raise MalformedReview("request.kind is missing or not an object")
    if not isinstance(request.get("operation"), str):
        raise MalformedReview("request.operation is missing or not a string")
    return request


_TOO_DEEP = f"the body is nested more than {MAX_DEPTH} levels deep; it is not a pod's review"


def _deeper_than(document: object, limit: int) -> bool:
    """Whether JSON nests deeper than `limit`; iterative, so it cannot overflow the stack."""
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if not isinstance(node, list):
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in node)
    return False


def _namespace(request: dict[str, Any], pod: dict[str, Any]) -> str:
    namespace = request.get("namespace") or (pod.get("metadata") or {}).get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise MalformedReview("request.namespace is missing: pods are namespaced")
    return namespace


def _pod(request: dict[str, Any]) -> dict[str, Any]:
    """request.object, checked to have the shape the pipeline reads (types, not semantics)."""
    pod = request.get("object")
    if not isinstance(pod, dict):
        raise MalformedReview("request.object is missing or not an object")
    metadata = _optional(pod, "metadata", dict, "request.object")
    if metadata is not None:
        annotations = _optional(metadata, "annotations", dict, "request.object.metadata")
        if annotations is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise MalformedReview("request.object.metadata.annotations must map strings to strings")
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise MalformedReview("request.object.spec is missing or not an object")
    _optional(spec, "serviceAccountName", str, "spec")
    _security_context(spec, "spec", pod_level=True)
    for item in _list_of_objects(spec, "volumes", "spec"):
        _optional(item, "name", str, "spec.volumes[]")
    for field in ("containers", "initContainers"):
        for index, container in enumerate(_list_of_objects(spec, field, "spec")):
            where = f"spec.{field}[{index}]"
            if not isinstance(container.get("name"), str):
                raise MalformedReview(f"{where}.name is missing or not a string")
            _security_context(container, where, pod_level=False)
            for mount in _list_of_objects(container, "volumeMounts", where):
                if not isinstance(mount.get("mountPath"), str):
                    raise MalformedReview(f"{where}.volumeMounts[].mountPath is not a string")
    return pod


def _security_context(owner: dict[str, Any], where: str, *, pod_level: bool) -> None:
    context = _optional(owner, "securityContext", dict, where)
    if context is None:
        return
    for field in ("runAsUser", "runAsGroup", *(("fsGroup",) if pod_level else ())):
        value = context.get(field)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise MalformedReview(f"{where}.securityContext.{field} is not an integer")


def _optional(owner: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = owner.get(key)
    if value is not None and not isinstance(value, kind):
        raise MalformedReview(f"{where}.{key} is not of type {kind.__name__}")
    return value


def _list_of_objects(owner: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = _optional(owner, key, list, where) or []
    if not all(isinstance(item, dict) for item in value):
        raise MalformedReview(f"{where}.{key} must be a list of objects")
    return value
