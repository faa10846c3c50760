"""AdmissionReview (admission.k8s.io/v1) in, a typed decision out: the webhook's pipeline.

One straight line with early returns: check the review's envelope, decide whether to inject,
parse the annotations, check the pod (targets, room, owner, and a refreshing pod's end),
resolve the files' owner and build the plan and the JSON patch that adds our parts to the pod
(`prepare`), then run the admission check and answer with its denial or the patch (`finish`).
Any step may deny with a message naming what to fix. There are no side effects here, so a
dryRun request gets exactly the answer a real one would.

The patch does not depend on the check's outcome, so `prepare` builds it with the plan: all
the CPU work is in `prepare`, and `finish` only picks the answer. The HTTP shell
(`injector.serving.review_queue`) reads the body, screens and parses it, runs `prepare` in its
turn at the admission thread and `finish` on the loop;
`injector.serving.admission_review` turns the decision into the AdmissionReview.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract import Plan
from injector.webhook.annotations import Injection, parse_annotations
from injector.webhook.checks import CheckOutcome
from injector.webhook.decision import Decision, Injected, PodRef, ReasonCode, Refused, Skipped
from injector.webhook.env_vars import check_env
from injector.webhook.errors import Denied, MalformedReview
from injector.webhook.files import check_plan_size, check_secret_count
from injector.webhook.mutation import patch_operations
from injector.webhook.pod.mounts import target_containers
from injector.webhook.pod.ownership import resolve_owner
from injector.webhook.pod_checks import (
    check_owner,
    check_plain_refresh,
    check_room,
    check_targets,
)
from injector.webhook.selection import skip_reason
from injector.webhook.settings import WebhookSettings

API_VERSION = "admission.k8s.io/v1"


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
    ref: PodRef
    patch: tuple[dict[str, Any], ...]
    """The JSON patch that injects, used when the check admits (built from the parts)."""


def prepare(document: Any, settings: WebhookSettings) -> Checked | Decision:
    """Check the review and turn the pod into a plan: the decision itself when that decides it.

    `document` is the parsed body; raises MalformedReview when it is no review to answer.
    """
    request = _request(document)
    uid: str = request["uid"]
    kind = request["kind"]
    if (
        request["operation"] != "CREATE"
        or kind.get("group", "") != ""
        or kind.get("kind") != "Pod"
        or request.get("subResource")
    ):
        return Skipped(uid, "not the creation of a pod", ReasonCode.NOT_A_POD_CREATION)
    pod = _pod(request)
    namespace = _namespace(request, pod)
    ref = PodRef.of(pod, namespace)
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        skip = skip_reason(annotations, namespace, settings)
        if skip is not None:
            return Skipped(uid, skip[1], skip[0], ref)
        injection = parse_annotations(annotations, settings)
        spec = pod["spec"]
        options = injection.options
        check_targets(spec, options.containers)
        targets = target_containers(spec, options.containers, settings.mesh_proxy_containers)
        check_room(spec, targets, options.mount_path)
        env_files = settings.env_files
        env = (injection.env, injection.replace_env)
        check_env(spec, targets, *env, mount_path=options.mount_path, env_files=env_files)
        owned_by = {"run_as_user": options.run_as_user, "run_as_group": options.run_as_group}
        check_owner(spec, targets, **owned_by)
        if injection.refresh_interval is not None and not settings.native_sidecars:
            check_plain_refresh(pod)
        owner = resolve_owner(spec, targets, **owned_by, fallback_uid=settings.fallback_uid)
        plan = injection.plan(owner)
        check_plan_size(plan, annotations)
        check_secret_count(plan)
    except Denied as denied:
        return Refused(uid, denied.code, denied.message, pod=ref)
    patch = patch_operations(pod, plan, options, targets, settings, owner.warnings)
    return Checked(
        uid=uid,
        pod=pod,
        namespace=namespace,
        service_account=spec.get("serviceAccountName") or "default",
        injection=injection,
        targets=targets,
        plan=plan,
        warnings=owner.warnings,
        ref=ref,
        patch=tuple(patch),
    )


def finish(checked: Checked, outcome: CheckOutcome) -> Decision:
    """The check's denial, or the JSON patch that injects: no work but the choice (the patch
    was built by `prepare`), so the shell runs it on the event loop."""
    warnings = tuple(dict.fromkeys([*checked.warnings, *outcome.warnings]))
    if outcome.denial is not None:
        return Refused(checked.uid, 403, outcome.denial, warnings, outcome.reason_code, checked.ref)
    return Injected(checked.uid, checked.patch, warnings, checked.ref)


def _request(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise MalformedReview("the body is not a JSON object")
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
