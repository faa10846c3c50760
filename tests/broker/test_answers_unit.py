"""The answer budget and the budgeted answer, in process (ASGI messages recorded).

test_routes_unit.py drives the same parts through the broker's route; test_broker_http.py
over TLS against the local cluster.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from contract.broker import (
    MAX_ANSWER_BYTES,
    Answer,
    FetchedSecret,
    answer_floor,
    encode_answer,
)
from injector.serving import answers
from injector.serving.answers import (
    ANSWER_BUDGET_BYTES,
    BUSY_RETRY_AFTER,
    INLINE_BELOW,
    NAMESPACE_SHARE,
    PIECE_BYTES,
    AnswerBudget,
    budgeted,
)
from injector.serving.errors import AnswerRefused

HEADERS = {"cache-control": "no-store"}


def answer(*values: str, namespace: str = "shop") -> Answer:
    return Answer(
        namespace, tuple(FetchedSecret(f"s{i}", None, 1, v) for i, v in enumerate(values))
    )


def size_of(a: Answer) -> int:
    return sum(len(p) for p in encode_answer(a.items))


class Connection:
    """An ASGI `send` that records what it was given; `fail_after` messages it raises."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail_after = fail_after
        self.held_while_sending: list[int] = []
        self.budget: AnswerBudget | None = None
        self.answer: Any = None
        self.pieces_while_sending: list[list[int]] = []

    async def send(self, message: Any) -> None:
        if self.fail_after is not None and len(self.messages) >= self.fail_after:
            raise OSError("the client went away")
        if self.budget is not None:
            self.held_while_sending.append(self.budget.held)
        if self.answer is not None:
            self.pieces_while_sending.append([len(p) for p in self.answer.pieces])
        self.messages.append(message)

    def body(self) -> bytes:
        return b"".join(bytes(m["body"]) for m in self.messages[1:])


async def nothing() -> Any:
    raise AssertionError("an answer never reads the request")


def test_the_defaults_fit_the_container() -> None:
    assert ANSWER_BUDGET_BYTES == 64 * 1024 * 1024
    assert NAMESPACE_SHARE == 4
    assert AnswerBudget().per_namespace == 16 * 1024 * 1024 == 2 * MAX_ANSWER_BYTES
    assert (BUSY_RETRY_AFTER, INLINE_BELOW, PIECE_BYTES) == (2.0, 65536, 65536)


def test_the_budget_counts_in_all_and_per_namespace() -> None:
    budget = AnswerBudget(total=100, share=4)
    assert budget.per_namespace == 25
    assert budget.take("a", 25) is None
    assert budget.take("a", 1) == (
        "this namespace's answers already being sent hold 25 bytes, and this one needs at "
        "least 1 more; one namespace may hold 25 bytes of answers at once"
    )
    for namespace in ("b", "c", "d"):
        assert budget.take(namespace, 25) is None
    assert budget.held == 100
    assert budget.take("e", 1) == (
        "the injector is sending as many bytes of answers as it may at once (100); this one "
        "needs at least 1 more"
    )
    budget.give_back("a", 10)
    assert (budget.held, budget.of("a")) == (90, 15)
    assert budget.take("e", 10) is None
    budget.give_back("a", 15)
    assert (budget.held, budget.of("a")) == (85, 0)
    assert budget.take("a", 15) is None  # its share is whole again
    assert budget.of("nobody") == 0


def test_a_namespace_given_back_everything_is_forgotten() -> None:
    budget = AnswerBudget(total=100, share=1)
    budget.take("a", 5)
    budget.give_back("a", 4)
    assert budget.of("a") == 1
    budget.give_back("a", 1)
    assert budget._by_namespace == {}
    budget.take("a", 5)
    budget.give_back("a", 6)  # never below nothing
    budget.give_back("b", 0)
    assert budget._by_namespace == {}
    assert AnswerBudget(1, 1).take("a", 1) is None  # the smallest budget there is


@pytest.mark.parametrize(("total", "share"), [(0, 1), (1, 0), (-5, 4)])
def test_a_budget_of_nothing_is_refused(total: int, share: int) -> None:
    with pytest.raises(ValueError) as caught:
        AnswerBudget(total, share)
    assert str(caught.value) == "the answer budget and the namespace share must be at least 1"


async def test_an_answer_is_sent_in_pieces_and_its_bytes_go_back_as_they_leave() -> None:
    big = answer("x" * (PIECE_BYTES + 10), "y" * 100)
    budget = AnswerBudget()
    sent = await budgeted(big, budget, HEADERS)
    size = size_of(big)
    assert budget.held == size == sent.size == budget.of("shop")
    connection = Connection()
    connection.budget = budget
    connection.answer = sent
    await sent({"type": "http"}, nothing, connection.send)
    start = connection.messages[0]
    assert start["type"] == "http.response.start"
    assert start["status"] == 200
    assert dict(start["headers"]) == {
        b"cache-control": b"no-store",
        b"content-type": b"application/json",
        b"content-length": str(size).encode(),
    }
    bodies = connection.messages[1:]
    assert [len(m["body"]) for m in bodies] == [
        len(b'{"secrets":['),
        PIECE_BYTES,
        size - len(b'{"secrets":[') - PIECE_BYTES - len(bodies[3]["body"]) - 2,
        len(bodies[3]["body"]),
        2,
        0,
    ]
    assert [m["more_body"] for m in bodies] == [True] * 5 + [False]
    assert {m["type"] for m in bodies} == {"http.response.body"}
    # a piece handed over is dropped at once, not when the whole answer is sent
    lengths = connection.pieces_while_sending
    assert lengths[1][0] == 0 and lengths[2][:2] == [0, 0] and lengths[5] == [0, 0, 0, 0]
    assert lengths[0][0] == len(b'{"secrets":[')
    assert json.loads(connection.body())["secrets"][1]["value"] == "y" * 100
    # each piece is given back once the connection took it, before the next goes out
    held = connection.held_while_sending
    assert held[0] == held[1] == size and held[2] == held[3] == size - len(b'{"secrets":[')
    assert held == sorted(held, reverse=True) and held[-1] == 0
    assert budget.held == 0 and sent.pieces == [] and budget.of("shop") == 0


@pytest.mark.parametrize("fail_after", [0, 1, 3])
async def test_what_was_not_sent_goes_back_when_the_client_goes_away(fail_after: int) -> None:
    budget = AnswerBudget()
    sent = await budgeted(answer("x" * 200_000), budget, HEADERS)
    with pytest.raises(OSError, match="went away"):
        await sent({"type": "http"}, nothing, Connection(fail_after).send)
    assert budget.held == 0 and budget.of("shop") == 0
    assert sent.pieces == []


async def test_an_answer_over_the_bound_by_its_characters_is_refused_unencoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(answers, "encode_answer", _never)
    budget = AnswerBudget()
    huge = answer(*(["x" * 65536] * 128))
    with pytest.raises(AnswerRefused) as caught:
        await budgeted(huge, budget, HEADERS)
    assert (caught.value.status, caught.value.retry_after) == (422, None)
    assert caught.value.message.startswith(
        f"the answer for these 128 secrets would be larger than {MAX_ANSWER_BYTES} bytes (8 MiB)"
    )
    assert budget.held == 0
    monkeypatch.setattr(answers, "encode_answer", lambda items: [b"x" * MAX_ANSWER_BYTES])
    fill = MAX_ANSWER_BYTES - answer_floor(answer("").items)
    at_bound = answer("x" * fill)
    assert answer_floor(at_bound.items) == MAX_ANSWER_BYTES
    assert (await budgeted(at_bound, budget, HEADERS)).size == MAX_ANSWER_BYTES  # encoded


async def test_an_answer_over_the_bound_once_encoded_is_refused_and_gives_back_its_floor() -> None:
    budget = AnswerBudget()
    control = answer(*(["\x01" * 65536] * 22))  # 1.4 MiB of characters, 8.6 MiB of JSON
    with pytest.raises(AnswerRefused) as caught:
        await budgeted(control, budget, HEADERS)
    assert caught.value.status == 422
    assert budget.of("shop") == 0
    assert str(caught.value) == caught.value.message
    assert "larger than 8388608 bytes (8 MiB)" in caught.value.message
    assert budget.held == 0


async def test_an_answer_the_budget_cannot_hold_is_a_503_before_it_is_encoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(answers, "encode_answer", _never)
    budget = AnswerBudget(total=1000, share=1)
    budget.take("other", 900)
    with pytest.raises(AnswerRefused) as caught:
        await budgeted(answer("x" * 200), budget, HEADERS)
    assert (caught.value.status, caught.value.retry_after) == (503, 2.0)
    assert caught.value.message == (
        "the answer is not sent now: the injector is sending as many bytes of answers as it "
        "may at once (1000); this one needs at least 217 more; retry in 2s"
    )
    assert budget.held == 900


async def test_an_answer_whose_encoding_passes_the_budget_is_a_503_giving_back_all() -> None:
    escaped = answer("\x01" * 100)  # 100 characters, 600 bytes of JSON
    floor, size = 100 + 2 + 1 + len(b'{"secrets":[]}'), size_of(escaped)
    budget = AnswerBudget(total=floor + 10, share=1)
    with pytest.raises(AnswerRefused) as caught:
        await budgeted(escaped, budget, HEADERS)
    assert caught.value.status == 503
    assert f"this one needs at least {size - floor} more" in caught.value.message
    assert budget.held == 0 and budget.of("shop") == 0
    exact = AnswerBudget(total=size, share=1)
    assert (await budgeted(escaped, exact, HEADERS)).size == size == exact.held


async def test_large_answers_are_encoded_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[str] = []

    def recording(items: tuple[FetchedSecret, ...]) -> list[bytes]:
        threads.append(threading.current_thread().name)
        return encode_answer(items)

    monkeypatch.setattr(answers, "encode_answer", recording)
    below = INLINE_BELOW - len(b'{"secrets":[]}') - len("s0") - 1
    await budgeted(answer("x" * (below - 1)), AnswerBudget(), HEADERS)
    await budgeted(answer("x" * below), AnswerBudget(), HEADERS)
    assert threads[0] == threading.current_thread().name
    assert threads[1].startswith("answers")


async def test_a_failure_while_encoding_gives_the_floor_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(answers, "encode_answer", _never)
    budget = AnswerBudget()
    with pytest.raises(AssertionError, match="not encoded"):
        await budgeted(answer("x"), budget, HEADERS)
    assert budget.held == 0 and budget.of("shop") == 0


def test_a_forked_child_gets_an_encoder_of_its_own() -> None:
    before = answers._ENCODER
    answers._renew_encoder()
    assert answers._ENCODER is not before
    assert answers._ENCODER._max_workers == 1
    name = answers._ENCODER.submit(lambda: threading.current_thread().name).result()
    assert name.startswith("answers_")
    before.shutdown()


def _never(items: tuple[FetchedSecret, ...]) -> list[bytes]:
    raise AssertionError("not encoded")
