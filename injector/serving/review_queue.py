"""The shell's side of a review: claim, screen and parse the body, queue the core's work, shed.

The core's pipeline (`injector.webhook.admission`) is CPU work on the request alone
(`prepare`: the parse, the plan and the patch) before the admission check; here it runs on one
admission thread, so the event loop keeps answering the broker while a large pod is reviewed.
After the check, `finish` only picks the answer, on the loop: one turn at the thread a review.
Reviews take turns at that thread round-robin by (caller's address, namespace)
(`injector.fair_queue`): the namespace is only claimed before the parse (`claim`, a few
C-speed searches on the loop), the parse itself runs in the claimed lane, after a bytes-level
screen of the body's size, value count and depth that costs milliseconds even for 3 MiB of
nested lists. A review that cannot be prepared in time is answered at once with a 429 denial
instead of waiting (docs/webhook.md, "Admission queue" and "Bounds").
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import orjson

from injector.fair_queue import FairQueue, Overloaded
from injector.serving.metrics import SHED_CODE
from injector.webhook.admission import API_VERSION, Checked, finish, prepare
from injector.webhook.checks import AdmissionCheck
from injector.webhook.decision import Decision, PodRef, ReasonCode, Refused
from injector.webhook.errors import MalformedReview
from injector.webhook.settings import WebhookSettings

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
SMALL_BYTES = 32 * 1024
"""A review this size or smaller is prepared on the event loop when the admission thread is
idle and no review waits (`FairQueue.run`'s `small`): a pod's review is 2-20 KiB and its
preparation 0.1-0.5 ms, about what the hop to the thread and back costs; skipping the hop cut
the saturated p99 of benchmarks/webhook.py's typical pod from about 30 ms to about 10 ms."""
CLAIM_BYTES = 4096
"""Where a review's claim must be: the API server writes `kind`, `apiVersion`, then the
request's `uid`, kinds, resources, name and `namespace` (under 1 KiB) before anything else."""

QUEUE = FairQueue("admission", workers=1, waiting_per_key=WAITING_PER_LANE, max_waiting=MAX_WAITING)
"""Where the pipeline's CPU work runs: not on the event loop, which must keep answering the
broker, and not in a pool the Kubernetes calls wait in. One thread: with the GIL a second adds
no throughput, and it would take turns from the loop."""

__all__ = ["QUEUE", "Claim", "FairQueue", "Overloaded", "claim", "read_review", "review", "shed"]


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
) -> Decision:
    """Decide one AdmissionReview; raises MalformedReview, never anything for a bad pod.

    The parse with `prepare` takes its turn in `queue`'s lane of (`caller`, claimed
    namespace); the admission check, which waits on Kubernetes and Sakura, and `finish`, which
    only picks the answer, run on the event loop. `prepare` must be done within half of
    `settings.review_timeout`, which leaves the other half to the admission check (at most 4 s
    by default); a review that cannot make it is refused with a 429.
    """
    turns = QUEUE if queue is None else queue
    claimed = claim(body)
    lane: Hashable = (caller, claimed.namespace)
    arrived = turns.clock()
    try:
        checked = await turns.run(
            lane,
            lambda: prepare(read_review(body), settings),
            deadline=arrived + settings.review_timeout / 2,
            small=len(body) <= SMALL_BYTES,
        )
    except Overloaded as busy:
        return shed(claimed.uid, busy, claimed.namespace)
    if not isinstance(checked, Checked):
        return checked
    outcome = await check(checked.namespace, checked.service_account, checked.plan)
    return finish(checked, outcome)


def shed(uid: str, busy: Overloaded, namespace: str) -> Refused:
    """The fast answer to a review the injector cannot finish in time: a 429 denial.

    A denial (not an HTTP error) so the API server shows the user this message instead of
    "failed calling webhook"; 429 so controllers and clients treat it as retriable.
    """
    message = (
        f"sakura-secrets-injector is overloaded ({busy}); the pod was not created, try again "
        "in a few seconds (controllers retry by themselves)"
    )
    return Refused(
        uid, SHED_CODE, message, reason_code=ReasonCode.OVERLOADED, pod=PodRef(namespace)
    )


_KIND = re.compile(rb'"kind"\s*:\s*"AdmissionReview"')
_VERSION = re.compile(rb'"apiVersion"\s*:\s*"' + re.escape(API_VERSION.encode()) + rb'"')
_UID = re.compile(rb'"uid"\s*:\s*"([^"\\]{1,128})"')
_NAMESPACE = re.compile(rb'"namespace"\s*:\s*"([a-z0-9-]{1,63})"')


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


def read_review(body: bytes) -> Any:
    """The body as JSON, once the screen passed it; raises MalformedReview."""
    _screen(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedReview(f"the body is not JSON: {exc}") from None


_TOO_DEEP = f"the body is nested more than {MAX_DEPTH} levels deep; it is not a pod's review"
_TOO_MANY = f"the body has more than {MAX_VALUES} JSON values; it is not a pod's review"
_ESCAPES = re.compile(rb'\\[\\"]')
"""An escaped backslash or quote; one left-to-right pass pairs a run of backslashes as JSON
does (two `bytes.replace` passes did the same at a fifth of the speed)."""
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{},')
_NESTING = bytes.maketrans(b"[]{}", b"()()")
PASSES_UP_TO = 16 * 1024
"""The largest structure (brackets only) `_too_deep` cuts in passes: a pod's review has a few
KiB; 190 KiB of brackets 63 deep took 36 ms in passes against 8 ms walked."""
_NESTING_STEP = [1 if c == ord("(") else -1 if c == ord(")") else 0 for c in range(256)]


def _screen(body: bytes) -> None:
    """Refuse a body with too many values or too deep a nesting before the parse builds it.

    Bytes-level and C-speed (counts, one regex pass, translates, replaces; a few ms for 3 MiB):
    escaped backslashes and quotes are cut out, then every byte but quotes, brackets and commas,
    then the strings: first those left empty (most of them: two quotes side by side, whether
    a string's own or the end of one and the start of the next, never hold structure between
    them), then the few that hold brackets or commas. What is left is the document's
    structure, whose commas and openers bound its values and whose brackets give its depth.
    The quote count is bounded first, so the cut makes few pieces.
    """
    if len(body) > 4 * MAX_VALUES and body.count(b'"') > 4 * MAX_VALUES:
        raise MalformedReview(_TOO_MANY)  # every value has at most a key and a string
    if b"\\" in body:
        body = _ESCAPES.sub(b"", body)
    structure = body.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[::2])
    openers = structure.count(b"[") + structure.count(b"{")
    if structure.count(b",") + openers >= MAX_VALUES:
        raise MalformedReview(_TOO_MANY)
    if _too_deep(structure.translate(_NESTING, b",")):
        raise MalformedReview(_TOO_DEEP)


def _too_deep(nesting: bytes) -> bool:
    """Whether brackets (`(` and `)` for either kind) open more than MAX_DEPTH deep.

    Each pass cuts every innermost pair, so a balanced structure is gone after as many passes
    as it is deep (a pod's review: about 15). What is left after MAX_DEPTH passes, or when a
    pass cuts nothing (unbalanced: not JSON anyway), is walked, so every refusal reads as
    before; so is a structure larger than PASSES_UP_TO, where passes would cost more than
    the walk.
    """
    if len(nesting) > PASSES_UP_TO:
        return _walked_depth(nesting) > MAX_DEPTH
    left = nesting
    for _ in range(MAX_DEPTH):
        inner = left.replace(b"()", b"")
        if len(inner) == len(left):
            break
        left = inner
    return bool(left) and _walked_depth(nesting) > MAX_DEPTH


def _walked_depth(nesting: bytes) -> int:
    return max(accumulate(map(_NESTING_STEP.__getitem__, nesting)), default=0)
