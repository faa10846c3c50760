"""The AdmissionReview's envelope: a malformed body names its field, every answer echoes the uid.

Fast and table-driven: most tests call `prepare` and `finish` directly (no event loop, no
pool), so mutation testing of injector/webhook/admission.py takes well under a second per mutant.
The pipeline's injection itself (the patch's content) is tested in test_injector_admission.py.
The shell's half (claim, screen, queue, shedding, the AdmissionReview built from a decision:
injector/serving/review_queue.py and admission_review.py) is tested here too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support.admission_harness import P, RecordingCheck, pod, review_body, settings

from injector.serving import review_queue as admission
from injector.serving.admission_review import admission_review, internal_failure
from injector.serving.review_queue import read_review, review
from injector.webhook import admission as core
from injector.webhook.admission import Checked, finish
from injector.webhook.checks import CheckOutcome
from injector.webhook.decision import Decision, Injected, ReasonCode, Refused, Skipped
from injector.webhook.errors import MalformedReview

UID = "5f0c9f4e-0000-4000-8000-000000000001"
Edit = Callable[[dict[str, Any]], None]


def prepare(body: bytes, webhook: Any) -> Checked | Decision:
    """The core's `prepare` on a body as the shell reads it (screen, then parse)."""
    return core.prepare(read_review(body), webhook)


def body_with(edit: Edit, obj: dict[str, Any] | None = None) -> bytes:
    """A real pod's CREATE review, changed by `edit` (which gets the whole document)."""
    document = json.loads(review_body(obj or pod(), uid=UID))
    edit(document)
    return json.dumps(document).encode()


def request(edit: Callable[[dict[str, Any]], None]) -> Edit:
    return lambda document: edit(document["request"])


def spec(edit: Callable[[dict[str, Any]], None]) -> Edit:
    return lambda document: edit(document["request"]["object"]["spec"])


def container(
    index: int, edit: Callable[[dict[str, Any]], None], field: str = "containers"
) -> Edit:
    return spec(lambda s: edit(s[field][index]))


def both(*edits: Edit) -> Edit:
    def apply(document: dict[str, Any]) -> None:
        for edit in edits:
            edit(document)

    return apply


def second(edit: Callable[[dict[str, Any]], None]) -> Edit:
    """A second container, then `edit` applied to it."""
    add = spec(lambda s: s["containers"].append({"name": "second", "image": "x"}))
    return both(add, container(1, edit))


def malformed(body: bytes) -> str:
    with pytest.raises(MalformedReview) as caught:
        prepare(body, settings())
    return str(caught.value)


def nested(depth: int) -> object:
    """`depth` levels of JSON containers, alternating lists and objects, around a number."""
    value: object = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# --- the body and the envelope ------------------------------------------------------------

TOO_DEEP = "the body is nested more than 64 levels deep; it is not a pod's review"
WRONG_VERSION = (
    "expected an AdmissionReview of apiVersion admission.k8s.io/v1, got kind {kind!r} "
    "apiVersion {version!r}; set admissionReviewVersions: [v1] in the webhook configuration"
)

NOT_JSON = "the body is not JSON: "
RAW: dict[str, tuple[bytes, str]] = {
    # orjson's own words follow (they change between its versions): where, and what
    "empty": (b"", NOT_JSON),
    "text": (b"not json", NOT_JSON),
    "not utf-8": (b'{"a": "\xff"}', NOT_JSON),
    "a list": (b"[]", "the body is not a JSON object"),
    "a string": (b'"AdmissionReview"', "the body is not a JSON object"),
    "too deep to parse": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, TOO_DEEP),
    # one object around 64 levels: the limit itself is fine (the envelope is checked next)
    "64 levels": (
        json.dumps({"deep": nested(63), "z": 1}).encode(),
        WRONG_VERSION.format(kind=None, version=None),
    ),
    "65 levels": (json.dumps({"deep": nested(64), "z": 1}).encode(), TOO_DEEP),
    "65 levels in objects": (json.dumps({"k": {"k": nested(63)}}).encode(), TOO_DEEP),
    "65 levels in lists": (json.dumps({"k": [[nested(62)]]}).encode(), TOO_DEEP),
}


@pytest.mark.parametrize("case", RAW)
def test_a_body_that_is_not_a_review_is_malformed_with_the_reason(case: str) -> None:
    body, message = RAW[case]
    if message == NOT_JSON:
        said = malformed(body)
        assert said.startswith(NOT_JSON) and "line 1 column" in said, said
    else:
        assert malformed(body) == message


def test_a_pods_review_of_64_levels_is_answered_and_of_65_is_not() -> None:
    """The depth counts the whole review: 6 levels down to a container, 58 (59) below it."""
    obj = pod()
    obj["spec"]["containers"][0]["x"] = nested(58)
    assert isinstance(prepare(review_body(obj), settings()), Checked)
    obj["spec"]["containers"][0]["x"] = nested(59)
    assert malformed(review_body(obj)) == TOO_DEEP


def _set(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda owner: owner.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda owner: owner.pop(key)


def _meta(edit: Callable[[dict[str, Any]], None]) -> Edit:
    return lambda document: edit(document["request"]["object"]["metadata"])


def _obj(edit: Callable[[dict[str, Any]], None]) -> Edit:
    return lambda document: edit(document["request"]["object"])


ENVELOPE: dict[str, tuple[Edit, str]] = {
    "v1beta1": (
        _set("apiVersion", "admission.k8s.io/v1beta1"),
        WRONG_VERSION.format(kind="AdmissionReview", version="admission.k8s.io/v1beta1"),
    ),
    "other kind": (
        _set("kind", "TokenReview"),
        WRONG_VERSION.format(kind="TokenReview", version="admission.k8s.io/v1"),
    ),
    "no request": (_drop("request"), "the AdmissionReview has no request object"),
    "request a list": (_set("request", []), "the AdmissionReview has no request object"),
    "no uid": (request(_drop("uid")), "request.uid is missing or not a string"),
    "uid a number": (request(_set("uid", 7)), "request.uid is missing or not a string"),
    "uid empty": (request(_set("uid", "")), "request.uid is missing or not a string"),
    "no kind": (request(_drop("kind")), "request.kind is missing or not an object"),
    "kind a string": (request(_set("kind", "Pod")), "request.kind is missing or not an object"),
    "no operation": (request(_drop("operation")), "request.operation is missing or not a string"),
    "operation a list": (
        request(_set("operation", ["CREATE"])),
        "request.operation is missing or not a string",
    ),
    "no namespace": (
        request(_drop("namespace")),
        "request.namespace is missing: pods are namespaced",
    ),
    "namespace empty": (
        request(_set("namespace", "")),
        "request.namespace is missing: pods are namespaced",
    ),
    "namespace a number": (
        request(_set("namespace", 5)),
        "request.namespace is missing: pods are namespaced",
    ),
    "no object": (request(_drop("object")), "request.object is missing or not an object"),
    "object a list": (request(_set("object", [])), "request.object is missing or not an object"),
    "metadata a list": (_obj(_set("metadata", [])), "request.object.metadata is not of type dict"),
    "annotations a list": (
        _meta(_set("annotations", ["a"])),
        "request.object.metadata.annotations is not of type dict",
    ),
    "annotation a number": (
        _meta(lambda m: m["annotations"].__setitem__("x", 1)),
        "request.object.metadata.annotations must map strings to strings",
    ),
    "no spec": (_obj(_drop("spec")), "request.object.spec is missing or not an object"),
    "spec a list": (_obj(_set("spec", [])), "request.object.spec is missing or not an object"),
    "service account a number": (
        spec(_set("serviceAccountName", 1)),
        "spec.serviceAccountName is not of type str",
    ),
    "pod security context a list": (
        spec(_set("securityContext", [])),
        "spec.securityContext is not of type dict",
    ),
    **{
        f"pod {field} a string": (
            spec(_set("securityContext", {field: "1000"})),
            f"spec.securityContext.{field} is not an integer",
        )
        for field in ("runAsUser", "runAsGroup", "fsGroup")
    },
    "pod runAsUser a boolean": (
        spec(_set("securityContext", {"runAsUser": True})),
        "spec.securityContext.runAsUser is not an integer",
    ),
    "pod runAsUser a float": (
        spec(_set("securityContext", {"runAsUser": 1000.5})),
        "spec.securityContext.runAsUser is not an integer",
    ),
    "volumes an object": (spec(_set("volumes", {})), "spec.volumes is not of type list"),
    "volumes of strings": (
        spec(_set("volumes", ["data"])),
        "spec.volumes must be a list of objects",
    ),
    "volume name a number": (
        spec(_set("volumes", [{"name": "data", "emptyDir": {}}, {"name": 3}])),
        "spec.volumes[].name is not of type str",
    ),
    "containers an object": (spec(_set("containers", {})), "spec.containers is not of type list"),
    "containers of strings": (
        spec(_set("containers", ["app"])),
        "spec.containers must be a list of objects",
    ),
    "first container without a name": (
        container(0, _drop("name")),
        "spec.containers[0].name is missing or not a string",
    ),
    "second container's name a number": (
        second(_set("name", 2)),
        "spec.containers[1].name is missing or not a string",
    ),
    "init container without a name": (
        spec(_set("initContainers", [{"name": "migrate", "image": "x"}, {"image": "x"}])),
        "spec.initContainers[1].name is missing or not a string",
    ),
    "init containers of strings": (
        spec(_set("initContainers", ["migrate"])),
        "spec.initContainers must be a list of objects",
    ),
    "container security context a string": (
        container(0, _set("securityContext", "root")),
        "spec.containers[0].securityContext is not of type dict",
    ),
    **{
        f"second container's {field} a string": (
            second(_set("securityContext", {field: "0"})),
            f"spec.containers[1].securityContext.{field} is not an integer",
        )
        for field in ("runAsUser", "runAsGroup")
    },
    "init container runAsUser a string": (
        spec(_set("initContainers", [{"name": "m", "securityContext": {"runAsUser": "0"}}])),
        "spec.initContainers[0].securityContext.runAsUser is not an integer",
    ),
    "volume mounts an object": (
        container(0, _set("volumeMounts", {})),
        "spec.containers[0].volumeMounts is not of type list",
    ),
    "volume mounts of strings": (
        container(0, _set("volumeMounts", ["/data"])),
        "spec.containers[0].volumeMounts must be a list of objects",
    ),
    "mount path a number": (
        container(0, _set("volumeMounts", [{"name": "v", "mountPath": "/v"}, {"name": "w"}])),
        "spec.containers[0].volumeMounts[].mountPath is not a string",
    ),
    "init container's mount path a number": (
        spec(
            _set("initContainers", [{"name": "m", "volumeMounts": [{"name": "v", "mountPath": 1}]}])
        ),
        "spec.initContainers[0].volumeMounts[].mountPath is not a string",
    ),
}


@pytest.mark.parametrize("case", ENVELOPE)
def test_a_malformed_review_names_the_field(case: str) -> None:
    edit, message = ENVELOPE[case]
    assert malformed(body_with(edit)) == message


@pytest.mark.parametrize("case", ["uid empty", "no namespace", "mount path a number"])
async def test_review_raises_the_same_malformed_review(case: str) -> None:
    edit, message = ENVELOPE[case]
    with pytest.raises(MalformedReview) as caught:
        await review(body_with(edit), settings=settings(), check=RecordingCheck())
    assert str(caught.value) == message


ALLOWED_SHAPES: dict[str, Edit] = {
    "nulls everywhere": both(
        spec(_set("securityContext", {"runAsUser": None, "runAsGroup": None, "fsGroup": None})),
        spec(_set("volumes", None)),
        spec(_set("initContainers", None)),
        spec(_set("serviceAccountName", None)),
        container(0, _set("securityContext", None)),
        container(0, _set("volumeMounts", None)),
    ),
    "a container's fsGroup is not read": container(
        0, _set("securityContext", {"runAsUser": 1000, "fsGroup": "x"})
    ),
    "volumes and mounts": both(
        spec(_set("volumes", [{"name": "data", "emptyDir": {}}, {"emptyDir": {}}])),
        container(0, _set("volumeMounts", [{"name": "data", "mountPath": "/data"}])),
    ),
    "a namespace from the metadata": both(
        request(_drop("namespace")), _meta(_set("namespace", "shop"))
    ),
}


@pytest.mark.parametrize("case", ALLOWED_SHAPES)
def test_shapes_the_api_server_sends_are_not_malformed(case: str) -> None:
    checked = prepare(body_with(ALLOWED_SHAPES[case]), settings())
    assert isinstance(checked, Checked)
    assert (checked.uid, checked.namespace) == (UID, "shop")


def test_a_pod_without_metadata_or_annotations_is_admitted_untouched() -> None:
    for edit in (
        _obj(_drop("metadata")),
        _meta(_drop("annotations")),
        _meta(_set("annotations", None)),
    ):
        assert envelope(prepare(body_with(edit), settings())) == {"uid": UID, "allowed": True}


# --- the answers ------------------------------------------------------------------------


def envelope(decision: object) -> dict[str, Any]:
    assert not isinstance(decision, Checked)
    answer = admission_review(decision)  # type: ignore[arg-type]
    assert isinstance(answer, dict)
    assert (answer["apiVersion"], answer["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert set(answer) == {"apiVersion", "kind", "response"}
    response: dict[str, Any] = answer["response"]
    return response


UNTOUCHED: dict[str, Edit] = {
    "UPDATE": request(_set("operation", "UPDATE")),
    "create in lower case": request(_set("operation", "create")),
    "a Pod of another group": request(
        _set("kind", {"group": "example.com", "version": "v1", "kind": "Pod"})
    ),
    "a Deployment": request(_set("kind", {"group": "apps", "version": "v1", "kind": "Deployment"})),
    "a core ConfigMap": request(_set("kind", {"group": "", "version": "v1", "kind": "ConfigMap"})),
    "a kind without a name": request(_set("kind", {"group": "", "version": "v1"})),
    "a subresource": request(_set("subResource", "ephemeralcontainers")),
    "not injected": _meta(_set("annotations", {})),
    # neither the shape of a pod nor of anything else is checked for what is not injected
    "an UPDATE without an object": both(
        request(_set("operation", "UPDATE")), request(_drop("object"))
    ),
}


@pytest.mark.parametrize("case", UNTOUCHED)
def test_what_is_not_injected_is_allowed_with_the_requests_uid_and_nothing_else(case: str) -> None:
    response = envelope(prepare(body_with(UNTOUCHED[case]), settings()))
    assert response == {"uid": UID, "allowed": True}


def test_a_core_pod_kind_without_a_group_field_is_injected() -> None:
    edit = request(_set("kind", {"version": "v1", "kind": "Pod"}))
    assert isinstance(prepare(body_with(edit), settings()), Checked)


def test_an_empty_subresource_is_the_pod_itself() -> None:
    assert isinstance(prepare(body_with(request(_set("subResource", ""))), settings()), Checked)


def test_an_invalid_annotation_is_a_400_denial_with_the_requests_uid() -> None:
    response = envelope(
        prepare(body_with(_meta(_set("annotations", {f"{P}inject": "yes"}))), settings())
    )
    assert response == {
        "uid": UID,
        "allowed": False,
        "status": {
            "code": 400,
            "message": f'annotation {P}inject: \'yes\' is not "true" or "false"; '
            'write "true" to inject',
        },
    }


def checked(obj: dict[str, Any] | None = None, **changes: Any) -> Checked:
    result = prepare(body_with(lambda d: None, obj), settings(**changes))
    assert isinstance(result, Checked)
    return result


def test_prepare_hands_the_check_the_pod_its_namespace_account_and_owner() -> None:
    obj = pod(serviceAccountName="shop-api")
    obj["spec"]["securityContext"] = {"runAsUser": 2000, "runAsGroup": 3000}
    result = checked(obj)
    assert (result.uid, result.namespace, result.service_account) == (UID, "shop", "shop-api")
    assert result.pod == obj
    assert result.targets == ("app",)
    assert (result.plan.uid, result.plan.gid) == (1000, 3000)  # the container's user wins
    assert result.warnings == ()
    assert checked().service_account == "default"


def test_the_run_as_annotations_choose_the_owner() -> None:
    obj = pod({f"{P}run-as-user": "4242", f"{P}run-as-group": "7"})
    result = checked(obj)
    assert (result.plan.uid, result.plan.gid) == (4242, 7)
    assert result.injection.options.run_as_user == 4242


def test_the_injectors_own_namespace_is_not_injected() -> None:
    body = review_body(pod(), uid=UID, namespace="sakura-secrets")
    assert envelope(prepare(body, settings())) == {"uid": UID, "allowed": True}


def test_an_owner_that_falls_back_comes_with_its_warning() -> None:
    result = checked(pod(containers=[{"name": "app", "image": "x"}]), fallback_uid=4242)
    assert (result.plan.uid, result.plan.gid) == (4242, 4242)
    assert len(result.warnings) == 1 and "4242" in result.warnings[0]


def test_an_injected_answer_is_a_compact_base64_json_patch_with_the_uid() -> None:
    response = envelope(finish(checked(), CheckOutcome()))
    assert set(response) == {"uid", "allowed", "patchType", "patch"}  # no warnings: none given
    assert (response["uid"], response["allowed"], response["patchType"]) == (
        UID,
        True,
        "JSONPatch",
    )
    text = base64.b64decode(response["patch"], validate=True).decode()
    operations = json.loads(text)
    assert {op["op"] for op in operations} == {"add"}
    # the patch is stored in the audit log and counts toward the answer's size: no padding
    assert text == json.dumps(operations, separators=(",", ":"))


def test_warnings_of_the_owner_and_the_check_are_given_once_each_in_order() -> None:
    prepared = checked(pod(containers=[{"name": "app", "image": "x"}]))
    (owner,) = prepared.warnings
    outcome = CheckOutcome(warnings=("Sakura was unreachable", owner, "Sakura was unreachable"))
    response = envelope(finish(prepared, outcome))
    assert response["warnings"] == [owner, "Sakura was unreachable"]
    assert response["uid"] == UID and response["allowed"] is True


def test_the_checks_denial_is_a_403_with_the_uid_and_every_warning() -> None:
    prepared = checked(pod(containers=[{"name": "app", "image": "x"}]))
    outcome = CheckOutcome(
        denial="serviceaccount shop/default may not get secrets", warnings=("w",)
    )
    response = envelope(finish(prepared, outcome))
    assert response == {
        "uid": UID,
        "allowed": False,
        "status": {"code": 403, "message": "serviceaccount shop/default may not get secrets"},
        "warnings": [*prepared.warnings, "w"],
    }


async def test_review_checks_the_prepared_pod_and_answers_with_the_patch() -> None:
    check = RecordingCheck()
    answer = await review(
        review_body(pod(serviceAccountName="api"), uid=UID), settings=settings(), check=check
    )
    assert answer == finish(checked(pod(serviceAccountName="api")), CheckOutcome())
    [(namespace, account, plan)] = check.calls
    assert (namespace, account, plan) == ("shop", "api", checked().plan)


async def test_review_answers_a_denial_and_an_untouched_pod_without_the_check() -> None:
    check = RecordingCheck(CheckOutcome(denial="no"))
    denial = await review(review_body(pod(), uid=UID), settings=settings(), check=check)
    assert envelope(denial)["status"] == {"code": 403, "message": "no"}
    assert envelope(denial)["uid"] == UID
    check = RecordingCheck()
    body = review_body(pod(), uid=UID, operation="DELETE")
    answer = await review(body, settings=settings(), check=check)
    assert envelope(answer) == {"uid": UID, "allowed": True}
    assert check.calls == []


async def answered_without_the_default_pool() -> dict[str, Any]:
    """A review answered while the loop's default pool takes no work."""
    closed = ThreadPoolExecutor(max_workers=1)
    closed.shutdown()
    asyncio.get_running_loop().set_default_executor(closed)
    answer = await review(review_body(pod(), uid=UID), settings=settings(), check=RecordingCheck())
    return envelope(answer)


async def test_the_pipelines_work_does_not_wait_in_the_default_pool() -> None:
    """The broker's Kubernetes calls wait in the loop's default pool; a review must not queue
    behind them."""
    assert (await answered_without_the_default_pool())["patchType"] == "JSONPatch"


async def test_the_pipelines_cpu_work_takes_turns_on_one_thread() -> None:
    """One thread (issue 9): a second review's work waits for the first instead of competing
    with the event loop for the GIL."""
    release = threading.Event()

    def first_turn() -> threading.Thread:
        release.wait(60)
        return threading.current_thread()

    first = asyncio.ensure_future(admission.QUEUE.run("a", first_turn))
    second = asyncio.ensure_future(admission.QUEUE.run("b", threading.current_thread))
    await asyncio.sleep(0)
    assert admission.QUEUE.waiting() == 1  # a second worker would have taken it at once
    release.set()
    assert await first is await second
    assert (await answered_without_the_default_pool())["patchType"] == "JSONPatch"


# --- the screen before the parse: values and depth counted on the bytes ------------------

TOO_MANY = "the body has more than 100000 JSON values; it is not a pod's review"
NOT_AN_OBJECT = "the body is not a JSON object"


def numbers(count: int) -> bytes:
    """A list of `count` numbers: count - 1 commas and one opener."""
    return b"[" + b"0," * (count - 1) + b"0]"


def test_values_are_counted_before_the_parse_up_to_the_limit() -> None:
    assert admission.MAX_VALUES == 100_000
    assert malformed(numbers(admission.MAX_VALUES - 1)) == NOT_AN_OBJECT  # parsed
    assert malformed(numbers(admission.MAX_VALUES)) == TOO_MANY
    assert malformed(b"[" * admission.MAX_VALUES) == TOO_MANY
    assert malformed(b"[" * 50_000 + b"{" * 49_999).startswith("the body is nested more")
    assert malformed(b"{" * admission.MAX_VALUES) == TOO_MANY


def test_quotes_are_bounded_before_strings_are_cut_out() -> None:
    limit = 4 * admission.MAX_VALUES
    at_limit = b'"' + b'\\"' * (limit - 2) + b'"'  # one string of escaped quotes
    assert at_limit.count(b'"') == limit
    assert malformed(at_limit) == NOT_AN_OBJECT
    assert malformed(b'"' + b'\\"' * (limit - 1) + b'"') == TOO_MANY


def test_commas_and_brackets_inside_strings_are_not_structure() -> None:
    deep = "[{" * 40
    strings = {"a": deep, "b": "x," * admission.MAX_VALUES, "c": 'q"' + deep, "d": "\\"}
    body = json.dumps([strings, deep + '\\"' + deep]).encode()
    assert malformed(body) == NOT_AN_OBJECT
    # an escaped backslash ends a string's escapes: the brackets after it are structure
    structure = b'["\\\\", ' + b"[" * 65 + b"]" * 65 + b"]"
    assert malformed(structure) == TOO_DEEP


def test_depth_counts_lists_and_objects_alike() -> None:
    assert malformed(b"[" * 64 + b"]" * 64) == NOT_AN_OBJECT
    assert malformed(b'{"a":' * 64 + b"1" + b"}" * 64) == WRONG_VERSION.format(
        kind=None, version=None
    )
    assert malformed(b"[" * 33 + b"{" * 32 + b"}" * 32 + b"]" * 33) == TOO_DEEP
    assert malformed(b"[" * 65) == TOO_DEEP  # unbalanced, still too deep


# --- the claim read before queueing, the lanes, the deadlines, shedding -------------------

CLAIM_REFUSED = (
    'expected an AdmissionReview of apiVersion admission.k8s.io/v1 ("kind": '
    '"AdmissionReview", "apiVersion": "admission.k8s.io/v1"); set admissionReviewVersions: '
    "[v1] in the webhook configuration"
)


def test_a_review_claims_its_uid_and_namespace() -> None:
    assert admission.claim(review_body(pod(), uid=UID, namespace="shop-2")) == admission.Claim(
        UID, "shop-2"
    )
    compact = b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}}'
    assert admission.claim(compact) == admission.Claim("u", "")
    spaced = b'{"kind" :\n "AdmissionReview", "apiVersion"\t: "admission.k8s.io/v1", "uid" : "u",'
    assert admission.claim(spaced + b' "namespace" : "a-1"}') == admission.Claim("u", "a-1")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[[[[]]]]",
        b'{"kind": "AdmissionReview"}',
        b'{"apiVersion": "admission.k8s.io/v1"}',
        b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1"}',
        b'{"kind": "AdmissionReviewX", "apiVersion": "admission.k8s.io/v1"}',
        b'{"kind": "AdmissionReview", "apiVersion": "admission.k8sXio/v1"}',
    ],
)
def test_a_body_that_does_not_claim_to_be_a_v1_review_is_refused_before_the_queue(
    body: bytes,
) -> None:
    with pytest.raises(MalformedReview) as caught:
        admission.claim(body)
    assert str(caught.value) == CLAIM_REFUSED


@pytest.mark.parametrize("uid", ['""', '"with\\\\"', '"' + "u" * 129 + '"', "7", '"with\\"quote"'])
def test_a_review_without_a_plain_uid_is_refused_before_the_queue(uid: str) -> None:
    envelope_ = '{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "uid": '
    with pytest.raises(MalformedReview) as caught:
        admission.claim((envelope_ + uid + "}").encode())
    assert str(caught.value) == "request.uid is missing or not a string"
    assert admission.claim((envelope_ + '"' + "u" * 128 + '"}').encode()).uid == "u" * 128


@pytest.mark.parametrize("namespace", ["Shop", "a_b", "", "x" * 64, "a.b"])
def test_only_a_namespace_name_is_claimed(namespace: str) -> None:
    body = b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","uid":"u",'
    claimed = admission.claim(body + f'"namespace": "{namespace}"}}'.encode())
    assert claimed.namespace == ""
    assert admission.claim(body + b'"namespace":"' + b"x" * 63 + b'"}').namespace == "x" * 63


class RecordingQueue(admission.FairQueue):
    """The real queue on a hand clock; remembers each job's lane and deadline, and sheds the
    jobs numbered in `shed` (0 is the first)."""

    def __init__(self, shed: tuple[int, ...] = ()) -> None:
        super().__init__(
            "admission", workers=1, waiting_per_key=4, max_waiting=8, clock=lambda: 50.0
        )
        self.jobs: list[tuple[Any, float | None]] = []
        self.small: list[bool] = []
        self.shed = shed

    async def run(
        self, key: Any, work: Any, *, deadline: float | None = None, small: bool = False
    ) -> Any:
        self.jobs.append((key, deadline))
        self.small.append(small)
        if len(self.jobs) - 1 in self.shed:
            raise admission.Overloaded("admission: full")
        return await super().run(key, work, deadline=deadline, small=small)


async def test_a_review_takes_one_turn_in_the_lane_of_caller_and_namespace() -> None:
    """The patch is built in that turn with the plan; the check's answer only picks it."""
    turns = RecordingQueue()
    webhook = settings(review_timeout=8.0)
    answer = await review(
        review_body(pod(), uid=UID, namespace="shop"),
        settings=webhook,
        check=RecordingCheck(),
        caller="10.0.0.9",
        queue=turns,
    )
    assert envelope(answer)["patchType"] == "JSONPatch"
    assert turns.jobs == [(("10.0.0.9", "shop"), 54.0)]
    assert turns.small == [True]  # a pod's review: prepared on the loop if the queue is idle


async def test_a_review_over_the_small_size_always_takes_the_admission_thread() -> None:
    turns = RecordingQueue()

    def padded(size: int) -> bytes:
        """A review of exactly `size` bytes (an annotation of x's makes up the rest)."""
        bare = len(review_body(pod(annotations={"padding": ""}), uid=UID))
        return review_body(pod(annotations={"padding": "x" * (size - bare)}), uid=UID)

    at_the_bound, over_it = padded(admission.SMALL_BYTES), padded(admission.SMALL_BYTES + 1)
    for body in (at_the_bound, over_it):
        await review(body, settings=settings(), check=RecordingCheck(), queue=turns)
    assert (len(at_the_bound), len(over_it)) == (admission.SMALL_BYTES, admission.SMALL_BYTES + 1)
    assert turns.small == [True, False]
    assert admission.SMALL_BYTES == 32 * 1024


async def test_a_review_that_cannot_be_done_in_time_gets_a_fast_429_denial() -> None:
    for shed in ((0,),):
        check = RecordingCheck()
        answer = await review(
            review_body(pod(), uid=UID),
            settings=settings(),
            check=check,
            queue=RecordingQueue(shed),
        )
        assert admission_review(answer) == {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": UID,
                "allowed": False,
                "status": {
                    "code": 429,
                    "message": "sakura-secrets-injector is overloaded (admission: full); the pod "
                    "was not created, try again in a few seconds (controllers retry by "
                    "themselves)",
                },
            },
        }
        assert check.calls == []  # shed before the check: after it, nothing is left to do
        assert isinstance(answer, Refused) and answer.pod.namespace == "shop"  # the claimed one


async def test_the_default_queue_and_caller() -> None:
    assert admission.QUEUE.workers == 1 and admission.QUEUE.per_key == 1
    assert (admission.QUEUE.waiting_per_key, admission.QUEUE.max_waiting) == (32, 256)
    turns = RecordingQueue()
    await review(
        review_body(pod(), uid=UID), settings=settings(), check=RecordingCheck(), queue=turns
    )
    assert turns.jobs[0] == (("", "shop"), 55.0)


def test_the_review_timeout_is_the_webhooks_timeout_seconds() -> None:
    assert settings().review_timeout == 10.0
    assert settings(review_timeout=1).review_timeout == 1
    assert settings(review_timeout=30).review_timeout == 30
    for wrong in (0.5, 31):
        with pytest.raises(ValueError, match="must be the webhook's timeoutSeconds"):
            settings(review_timeout=wrong)


def test_a_shed_review_is_counted_apart_from_denials() -> None:
    from injector.serving.metrics import outcome_of

    shed = admission.shed("u", admission.Overloaded("x"), "shop")
    assert outcome_of(shed) == "shed"
    assert outcome_of(Refused("u", 403, "no")) == "denied"


def test_only_the_head_of_a_body_is_searched_for_the_claim() -> None:
    assert admission.CLAIM_BYTES == 4096
    head = b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","uid":"u","pad":"'
    tail = b'","namespace":"ns"'
    pad = b"x" * (4096 - len(head) - len(tail))
    assert admission.claim(head + pad + tail + b"}").namespace == "ns"
    assert admission.claim(head + pad + b"x" + tail + b"}").namespace == ""
    late = b'{"pad":"' + b"x" * 4096 + b'",' + head[1:] + b'"}'
    with pytest.raises(MalformedReview, match="expected an AdmissionReview"):
        admission.claim(late)


# --- the typed decision, read by metrics, logs and render ----------------------------------


def test_what_is_not_injected_says_why() -> None:
    untouched = prepare(body_with(request(_set("operation", "UPDATE"))), settings())
    assert untouched == Skipped(UID, "not the creation of a pod", ReasonCode.NOT_A_POD_CREATION)
    no_opt_in = prepare(body_with(_meta(_set("annotations", {}))), settings())
    assert isinstance(no_opt_in, Skipped) and no_opt_in.reason_code == ReasonCode.NOT_OPTED_IN
    assert no_opt_in.reason == f"no {P}inject annotation"
    own = prepare(review_body(pod(), uid=UID, namespace="sakura-secrets"), settings())
    assert isinstance(own, Skipped) and own.reason_code == ReasonCode.EXCLUDED_NAMESPACE
    assert own.reason == "namespace sakura-secrets is never injected"
    assert own.pod.namespace == "sakura-secrets"


def test_every_decision_has_its_metrics_outcome() -> None:
    from injector.serving.metrics import outcome_of

    assert outcome_of(Injected("u", ())) == "injected"
    assert outcome_of(Skipped("u", "why")) == "skipped"
    assert outcome_of(Refused("u", 400, "no")) == "denied"
    assert outcome_of(Refused("u", 500, "failed")) == "denied"


def test_an_internal_failure_is_a_500_denial_with_the_uid_and_no_details() -> None:
    assert admission_review(internal_failure("u-1")) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": "u-1",
            "allowed": False,
            "status": {
                "code": 500,
                "message": "sakura-secrets-injector failed unexpectedly; see its logs",
            },
        },
    }


def test_prepare_checks_the_pod_with_the_annotations_options() -> None:
    """The containers and mount-path annotations reach the pod's checks and the targets."""
    two = [
        {"name": "app", "image": "x", "securityContext": {"runAsUser": 1000}},
        {"name": "side", "image": "x", "volumeMounts": [{"name": "d", "mountPath": "/data"}]},
    ]
    chosen = checked(pod({f"{P}containers": "app"}, containers=two))
    assert chosen.targets == ("app",)
    unknown = prepare(review_body(pod({f"{P}containers": "web"}, containers=two)), settings())
    assert isinstance(unknown, Refused) and "names 'web'" in unknown.message
    in_use = {f"{P}containers": "side", f"{P}mount-path": "/data", f"{P}run-as-user": "7"}
    taken = prepare(review_body(pod(in_use, containers=two)), settings())
    assert isinstance(taken, Refused) and "already mounts volume 'd' at /data" in taken.message


def test_the_owners_warnings_go_into_the_status_warnings_annotation() -> None:
    prepared = checked(pod(containers=[{"name": "app", "image": "x"}]))
    (warning,) = prepared.warnings
    injected = finish(prepared, CheckOutcome(warnings=("from the check",)))
    assert isinstance(injected, Injected)
    notes = [op["value"] for op in injected.patch if op["path"].startswith("/metadata")]
    assert notes == ["injected", warning]  # only the owner's: the check's reach the creator
    assert injected.warnings == (warning, "from the check")


def test_a_plan_too_large_is_refused_naming_the_annotation_of_a_renamed_file() -> None:
    """The pod's annotations reach the size check: a renamed file's key has its FILE, not the
    name on disk (issue 23)."""
    notes = {f"{P}template-big": '{{ secret("a") }}' + "x" * 131_000, f"{P}file-name-big": ".b"}
    answer = prepare(review_body(pod(notes)), settings())
    assert isinstance(answer, Refused)
    assert answer.message.startswith(f"annotation {P}template-big: the pod's 2 files make a plan")
