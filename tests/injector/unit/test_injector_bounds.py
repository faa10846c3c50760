"""Admission work is linear in the pod's annotations and bounded by limits that name themselves.

Growth is measured in operations (function calls counted by a profiler), which a busy machine
cannot change: four times the input must cost about four times the work, not sixteen.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from support.admission_harness import P, admitted, denied, pod, review_body, settings

from contract import (
    MAX_PLAN_BYTES,
    MAX_SECRETS,
    FileSpec,
    Plan,
    SecretRef,
)
from contract.template import template_refs, template_tokens
from injector.serving.admission_review import admission_review
from injector.serving.review_queue import read_review
from injector.webhook import admission
from injector.webhook.admission import Checked, finish
from injector.webhook.annotations import (
    MAX_ANNOTATIONS_BYTES,
    MAX_FILES,
    MAX_TEMPLATE_TOKENS,
    forget_remembered,
)
from injector.webhook.checks import CheckOutcome

LINEAR_AT_MOST = 6.0
"""Work for 4x the input, relative: linear is about 4, quadratic about 16."""


def operations(work: Callable[[], object]) -> int:
    """The Python and C function calls `work` makes in this thread."""
    count = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        work()
    finally:
        sys.setprofile(None)
    return count


def growth(work: Callable[[int], object], n: int) -> float:
    """Each side measured as a first review: nothing remembered from the other (what a pod's
    annotations cost the first time is the bound; `injector.webhook.text_memo`)."""

    def cold(size: int) -> int:
        forget_remembered()
        return operations(lambda: work(size))

    return cold(4 * n) / cold(n)


def nested(depth: int) -> str:
    return "{% if x %}" * depth + "{{ x }}" + "{% endif %}" * depth


TEMPLATES: dict[str, Callable[[int], str]] = {
    # a name set after it is read was looked for in the whole tree at each read: quadratic
    "names set at the end": lambda n: "{{x}}" * n + '{% set x = secret("db") %}',
    # and each secret was looked for in the list of those found before it
    "distinct secrets": lambda n: "".join(f'{{{{ secret("s{i}") }}}}' for i in range(n)),
    "loop variables": lambda n: (
        '{% set x = secret("db") %}'
        + "".join(f"{{% for v{i} in x %}}{{{{ v{i} }}}}{{% endfor %}}" for i in range(n))
    ),
    "nested blocks": lambda n: '{% set x = secret("db") %}' + nested(25) * (n // 25),
}


@pytest.mark.parametrize("shape", TEMPLATES)
def test_template_analysis_work_grows_linearly(shape: str) -> None:
    make = TEMPLATES[shape]
    assert growth(lambda n: template_refs(make(n)), 400) < LINEAR_AT_MOST


def test_template_analysis_keeps_its_rules_on_a_long_template() -> None:
    body = "{% for i in x %}{{ i }}{% endfor %}{{x}}" * 500
    assert template_refs('{% set x = secret("db") %}' + body) == (SecretRef("db"),)
    with pytest.raises(ValueError, match="'y', which is not defined"):
        template_refs('{% set x = secret("db") %}' + body + "{{ y }}")
    with pytest.raises(ValueError, match="called directly"):
        template_refs('{% set x = secret("db") %}' + body + "{{ secret }}")


class Name(str):
    """A file name whose comparisons the profiler sees (str's own are inside one C call)."""

    def __eq__(self, other: object) -> bool:
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_checking_a_plan_for_duplicate_files_grows_linearly() -> None:
    def plan(n: int) -> Plan:
        files = tuple(FileSpec(Name(f"f{i}"), 0o400, secret=SecretRef("s")) for i in range(n))
        return Plan(files=files, directory="/sakura/secrets", vault_id="1" * 12, uid=1, gid=1)

    assert growth(plan, 1000) < LINEAR_AT_MOST  # a search per file compares n * n names


def prepare(body: bytes, webhook: Any) -> object:
    """The core's `prepare` on a body as the shell reads it (screen, then parse)."""
    return admission.prepare(read_review(body), webhook)


def inject(annotations: dict[str, str]) -> dict[str, str]:
    return {f"{P}inject": "true", **annotations}


def reviewed(annotations: dict[str, str]) -> dict[str, Any]:
    """The whole review's pure work, as `review` runs it around an admitting check."""
    checked = prepare(review_body(pod(inject(annotations), inject=False)), settings())
    assert isinstance(checked, Checked), checked
    answer = admission_review(finish(checked, CheckOutcome()))
    assert answer["response"]["allowed"], answer
    return answer


PODS: dict[str, Callable[[int], dict[str, str]]] = {
    "one template": lambda n: {f"{P}template-t": TEMPLATES["names set at the end"](n)},
    "many templates": lambda n: {
        f"{P}template-t{i}": f'{{{{ secret("s{i % 50}") }}}}' for i in range(n)
    },
    "many secrets": lambda n: {f"{P}secret-f{i}": f"s{i % 50}@{i % 2 + 1}#k{i}" for i in range(n)},
    "nested blocks": lambda n: {f"{P}template-t": TEMPLATES["nested blocks"](n)},
}
SIZES = {"one template": 300, "many templates": 40, "many secrets": 200, "nested blocks": 50}
"""Four times each size stays within every limit (at most 100 distinct secrets among them):
the pods are admitted."""


@pytest.mark.parametrize("shape", PODS)
def test_review_work_grows_linearly_with_the_annotations(shape: str) -> None:
    make = PODS[shape]
    assert growth(lambda n: reviewed(make(n)), SIZES[shape]) < LINEAR_AT_MOST


async def test_annotations_over_the_api_servers_total_are_denied_naming_the_largest() -> None:
    big = "x" * (MAX_ANNOTATIONS_BYTES // 2)
    response = await denied(pod({"example.com/a": big, "example.com/bb": big}))
    message = response["status"]["message"]
    assert message.startswith("annotation example.com/bb: the pod's annotations have")
    assert "262144 (256 KiB) Kubernetes allows" in message


async def test_annotations_at_the_api_servers_total_are_read() -> None:
    notes = pod()["metadata"]["annotations"]
    used = sum(len(k) + len(v) for k, v in notes.items()) + len("example.com/pad")
    await admitted(pod({"example.com/pad": "x" * (MAX_ANNOTATIONS_BYTES - used)}))


async def test_the_template_token_budget_is_shared_by_the_pods_templates() -> None:
    head = '{% set x = secret("db") %}'
    units = (MAX_TEMPLATE_TOKENS - template_tokens(head, 100)) // 3  # "{{", "x", "}}"
    whole = head + "{{x}}" * units
    assert template_tokens(whole, MAX_TEMPLATE_TOKENS) <= MAX_TEMPLATE_TOKENS
    await admitted(pod({f"{P}template-a": whole}))
    half = head + "{{x}}" * (units // 2 + 10)
    response = await denied(pod({f"{P}template-a": half, f"{P}template-b": half}))
    message = response["status"]["message"]
    assert message.startswith(f"annotation {P}template-b: the pod's templates have more than")
    assert f"{MAX_TEMPLATE_TOKENS} jinja2 tokens together" in message


def test_counting_tokens_stops_past_the_limit() -> None:
    assert template_tokens('{{ secret("a") }}', 100) == 8  # {{, space, name, (, "a", ), space, }}
    assert template_tokens("{{x}}" * 1_000_000, 10) == 11
    assert template_tokens("plain text, however long " * 1000, 10) == 1
    assert template_tokens('{{ "unclosed', 10) == 2  # parsing reports the error with its line


async def test_more_files_than_a_pod_may_have_are_denied_before_any_is_parsed() -> None:
    files = {f"{P}secret-f{i:04}": "not a @ reference" for i in range(MAX_FILES)}
    response = await denied(pod(files))  # the harness's pod has secret-db-password too
    message = response["status"]["message"]
    assert message.startswith(f"annotation {P}secret-f0999: the pod's secret-FILE and template")
    assert f"ask for {MAX_FILES + 1} files, more than the {MAX_FILES} a pod may have" in message


async def test_a_plan_too_large_for_the_init_containers_environment_is_denied() -> None:
    files = {
        f"{P}secret-{'f' * 53}{i:03}": f"{'s' * 250}{i:03}@{i + 1}#{'k' * 100}" for i in range(300)
    }
    response = await denied(pod({**files, f"{P}template-big": '{{ secret("a") }}' + "x" * 9000}))
    message = response["status"]["message"]
    assert message.startswith(f"annotation {P}template-big: the pod's 302 files make a plan of")
    assert f"more than the {MAX_PLAN_BYTES} (127 KiB)" in message
    response = await denied(pod({f"{P}template-big": '{{ secret("a") }}' + "x" * 131_000}))
    assert response["status"]["message"].startswith(
        f"annotation {P}template-big: the pod's 2 files"
    )
    renamed = {f"{P}template-big": '{{ secret("a") }}' + "x" * 131_000, f"{P}file-name-big": ".b"}
    response = await denied(pod(renamed))  # the annotation's FILE, not the name on disk
    assert response["status"]["message"].startswith(
        f"annotation {P}template-big: the pod's 2 files"
    )


async def test_a_plan_just_within_the_limit_is_admitted_and_fits_one_variable() -> None:
    head = '{{ secret("a") }}'
    notes = {f"{P}template-big": head, f"{P}run-as-user": "2147483647"}
    size = len(prepare_plan(notes))
    notes[f"{P}template-big"] = head + "x" * (MAX_PLAN_BYTES - size - 40)
    result = await admitted(pod(notes))
    value = result.env["SAKURA_SECRETS_PLAN"]["value"]
    assert MAX_PLAN_BYTES - 100 < len(value) <= MAX_PLAN_BYTES
    assert len(f"SAKURA_SECRETS_PLAN={value}".encode()) < 128 * 1024  # Linux: MAX_ARG_STRLEN


def prepare_plan(annotations: dict[str, str]) -> str:
    checked = prepare(review_body(pod(annotations)), settings())
    assert isinstance(checked, Checked)
    return checked.plan.to_json()


async def test_more_distinct_secrets_than_one_fetch_may_read_are_denied() -> None:
    """The broker answers at most MAX_SECRETS per request: such a pod could never start, and
    each distinct secret is a SubjectAccessReview at admission."""
    many = {f"{P}secret-f{i:03}": f"s{i}" for i in range(MAX_SECRETS)}  # + the harness's one
    response = await denied(pod(many))
    assert response["status"]["message"] == (
        f"annotations {P}secret-*/template-*: the pod reads {MAX_SECRETS + 1} distinct secrets "
        f"(name and version), more than the {MAX_SECRETS} one pod may read (a vault holds at "
        "most 100); split the files over several pods or read fewer versions"
    )
    same = {f"{P}secret-f{i:03}": f"api#k{i}" for i in range(MAX_FILES - 1)}  # one secret
    await admitted(pod(same))


async def test_exactly_the_template_token_budget_is_admitted() -> None:
    head = '{% set x = secret("db") %}'
    units = (MAX_TEMPLATE_TOKENS - template_tokens(head, 100)) // 3
    exact = head + "{{x.y}}" + "{{x}}" * (units - 1)  # "{{x.y}}" is two tokens more
    assert template_tokens(exact, MAX_TEMPLATE_TOKENS + 10) == MAX_TEMPLATE_TOKENS
    await admitted(pod({f"{P}template-a": exact}))
    response = await denied(pod({f"{P}template-a": exact + "{{x}}"}))
    assert response["status"]["message"].endswith(
        "make the templates simpler or write fewer of them"
    )


async def test_a_plan_of_exactly_the_limit_is_admitted() -> None:
    head = '{{ secret("a") }}'
    notes = {f"{P}template-big": head}
    notes[f"{P}template-big"] = head + "x" * (MAX_PLAN_BYTES - len(prepare_plan(notes)))
    assert len(prepare_plan(notes)) == MAX_PLAN_BYTES
    await admitted(pod(notes))
    notes[f"{P}template-big"] += "x"
    await denied(pod(notes))


async def test_a_plan_too_large_names_its_largest_source_and_the_fix() -> None:
    """The largest by size, a secret-FILE here, not the last by name."""
    long_key = "s@1#" + "k" * 70_000
    notes = {f"{P}secret-a": long_key, f"{P}template-z": '{{ secret("b") }}' + "x" * 60_000}
    response = await denied(pod(notes))
    message = response["status"]["message"]
    assert message.startswith(f"annotation {P}secret-a: the pod's 3 files make a plan of")
    assert message.endswith(
        "can carry (Linux caps one variable at 128 KiB); this is the largest file's source: "
        "write fewer or smaller files per pod"
    )


async def test_exactly_as_many_distinct_secrets_as_one_fetch_may_read_are_admitted() -> None:
    many = {f"{P}secret-f{i:03}": f"s{i}" for i in range(MAX_SECRETS - 1)}  # + the harness's
    await admitted(pod(many))


async def test_too_many_files_are_denied_with_the_fix() -> None:
    files = {f"{P}secret-f{i:04}": "s" for i in range(MAX_FILES)}
    response = await denied(pod(files))
    assert response["status"]["message"].endswith(
        "write fewer files (one template can put several secrets into one file)"
    )
