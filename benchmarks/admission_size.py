"""Benchmark: one whole review (`injector.serving.review_queue.review`) of a pod whose
annotations are 1, 64 and 256 KiB, for the shapes that cost the most, in this process.

    python benchmarks/admission_size.py [--sizes 1,64,256] [--runs 5] [--shapes ...] [--analysis]

The API server allows 256 KiB of annotations in total. Shapes: one template of names read
before the `set` that defines them (`{{x}}...{% set x = ... %}`, the shape that was
quadratic), many small template-FILE annotations, many secret-FILE
annotations, and templates of blocks nested as deep as the webhook accepts. `at-limits` is the
most expensive pod that is still admitted: templates with the whole token budget and
secret-FILE annotations up to the plan's size limit. The admission check admits without a
network call, so this is the webhook's own CPU work: decode, parse annotations and templates,
build the pod, compute and encode the JSON patch. A review that ends in a denial counts too:
denying is how an oversized pod is answered. Each figure is the fastest of `--runs`, each a
first review (the remembered parses and template analyses are forgotten before it), in wall
time and in CPU time of this process (what the review costs, whatever else the machine runs);
"growth" is the CPU time's ratio between the last two sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webhook import TYPICAL_POD  # noqa: E402  (this directory: the pod it measures)

from contract import Plan  # noqa: E402
from injector.operations.reviews import pod_create_review  # noqa: E402
from injector.serving.admission_review import admission_review  # noqa: E402
from injector.serving.review_queue import review  # noqa: E402
from injector.webhook.annotations import forget_remembered  # noqa: E402
from injector.webhook.checks import CheckOutcome  # noqa: E402
from injector.webhook.settings import WebhookSettings  # noqa: E402

P = "sakura-secrets.io/"
KIB = 1024
BASE = {f"{P}inject": "true", f"{P}vault-id": "123456789012", f"{P}containers": "app"}
SETTINGS = WebhookSettings(
    image="sakura-secrets-injector:bench",
    broker_url="https://sakura-secrets-injector.sakura-secrets.svc",
    broker_ca_pem="-----BEGIN CERTIFICATE-----\nMIIBbench\n-----END CERTIFICATE-----\n",
)


class Admit:
    async def __call__(self, namespace: str, service_account: str, plan: Plan) -> CheckOutcome:
        return CheckOutcome()


Annotations = dict[str, str]


def size_of(annotations: Annotations) -> int:
    """As the API server counts: the bytes of every key and value."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())


def fill(annotations: Annotations, size: int, key: str, head: str, unit: str) -> Annotations:
    """`annotations` plus `key`: `head` followed by as many `unit`s as reach `size` bytes."""
    room = size - size_of(annotations) - len(key) - len(head)
    return {**annotations, key: head + unit * max(0, room // len(unit))}


def one_template(size: int) -> Annotations:
    """Names read before the `set` at the end: the old analysis searched the tree per read."""
    tail = '{% set x = secret("db") %}'
    annotations = fill(BASE, size - len(tail), f"{P}template-config", "", "{{x}}")
    annotations[f"{P}template-config"] += tail
    return annotations


def many(size: int, entry: Callable[[int], tuple[str, str]]) -> Annotations:
    annotations = dict(BASE)
    used = size_of(annotations)
    index = 0
    while True:
        key, value = entry(index)
        used += len(key) + len(value)
        if used > size:
            return annotations
        annotations[key] = value
        index += 1


def many_templates(size: int) -> Annotations:
    return many(size, lambda i: (f"{P}template-t{i}", f'{{{{ secret("s{i % 99}") }}}}'))


def many_secrets(size: int) -> Annotations:
    return many(size, lambda i: (f"{P}secret-f{i}", f"s{i % 49}@{i % 2 + 1}#k{i}"))


def nested_block(depth: int) -> str:
    return "{% if x %}" * depth + "{{ x }}" + "{% endif %}" * depth


def nested_templates(size: int) -> Annotations:
    fits = (size - size_of(BASE) - 100) // len(nested_block(1))
    block = nested_block(max(1, min(allowed_depth(), fits)))
    return fill(BASE, size, f"{P}template-nested", '{% set x = secret("db") %}', block)


def at_limits(size: int) -> Annotations:
    """The costliest admitted pod, whatever `size`: every bound reached but none passed."""
    from contract.template import template_tokens
    from injector.serving.review_queue import read_review
    from injector.webhook.admission import Checked, prepare
    from injector.webhook.annotations import MAX_FILES, MAX_TEMPLATE_TOKENS

    tail = '{% set x = secret("db") %}'
    value = "{{x}}" * ((MAX_TEMPLATE_TOKENS - template_tokens(tail, 100)) // 3) + tail

    def pod(files: int) -> Annotations:
        secrets = {f"{P}secret-f{i:05}": f"s{i % 49}@{i % 2 + 1}#k{i}" for i in range(files)}
        return {**BASE, f"{P}template-config": value, **secrets}

    low, high = 0, MAX_FILES - 1  # the most secret-FILE annotations whose plan still fits
    while low < high:
        middle = (low + high + 1) // 2
        if isinstance(prepare(read_review(body_of(pod(middle))), SETTINGS), Checked):
            low = middle
        else:
            high = middle - 1
    return pod(low)


_DEPTH: list[int] = []


def allowed_depth() -> int:
    """The deepest nesting of blocks a review admits, found by bisection on real reviews."""
    if not _DEPTH:
        low, high = 1, 2000
        while low < high:
            middle = (low + high + 1) // 2
            template = '{% set x = secret("db") %}' + nested_block(middle)
            answer = run_review(body_of({**BASE, f"{P}template-nested": template}))
            if answer["response"]["allowed"]:
                low = middle
            else:
                high = middle - 1
        _DEPTH.append(low)
    return _DEPTH[0]


SHAPES: dict[str, Callable[[int], Annotations]] = {
    "one-template": one_template,
    "many-templates": many_templates,
    "many-secrets": many_secrets,
    "nested-blocks": nested_templates,
    "at-limits": at_limits,
}


def body_of(annotations: Annotations) -> bytes:
    pod: dict[str, Any] = copy.deepcopy(TYPICAL_POD)
    pod["metadata"]["annotations"] = annotations
    return json.dumps(pod_create_review(pod, namespace="shop", uid="bench")).encode()


def run_review(body: bytes) -> dict[str, Any]:
    return admission_review(asyncio.run(review(body, settings=SETTINGS, check=Admit())))


def measure(body: bytes, runs: int) -> tuple[float, float, dict[str, Any]]:
    """The fastest of `runs` reviews of `body`: wall and CPU seconds, and the last answer.

    CPU time (all threads of this process) is what the review costs; wall time adds whatever
    the machine's other work takes from it.
    """

    async def timed() -> tuple[float, float, dict[str, Any]]:
        wall = cpu = float("inf")
        answer: dict[str, Any] = {}
        for _ in range(runs):
            forget_remembered()  # each a first review: parses and analyses are remembered
            started, cpu_started = time.perf_counter(), time.process_time()
            answer = admission_review(await review(body, settings=SETTINGS, check=Admit()))
            wall = min(wall, time.perf_counter() - started)
            cpu = min(cpu, time.process_time() - cpu_started)
        return wall, cpu, answer

    return asyncio.run(timed())


def outcome(answer: dict[str, Any]) -> str:
    response = answer["response"]
    if response["allowed"]:
        return "admitted" if "patch" in response else "skipped"
    message: str = response["status"]["message"]
    return "denied: " + (message if len(message) <= 60 else message[:57] + "...")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1,64,256", help="annotation sizes in KiB")
    parser.add_argument("--runs", type=int, default=5, help="reviews per figure (fastest wins)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shapes")
    parser.add_argument(
        "--analysis", action="store_true", help="also time template analysis alone, unlimited"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    shapes = args.shapes.split(",")
    print(f"one review in-process, fastest of {args.runs}; annotations as the API server counts")
    print(f"{'shape':<16}{'KiB':>6}{'files':>7}{'ms':>9}{'cpu ms':>9}  outcome")
    for shape in shapes:
        build = SHAPES[shape]
        figures: list[float] = []
        for size in [0] if shape == "at-limits" else sizes:
            annotations = build(size * KIB)
            files = sum(k.startswith((f"{P}secret-", f"{P}template-")) for k in annotations)
            seconds, cpu, answer = measure(body_of(annotations), args.runs)
            figures.append(cpu)
            print(
                f"{shape:<16}{size_of(annotations) / KIB:>6.0f}{files:>7}"
                f"{seconds * 1000:>9.2f}{cpu * 1000:>9.2f}  {outcome(answer)}"
            )
        if len(figures) > 1:
            growth = figures[-1] / figures[-2]
            print(f"{shape:<16}{'':>6}{'':>7}{'':>9}{'':>9}  growth {growth:.1f}x")
    if "nested-blocks" in shapes:
        print(f"nested-blocks: blocks nested {allowed_depth()} deep, the most a review admits")
    if args.analysis:
        analysis(sizes, args.runs)


def analysis(sizes: list[int], runs: int) -> None:
    """`template_refs` alone on the one-template shape, at sizes a review would deny."""
    from contract.template import template_refs

    print("template analysis alone (plan.template_refs), one-template shape, no limits")
    figures = []
    for size in sizes:
        source = one_template(size * KIB)[f"{P}template-config"]
        wall = cpu = float("inf")
        for _ in range(runs):
            started, cpu_started = time.perf_counter(), time.process_time()
            template_refs(source)
            wall = min(wall, time.perf_counter() - started)
            cpu = min(cpu, time.process_time() - cpu_started)
        figures.append(cpu)
        label = "template_refs"
        print(f"{label:<16}{len(source) / KIB:>6.0f}{1:>7}{wall * 1000:>9.2f}{cpu * 1000:>9.2f}")
    if len(figures) > 1:
        growth = figures[-1] / figures[-2]
        print(f"{'template_refs':<16}{'':>6}{'':>7}{'':>9}{'':>9}  growth {growth:.1f}x")


if __name__ == "__main__":
    main()
