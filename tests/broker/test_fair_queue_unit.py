"""The fair queue in front of the admission thread and the Kubernetes calls: turns, bounds,
shedding, on a hand clock.

Jobs run in the queue's real threads; a test holds a worker with a gate (a threading.Event)
and reads the order jobs ran in, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from support.clock import HandClock

from injector.fair_queue import SMOOTHING, FairQueue, Overloaded


def queue(clock: HandClock | None = None, **kw: Any) -> FairQueue:
    args: dict[str, Any] = {"workers": 1, "waiting_per_key": 8, "max_waiting": 32}
    args.update(kw)
    return FairQueue("turns", clock=clock or HandClock(), **args)


class Gate:
    """A job that holds its worker until `open()`."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.entered = threading.Event()

    def __call__(self) -> str:
        self.entered.set()
        self.event.wait(30)
        return "gate"

    def open(self) -> None:
        self.event.set()


def recorder(order: list[str], name: str) -> Callable[[], str]:
    def job() -> str:
        order.append(name)
        return name

    return job


async def started(turns: FairQueue, key: str, work: Callable[[], Any]) -> asyncio.Future[Any]:
    """`work` submitted to `turns` and enqueued (the task ran up to its first wait)."""
    task = asyncio.ensure_future(turns.run(key, work))
    await asyncio.sleep(0)
    return task


def test_its_bounds_are_checked_and_named() -> None:
    with pytest.raises(ValueError, match=r"per_key must be between 1 and workers \(2\), not 3"):
        FairQueue("q", workers=2, per_key=3, waiting_per_key=1, max_waiting=1)
    with pytest.raises(ValueError, match="not 0"):
        FairQueue("q", workers=2, per_key=0, waiting_per_key=1, max_waiting=1)
    with pytest.raises(
        ValueError, match=r"waiting_per_key must be between 1 and max_waiting \(4\), not 5"
    ):
        FairQueue("q", workers=1, waiting_per_key=5, max_waiting=4)
    with pytest.raises(ValueError, match="not 0"):
        FairQueue("q", workers=1, waiting_per_key=0, max_waiting=4)
    edge = FairQueue("q", workers=2, per_key=2, waiting_per_key=4, max_waiting=4)
    assert (edge.per_key, edge.waiting_per_key, edge.max_waiting) == (2, 4, 4)
    assert FairQueue("q", workers=1, waiting_per_key=1, max_waiting=1).per_key == 1


async def test_a_job_runs_in_the_queues_own_named_thread_and_returns_its_result() -> None:
    turns = queue()
    thread = await turns.run("a", threading.current_thread)
    assert thread is not threading.current_thread()
    assert thread.name.startswith("turns")
    assert await turns.run("a", lambda: 42) == 42


async def test_a_jobs_exception_reaches_its_caller_and_frees_the_worker() -> None:
    turns = queue()

    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await turns.run("a", fail)
    assert await turns.run("a", lambda: "next") == "next"
    assert turns.running("a") == 0


async def test_lanes_take_turns_one_job_each() -> None:
    """A key with a backlog delays another key's job by one of its jobs, not by the backlog."""
    turns, gate, order = queue(), Gate(), []
    tasks = [await started(turns, "a", gate)]
    for name in ("a1", "a2", "a3"):
        tasks.append(await started(turns, "a", recorder(order, name)))
    tasks.append(await started(turns, "b", recorder(order, "b1")))
    tasks.append(await started(turns, "c", recorder(order, "c1")))
    tasks.append(await started(turns, "b", recorder(order, "b2")))
    assert (turns.waiting(), turns.waiting("a"), turns.waiting("b"), turns.waiting("z")) == (
        6,
        3,
        2,
        0,
    )
    assert turns.running("a") == 1
    gate.open()
    await asyncio.gather(*tasks)
    assert order == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert turns.waiting() == 0 and turns.running("a") == 0


async def test_a_key_holds_at_most_per_key_workers() -> None:
    turns, gates = queue(workers=3, per_key=2), [Gate(), Gate()]
    tasks = [await started(turns, "a", gate) for gate in gates]
    tasks.append(await started(turns, "a", lambda: "a3"))
    assert (turns.running("a"), turns.waiting("a")) == (2, 1)
    assert await turns.run("b", lambda: "b") == "b"  # the third worker was free for b
    for gate in gates:
        gate.open()
    assert await asyncio.gather(*tasks) == ["gate", "gate", "a3"]


async def test_a_full_lane_and_a_full_queue_refuse_at_once() -> None:
    turns, gate = queue(waiting_per_key=2, max_waiting=3), Gate()
    tasks = [await started(turns, "a", gate)]
    tasks += [await started(turns, "a", lambda: 1) for _ in range(2)]
    with pytest.raises(Overloaded) as caught:
        await turns.run("a", lambda: 1)
    assert str(caught.value) == "turns: 2 jobs of the same source are already waiting"
    tasks.append(await started(turns, "b", lambda: 2))
    with pytest.raises(Overloaded) as caught:
        await turns.run("c", lambda: 3)
    assert str(caught.value) == "turns: 3 jobs are already waiting"
    gate.open()
    assert await asyncio.gather(*tasks) == ["gate", 1, 1, 2]


async def test_a_job_that_cannot_meet_its_deadline_is_shed_on_arrival() -> None:
    """With one worker busy and lanes a: 3, b: 1 waiting, a job of b has b's 1 and one of a's
    ahead of it (round-robin) and the running one: it is done after 4 + 1 costs."""
    clock = HandClock()
    turns, gate = queue(clock, expected_cost=2.0), Gate()
    tasks = [await started(turns, "a", gate)]
    tasks += [await started(turns, "a", lambda: "a") for _ in range(3)]
    tasks.append(await started(turns, "b", lambda: "b"))
    with pytest.raises(Overloaded) as caught:
        await turns.run("b", lambda: "late", deadline=clock.now + 5 * 2.0 - 0.01)
    assert str(caught.value) == "turns: the queue is too long to finish in time"
    tasks.append(asyncio.ensure_future(turns.run("b", lambda: "ok", deadline=clock.now + 10.0)))
    await asyncio.sleep(0)
    assert turns.waiting("b") == 2
    gate.open()
    assert await asyncio.gather(*tasks) == ["gate", "a", "a", "a", "b", "ok"]


async def test_the_estimate_counts_workers_and_the_lanes_own_backlog() -> None:
    clock = HandClock()
    turns, gates = queue(clock, workers=2, expected_cost=1.0), [Gate(), Gate()]
    tasks = [await started(turns, key, gate) for key, gate in zip("ab", gates, strict=True)]
    tasks += [await started(turns, "a", lambda: "a") for _ in range(2)]
    # own 0 -> ahead: min(2, 1) of a + 2 running = 3 -> 3 // 2 + 1 = 2 costs
    with pytest.raises(Overloaded):
        await turns.run("c", lambda: "c", deadline=clock.now + 1.99)
    tasks.append(asyncio.ensure_future(turns.run("c", lambda: "c", deadline=clock.now + 2.0)))
    await asyncio.sleep(0)
    for gate in gates:
        gate.open()
    assert await asyncio.gather(*tasks) == ["gate", "gate", "a", "a", "c"]


async def test_an_idle_queue_expects_one_cost() -> None:
    clock = HandClock()
    turns = queue(clock, expected_cost=1.0)
    with pytest.raises(Overloaded):
        await turns.run("a", lambda: 1, deadline=clock.now + 0.99)
    assert await turns.run("a", lambda: 1, deadline=clock.now + 1.0) == 1


async def test_a_job_whose_turn_comes_too_late_is_shed_without_running() -> None:
    clock = HandClock()
    turns, gate, order = queue(clock, expected_cost=1.0), Gate(), []
    first = await started(turns, "a", gate)
    late = asyncio.ensure_future(turns.run("b", recorder(order, "late"), deadline=clock.now + 3))
    just = asyncio.ensure_future(turns.run("c", recorder(order, "just"), deadline=clock.now + 4))
    await asyncio.sleep(0)
    clock.now += 2.5  # the gate held the worker: b's job can no longer finish by its deadline
    gate.open()
    await first
    with pytest.raises(Overloaded) as caught:
        await late
    assert str(caught.value) == "turns: its turn came too late to finish in time"
    assert await just == "just"
    assert order == ["just"]


async def test_the_cost_is_a_smoothed_mean_of_the_jobs_durations() -> None:
    clock = HandClock()
    turns = queue(clock, expected_cost=1.0)
    assert turns.cost == 1.0 and SMOOTHING == 0.2

    def takes(seconds: float) -> Callable[[], None]:
        def job() -> None:
            clock.now += seconds

        return job

    await turns.run("a", takes(3.0))
    assert turns.cost == pytest.approx(1.4)
    await turns.run("a", takes(0.4))
    assert turns.cost == pytest.approx(1.4 + 0.2 * (0.4 - 1.4))
    assert turns.clock is clock
    assert FairQueue("q", workers=1, waiting_per_key=1, max_waiting=1).cost == 0.05


async def test_a_caller_that_stops_waiting_takes_its_job_out_of_the_lane() -> None:
    turns, gate, order = queue(), Gate(), []
    first = await started(turns, "a", gate)
    gone = await started(turns, "b", recorder(order, "gone"))
    kept = await started(turns, "b", recorder(order, "kept"))
    other = await started(turns, "c", recorder(order, "other"))
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert (turns.waiting(), turns.waiting("b")) == (2, 1)
    other.cancel()
    with pytest.raises(asyncio.CancelledError):
        await other
    assert turns.waiting("c") == 0 and turns.waiting() == 1
    gate.open()
    assert await asyncio.gather(first, kept) == ["gate", "kept"]
    assert order == ["kept"]


async def test_a_running_job_whose_caller_left_finishes_and_frees_its_worker() -> None:
    turns, gate = queue(), Gate()
    first = await started(turns, "a", gate)
    await asyncio.to_thread(gate.entered.wait, 30)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert turns.running("a") == 1
    gate.open()
    assert await turns.run("a", lambda: "after") == "after"
    assert turns.running("a") == 0


def test_a_forked_child_gets_workers_of_its_own() -> None:
    """The pool's threads do not survive a fork, nor do the parent's jobs in them."""
    turns, gate = queue(), Gate()

    async def hold() -> None:
        await started(turns, "a", gate)
        await asyncio.to_thread(gate.entered.wait, 30)

    asyncio.run(hold())  # the parent's worker is busy when it forks
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        try:
            ran = asyncio.run(asyncio.wait_for(turns.run("a", lambda: 7), 30))
            code = 0 if ran == 7 and turns.running("a") == 0 else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    gate.open()
    assert os.waitstatus_to_exitcode(status) == 0


async def test_the_next_job_runs_on_the_same_thread_when_there_is_one_worker() -> None:
    """The next job is handed over from inside the worker thread that just finished; a pool
    wider than `workers` would start it on a new thread."""
    turns, gate = queue(), Gate()

    def held() -> threading.Thread:
        gate()
        return threading.current_thread()

    first = await started(turns, "a", held)
    second = await started(turns, "b", threading.current_thread)
    gate.open()
    assert await first is await second


async def test_no_more_jobs_run_at_once_than_workers_after_jobs_finish() -> None:
    turns = queue(workers=2, per_key=2)
    assert await turns.run("a", lambda: 1) == 1  # a finished job gives its worker back once
    gates = [Gate(), Gate(), Gate()]
    tasks = [await started(turns, key, gate) for key, gate in zip("abc", gates, strict=True)]
    assert (turns.running("a"), turns.running("b"), turns.waiting("c")) == (1, 1, 1)
    for gate in gates:
        gate.open()
    assert await asyncio.gather(*tasks) == ["gate"] * 3


async def test_a_small_job_runs_at_once_in_the_callers_thread_when_the_queue_is_idle() -> None:
    turns = queue()
    assert await turns.run("a", threading.current_thread, small=True) is threading.current_thread()
    assert (await turns.run("a", threading.current_thread)).name.startswith("turns")  # not small


async def test_a_small_job_waits_its_turn_behind_a_running_or_waiting_one() -> None:
    turns = queue()
    gate, order = Gate(), []
    running = await started(turns, "a", gate)
    assert await asyncio.to_thread(gate.entered.wait, 10)
    waiting = await started(turns, "b", recorder(order, "b"))
    small = asyncio.ensure_future(turns.run("c", recorder(order, "c"), small=True))
    await asyncio.sleep(0)
    assert order == [] and turns.waiting() == 2  # the small one joined the queue
    gate.open()
    assert await running == "gate" and await waiting == "b" and await small == "c"
    assert order == ["b", "c"]  # in turn, in the queue's thread, after the one waiting


async def test_a_small_job_waits_for_a_busy_worker_even_with_no_one_waiting() -> None:
    turns = queue()
    gate = Gate()
    running = await started(turns, "a", gate)
    assert await asyncio.to_thread(gate.entered.wait, 10)
    assert turns.waiting() == 0
    small = asyncio.ensure_future(turns.run("b", threading.current_thread, small=True))
    await asyncio.sleep(0)
    assert not small.done() and turns.waiting() == 1
    gate.open()
    assert await running == "gate"
    assert (await small).name.startswith("turns")  # in the queue's thread, after the gate


async def test_a_small_jobs_exception_reaches_its_caller() -> None:
    def fail() -> None:
        raise LookupError("bad review")

    with pytest.raises(LookupError, match="bad review"):
        await queue().run("a", fail, small=True)
