"""The answer memo and single-flight on a hand-driven clock: what a caller sees.

The token reviewer and the RBAC reviewer keep their answers here (test_tokens_unit.py,
test_access_unit.py); these pin the memo's own rules: an answer's lifetime up to exactly its
end, no lifetime no memory, the bound and which answer it pushes out, failures never kept,
one computation per key for concurrent askers, and a caller going away cancels nothing.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest
from support.clock import HandClock

from injector.broker.memo import ExpiringMemo, SingleFlight

START = 1000.0


class Answers:
    """A computation per key that counts its calls; `gate` holds it, `fail` makes it raise."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None
        self.fail: BaseException | None = None

    def __call__(self, key: str) -> Callable[[], Any]:
        async def compute() -> str:
            self.calls.append(key)
            if self.gate is not None:
                await self.gate.wait()
            if self.fail is not None:
                raise self.fail
            return f"answer-{key}-{len(self.calls)}"

        return compute


def lasting(seconds: float) -> Callable[[str], float]:
    return lambda _value: seconds


async def test_an_answer_is_remembered_until_exactly_its_lifetime_ends() -> None:
    clock, answers = HandClock(), Answers()
    memo: ExpiringMemo[str, str] = ExpiringMemo(clock=clock)
    assert await memo.get("a", answers("a"), lasting(5)) == "answer-a-1"
    clock.now = START + 4.9
    assert memo.peek("a") == "answer-a-1"
    assert await memo.get("a", answers("a"), lasting(5)) == "answer-a-1"
    assert answers.calls == ["a"]
    clock.now = START + 5
    assert memo.peek("a") is None
    assert len(memo) == 0
    assert await memo.get("a", answers("a"), lasting(5)) == "answer-a-2"
    assert answers.calls == ["a", "a"]


async def test_each_answer_chooses_its_lifetime() -> None:
    clock, answers = HandClock(), Answers()
    memo: ExpiringMemo[str, str] = ExpiringMemo(clock=clock)
    lifetimes = {"answer-short-1": 1.0, "answer-long-2": 60.0}
    await memo.get("short", answers("short"), lifetimes.__getitem__)
    await memo.get("long", answers("long"), lifetimes.__getitem__)
    clock.now = START + 1
    assert memo.peek("short") is None
    assert memo.peek("long") == "answer-long-2"


@pytest.mark.parametrize("seconds", [0.0, -1.0])
async def test_an_answer_with_no_lifetime_is_not_remembered(seconds: float) -> None:
    clock, answers = HandClock(), Answers()
    memo: ExpiringMemo[str, str] = ExpiringMemo(clock=clock)
    assert await memo.get("a", answers("a"), lasting(seconds)) == "answer-a-1"
    assert len(memo) == 0
    assert memo.peek("a") is None
    assert await memo.get("a", answers("a"), lasting(seconds)) == "answer-a-2"


async def test_a_lifetime_under_a_second_is_remembered() -> None:
    clock, answers = HandClock(), Answers()
    memo: ExpiringMemo[str, str] = ExpiringMemo(clock=clock)
    await memo.get("a", answers("a"), lasting(0.5))
    clock.now = START + 0.4
    assert memo.peek("a") == "answer-a-1"


async def test_at_most_max_entries_the_least_recently_used_pushed_out() -> None:
    clock, answers = HandClock(), Answers()
    memo: ExpiringMemo[str, str] = ExpiringMemo(max_entries=2, clock=clock)
    await memo.get("a", answers("a"), lasting(60))
    await memo.get("b", answers("b"), lasting(60))
    assert len(memo) == 2
    assert memo.peek("a") == "answer-a-1"  # used: b is now the oldest
    await memo.get("c", answers("c"), lasting(60))
    assert len(memo) == 2
    assert memo.peek("b") is None
    assert memo.peek("a") == "answer-a-1"
    assert memo.peek("c") == "answer-c-3"


async def test_one_entry_is_a_valid_bound() -> None:
    clock, answers = HandClock(), Answers()
    memo: ExpiringMemo[str, str] = ExpiringMemo(max_entries=1, clock=clock)
    await memo.get("a", answers("a"), lasting(60))
    assert memo.peek("a") == "answer-a-1"
    await memo.get("b", answers("b"), lasting(60))
    assert (memo.peek("a"), memo.peek("b")) == (None, "answer-b-2")


async def test_the_default_bound_is_10000_entries() -> None:
    memo: ExpiringMemo[int, int] = ExpiringMemo(clock=HandClock())

    def value(number: int) -> Callable[[], Any]:
        async def compute() -> int:
            return number

        return compute

    for number in range(10_000):
        await memo.get(number, value(number), lambda _v: 60.0)
    assert len(memo) == 10_000
    await memo.get(10_000, value(10_000), lambda _v: 60.0)
    assert len(memo) == 10_000
    assert memo.peek(0) is None
    assert memo.peek(1) == 1


@pytest.mark.parametrize("bound", [0, -5])
def test_the_bound_is_checked(bound: int) -> None:
    with pytest.raises(ValueError) as caught:
        ExpiringMemo(max_entries=bound)
    assert str(caught.value) == f"max_entries must be at least 1, not {bound}"


@pytest.mark.parametrize("seconds", [0.0, -1.0])
async def test_put_remembers_an_answer_in_place_of_the_old_one_for_its_lifetime(
    seconds: float,
) -> None:
    clock, answers = HandClock(), Answers()
    memo: ExpiringMemo[str, str] = ExpiringMemo(max_entries=2, clock=clock)
    await memo.get("a", answers("a"), lasting(60))
    await memo.get("b", answers("b"), lasting(60))
    memo.put("a", "told", 5)  # replaces a's answer and lifetime, and a is now the newest
    clock.now = START + 4.9
    assert await memo.get("a", answers("a"), lasting(60)) == "told"
    memo.put("c", "told-c", 60)  # pushes out b, the least recently used
    assert (memo.peek("b"), memo.peek("c")) == (None, "told-c")
    clock.now = START + 5
    assert memo.peek("a") is None
    memo.put("d", "never", seconds)
    assert memo.peek("d") is None
    assert answers.calls == ["a", "b"]


async def test_forget_drops_one_answer() -> None:
    clock, answers = HandClock(), Answers()
    memo: ExpiringMemo[str, str] = ExpiringMemo(clock=clock)
    await memo.get("a", answers("a"), lasting(60))
    await memo.get("b", answers("b"), lasting(60))
    memo.forget("a")
    memo.forget("never-asked")
    assert memo.peek("a") is None
    assert memo.peek("b") == "answer-b-2"
    assert await memo.get("a", answers("a"), lasting(60)) == "answer-a-3"


async def test_a_failure_is_never_remembered_and_is_shared_by_concurrent_askers() -> None:
    clock, answers = HandClock(), Answers()
    memo: ExpiringMemo[str, str] = ExpiringMemo(clock=clock)
    answers.gate, answers.fail = asyncio.Event(), RuntimeError("API server unavailable")
    askers = [asyncio.ensure_future(memo.get("a", answers("a"), lasting(60))) for _ in range(3)]
    await asyncio.sleep(0)
    answers.gate.set()
    results = await asyncio.gather(*askers, return_exceptions=True)
    assert [str(r) for r in results] == ["API server unavailable"] * 3
    assert answers.calls == ["a"]
    assert len(memo) == 0
    answers.fail = None
    assert await memo.get("a", answers("a"), lasting(60)) == "answer-a-2"


async def test_concurrent_askers_of_one_key_share_one_computation_keys_never_share() -> None:
    clock, answers = HandClock(), Answers()
    memo: ExpiringMemo[str, str] = ExpiringMemo(clock=clock)
    answers.gate = asyncio.Event()
    a_askers = [asyncio.ensure_future(memo.get("a", answers("a"), lasting(60))) for _ in range(3)]
    b_asker = asyncio.ensure_future(memo.get("b", answers("b"), lasting(60)))
    await asyncio.sleep(0)
    answers.gate.set()
    assert await asyncio.gather(*a_askers) == ["answer-a-1"] * 3
    assert await b_asker == "answer-b-2"
    assert answers.calls == ["a", "b"]


async def test_single_flight_tells_who_shared_and_runs_again_once_done() -> None:
    answers = Answers()
    flight: SingleFlight[str, str] = SingleFlight()
    answers.gate = asyncio.Event()
    first = asyncio.ensure_future(flight.run("a", answers("a")))
    second = asyncio.ensure_future(flight.run("a", answers("a")))
    await asyncio.sleep(0)
    answers.gate.set()
    assert await first == ("answer-a-1", False)
    assert await second == ("answer-a-1", True)
    assert await flight.run("a", answers("a")) == ("answer-a-2", False)


async def test_a_caller_going_away_cancels_nothing_for_the_others() -> None:
    clock, answers = HandClock(), Answers()
    memo: ExpiringMemo[str, str] = ExpiringMemo(clock=clock)
    answers.gate = asyncio.Event()
    leaving = asyncio.ensure_future(memo.get("a", answers("a"), lasting(60)))
    staying = asyncio.ensure_future(memo.get("a", answers("a"), lasting(60)))
    for _ in range(2):  # both wait, the computation waits at the gate
        await asyncio.sleep(0)
    assert answers.calls == ["a"]
    leaving.cancel()
    await asyncio.sleep(0)
    answers.gate.set()
    assert await staying == "answer-a-1"
    assert leaving.cancelled()
    assert answers.calls == ["a"]


async def test_every_caller_going_away_still_lets_the_answer_be_remembered() -> None:
    clock, answers = HandClock(), Answers()
    memo: ExpiringMemo[str, str] = ExpiringMemo(clock=clock)
    answers.gate = asyncio.Event()
    leaving = asyncio.ensure_future(memo.get("a", answers("a"), lasting(60)))
    for _ in range(2):
        await asyncio.sleep(0)
    assert answers.calls == ["a"]
    leaving.cancel()
    await asyncio.sleep(0)
    assert leaving.cancelled()
    answers.gate.set()
    for _ in range(3):
        await asyncio.sleep(0)
    assert memo.peek("a") == "answer-a-1"
    assert answers.calls == ["a"]


async def _collect_reports(run: Callable[[], Any]) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reports.append(context))
    try:
        await run()
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    return reports


async def test_a_failure_after_every_caller_left_is_not_reported_as_unhandled() -> None:
    answers = Answers()
    flight: SingleFlight[str, str] = SingleFlight()
    answers.gate, answers.fail = asyncio.Event(), RuntimeError("API server unavailable")

    async def run() -> None:
        leaving = asyncio.ensure_future(flight.run("a", answers("a")))
        for _ in range(2):  # the caller waits, the computation waits at the gate
            await asyncio.sleep(0)
        assert answers.calls == ["a"]
        leaving.cancel()
        await asyncio.sleep(0)  # the caller has gone before the computation fails
        assert leaving.cancelled()
        assert answers.gate is not None
        answers.gate.set()

    assert await _collect_reports(run) == []
    assert answers.calls == ["a"]


async def test_a_computation_cancelled_from_inside_is_not_reported_as_unhandled() -> None:
    answers = Answers()
    flight: SingleFlight[str, str] = SingleFlight()
    answers.fail = asyncio.CancelledError()

    async def run() -> None:
        with pytest.raises(asyncio.CancelledError):
            await flight.run("a", answers("a"))

    assert await _collect_reports(run) == []
