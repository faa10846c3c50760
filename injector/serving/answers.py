"""Sending the broker's 200 answers without letting them take the process's memory.

An answer may be megabytes (100 values of 64 KiB), and a client that never reads keeps what
it was sent in the process's buffers. So every answer's bytes count against one budget for
the whole process, from before they are encoded until they are handed to the connection,
piece by piece; a namespace may hold only a share of it, so one tenant's unread answers cannot
starve the others. An answer that does not fit is refused at once with 503 and Retry-After
(`AnswerBudget.take`), before anything is encoded or buffered.

Large answers are encoded on a thread of their own (`encode`), so the event loop keeps
answering the probes and the other fetches meanwhile.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from starlette.types import Receive, Scope, Send

from contract.broker import (
    MAX_ANSWER_BYTES,
    Answer,
    AnswerItem,
    answer_floor,
    encode_answer,
    too_large,
)
from contract.errors import AnswerTooLarge
from injector.serving.errors import AnswerRefused

ANSWER_BUDGET_BYTES = 64 * 1024 * 1024
"""Answer bytes in flight in the whole process: the container's limit is 256 MiB and the
process alone takes about 110 MiB."""
NAMESPACE_SHARE = 4
"""One namespace may hold at most 1/NAMESPACE_SHARE of the budget (16 MiB: two of the largest
answers)."""
BUSY_RETRY_AFTER = 2.0
"""Retry-After (seconds) of the 503 when the budget is spent: answers drain in about that."""
INLINE_BELOW = 64 * 1024
"""Answers with fewer characters than this are encoded on the event loop (under a
millisecond); larger ones on `_ENCODER`."""
PIECE_BYTES = 64 * 1024
"""An answer is handed to the connection in pieces of at most this size; uvicorn waits for the
client to take each one before the next (its buffer's high-water mark is 64 KiB too)."""


class AnswerBudget:
    """Bytes of answers held in the process, in all and per namespace."""

    def __init__(self, total: int = ANSWER_BUDGET_BYTES, share: int = NAMESPACE_SHARE) -> None:
        if total < 1 or share < 1:
            raise ValueError("the answer budget and the namespace share must be at least 1")
        self.total = total
        self.per_namespace = total // share
        self.held = 0
        self._by_namespace: dict[str, int] = {}

    def take(self, namespace: str, size: int) -> str | None:
        """Count `size` bytes for `namespace`; or why not (nothing is counted then)."""
        mine = self._by_namespace.get(namespace, 0)
        if mine + size > self.per_namespace:
            return (
                f"this namespace's answers already being sent hold {mine} bytes, and this one "
                f"needs at least {size} more; one namespace may hold {self.per_namespace} "
                "bytes of answers at once"
            )
        if self.held + size > self.total:
            return (
                "the injector is sending as many bytes of answers as it may at once "
                f"({self.total}); this one needs at least {size} more"
            )
        self.held += size
        self._by_namespace[namespace] = mine + size
        return None

    def give_back(self, namespace: str, size: int) -> None:
        self.held -= size
        left = self._by_namespace.get(namespace, 0) - size
        if left > 0:
            self._by_namespace[namespace] = left
        else:
            self._by_namespace.pop(namespace, None)

    def of(self, namespace: str) -> int:
        """Bytes `namespace` holds now."""
        return self._by_namespace.get(namespace, 0)


def _encoder() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="answers")


_ENCODER = _encoder()
"""One thread: its work is bounded by the budget, and with the GIL a second adds nothing."""


def _renew_encoder() -> None:
    """A forked child inherits the pool but not its thread (see injector.webhook.admission)."""
    global _ENCODER
    _ENCODER = _encoder()


os.register_at_fork(after_in_child=_renew_encoder)


async def budgeted(answer: Answer, budget: AnswerBudget, headers: dict[str, str]) -> BudgetedAnswer:
    """The encoded answer, its bytes counted in `budget` until sent; AnswerRefused otherwise.

    What the answer takes at least (a byte per character) is counted before encoding, so a
    request over the budget is refused without encoding anything; the rest once it is known.
    """
    floor = answer_floor(answer.items)
    if floor > MAX_ANSWER_BYTES:
        raise AnswerRefused(too_large(answer.items, MAX_ANSWER_BYTES), status=422)
    _take(budget, answer.namespace, floor)
    try:
        pieces = await encode(answer.items, floor)
    except AnswerTooLarge as exc:
        budget.give_back(answer.namespace, floor)
        raise AnswerRefused(str(exc), status=422) from None
    except BaseException:
        budget.give_back(answer.namespace, floor)
        raise
    size = sum(len(p) for p in pieces)
    try:
        _take(budget, answer.namespace, size - floor)
    except AnswerRefused:
        budget.give_back(answer.namespace, floor)
        raise
    return BudgetedAnswer(pieces, size, budget, answer.namespace, headers)


def _take(budget: AnswerBudget, namespace: str, size: int) -> None:
    refusal = budget.take(namespace, size)
    if refusal is not None:
        raise AnswerRefused(
            f"the answer is not sent now: {refusal}; retry in {BUSY_RETRY_AFTER:g}s",
            status=503,
            retry_after=BUSY_RETRY_AFTER,
        )


async def encode(items: tuple[AnswerItem, ...], floor: int) -> list[bytes]:
    """`encode_answer`, on `_ENCODER` unless the answer is small (`floor` < INLINE_BELOW)."""
    if floor < INLINE_BELOW:
        return encode_answer(items)
    return await asyncio.get_running_loop().run_in_executor(_ENCODER, encode_answer, items)


class BudgetedAnswer:
    """A 200 JSON answer (ASGI) whose pieces go back to the budget as the connection takes
    them; whatever is left when sending ends (the client went away) goes back at once."""

    def __init__(
        self,
        pieces: list[bytes],
        size: int,
        budget: AnswerBudget,
        namespace: str,
        headers: dict[str, str],
    ) -> None:
        self.pieces = pieces
        self.size = size
        self.budget = budget
        self.namespace = namespace
        self.headers = {
            **headers,
            "content-type": "application/json",
            "content-length": str(size),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held = self.size
        try:
            raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
            await send({"type": "http.response.start", "status": 200, "headers": raw})
            for index, piece in enumerate(self.pieces):
                self.pieces[index] = b""
                for start in range(0, len(piece), PIECE_BYTES):
                    body = piece[start : start + PIECE_BYTES]
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                held -= len(piece)
                self.budget.give_back(self.namespace, len(piece))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.pieces.clear()
            self.budget.give_back(self.namespace, held)
