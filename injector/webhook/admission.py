"""AdmissionReview (admission.k8s.io/v1) in, AdmissionReview out: the webhook's pipeline.

One straight line with early returns: decode the review, decide whether to inject, parse the
annotations into a plan, resolve the files' owner, run the admission check, build the JSON
patch that adds our parts to the pod. Any step may deny with a message naming what to fix.
There are no side effects here, so a dryRun request gets exactly the answer a real one would.

Everything but the admission check is CPU work on the request alone (`prepare`, `finish`); it
runs on one admission thread, so the event loop keeps answering the broker while a large pod
is reviewed. Reviews take turns at that thread round-robin by (caller's address, namespace)
(`injector.fair_queue`): the namespace is only claimed before the parse (`claim`, a few
C-speed searches on the loop), the parse itself runs in the claimed lane, after a bytes-level
screen of the body's size, value count and depth that costs milliseconds even for 3 MiB of
nested lists. A review that cannot finish within the API server's `timeoutSeconds` is answered
at once with a 429 denial instead of waiting (docs/webhook.md, "Admission queue" and "Bounds").
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Hashable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from contract import Plan
from injector.fair_queue import FairQueue, Overloaded
from injector.serving.metrics import SHED_CODE
from injector.webhook.annotations import Injection, parse_annotations
from injector.webhook.checks import AdmissionCheck, CheckOutcome, Denied
from injector.webhook.mutation import fit, patch_operations
from injector.webhook.pod.ownership import resolve_owner
from injector.webhook.selection import skip_reason
from injector.webhook.settings import WebhookSettings

API_VERSION = "admission.k8s.io/v1"
MAX_DEPTH = 64
"""Nesting a review may have; a real pod review is about 15 deep. Deeper ones are refused
before anything that recurses over the pod (a copy in `render`, a YAML dump) can fail."""
MAX_VALUES = 100_000
"""JSON values (numbers, strings, lists, objects; keys not counted) a review may have: a real
pod's review has hundreds, a pod with thousands of environment variables some tens of
thousands. Counted on the bytes before the parse, so a body of millions is refused in
milliseconds instead of being built and walked."""
WAITING_PER_LANE = 32
"""Reviews of one (caller, namespace) that may wait for the admission thread; more get 429."""
MAX_WAITING = 256
"""Reviews that may wait in all; with the body cap this bounds the memory they hold."""


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


QUEUE = FairQueue("admission", workers=1, waiting_per_key=WAITING_PER_LANE, max_waiting=MAX_WAITING)
"""Where the pipeline's CPU work runs: not on the event loop, which must keep answering the
broker, and not in a pool the Kubernetes calls wait in. One thread: with the GIL a second adds
no throughput, and it would take turns from the loop."""


@dataclass(frozen=True)
class Claim:
    """What a review says about itself before it is parsed: read for queueing, not trusted."""

    uid: str
    namespace: str


async def review(
    body: bytes,
    *,
    settings: WebhookSettings,
    check: AdmissionCheck,
    caller: str = "",
    queue: FairQueue | None = None,
) -> dict[str, Any]:
    """Answer one AdmissionReview; raises MalformedReview, never anything for a bad pod.

    Only the admission check, which waits on Kubernetes and Sakura, runs on the event loop;
    `prepare` and `finish`, the pure CPU work before and after it, take turns in `queue`'s
    lane of (`caller`, claimed namespace). `prepare` must be done within half of
    `settings.review_timeout`, which leaves the other half to the admission check (at most
    4 s by default) and `finish`; a review that cannot make it is answered with a 429 denial.
    """
    turns = QUEUE if queue is None else queue
    claimed = claim(body)
    lane: Hashable = (caller, claimed.namespace)
    arrived = turns.clock()
    try:
        checked = await turns.run(
            lane,
            lambda: prepare(body, settings),
            deadline=arrived + settings.review_timeout / 2,
        )
        if not isinstance(checked, Checked):
            return checked
        outcome = await check(checked.namespace, checked.service_account, checked.plan)
        return await turns.run(
            lane,
            lambda: finish(checked, outcome, settings),
            deadline=arrived + settings.review_timeout - FINISH_MARGIN,
        )
    except Overloaded as busy:
        return shed(claimed.uid, busy)


FINISH_MARGIN = 1.0
"""Seconds before the API server's timeout by which the answer must be ready to send."""


def shed(uid: str, busy: Overloaded) -> dict[str, Any]:
    """The fast answer to a review the injector cannot finish in time: a 429 denial.

    A denial (not an HTTP error) so the API server shows the user this message instead of
    "failed calling webhook"; 429 so controllers and clients treat it as retriable.
    """
    message = (
        f"sakura-secrets-injector is overloaded ({busy}); the pod was not created, try again "
        "in a few seconds (controllers retry by themselves)"
    )
    return _denial(uid, Denied(message, code=SHED_CODE))


_KIND = re.compile(rb'"kind"\s*:\s*"AdmissionReview"')
_VERSION = re.compile(rb'"apiVersion"\s*:\s*"' + re.escape(API_VERSION.encode()) + rb'"')
_UID = re.compile(rb'"uid"\s*:\s*"([^"\\]{1,128})"')
_NAMESPACE = re.compile(rb'"namespace"\s*:\s*"([a-z0-9-]{1,63})"')


CLAIM_BYTES = 4096
"""Where a review's claim must be: the API server writes `kind`, `apiVersion`, then the
request's `uid`, kinds, resources, name and `namespace` (under 1 KiB) before anything else."""


def claim(body: bytes) -> Claim:
    """The uid and namespace a body claims, found without parsing it (cheap on the event loop).

    Only the first CLAIM_BYTES are searched, so the cost does not grow with the body; the
    first match of each is the review's own. A body that is not a v1 AdmissionReview is
    refused here. Nothing else trusts the claim: it only picks the lane the body's parse
    waits in, and `prepare` reads the real values from the parsed review.
    """
    head = body[:CLAIM_BYTES]
    if _KIND.search(head) is None or _VERSION.search(head) is None:
        raise MalformedReview(
            f"expected an AdmissionReview of apiVersion {API_VERSION} "
            f'("kind": "AdmissionReview", "apiVersion": "{API_VERSION}"); set '
            "admissionReviewVersions: [v1] in the webhook configuration"
        )
    uid = _UID.search(head)
    if uid is None:
        raise MalformedReview("request.uid is missing or not a string")
    namespace = _NAMESPACE.search(head)
    return Claim(uid[1].decode(), namespace[1].decode() if namespace else "")


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
    _screen(body)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedReview(f"the body is not JSON: {exc}") from None
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


_TOO_DEEP = f"the body is nested more than {MAX_DEPTH} levels deep; it is not a pod's review"


_TOO_MANY = f"the body has more than {MAX_VALUES} JSON values; it is not a pod's review"
_DEPTH_STEP = [1 if c in b"[{" else -1 if c in b"]}" else 0 for c in range(256)]
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _screen(body: bytes) -> None:
    """Refuse a body with too many values or too deep a nesting before `json.loads` builds it.

    Bytes-level and C-speed (counts, replaces, splits; a few ms for 3 MiB): strings are cut
    out (escaped backslashes and quotes first, then the text between quotes), and what is left
    is the document's structure, whose commas and openers bound its values and whose brackets
    give its depth. The quote count is bounded first, so the cut makes few pieces.
    """
    if body.count(b'"') > 4 * MAX_VALUES:  # every value has at most a key and a string
        raise MalformedReview(_TOO_MANY)
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = b"".join(unescaped.split(b'"')[::2])
    openers = structure.count(b"[") + structure.count(b"{")
    if structure.count(b",") + openers >= MAX_VALUES:
        raise MalformedReview(_TOO_MANY)
    brackets = structure.translate(None, _NOT_BRACKETS)
    if max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH:
        raise MalformedReview(_TOO_DEEP)


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
