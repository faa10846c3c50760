"""Turns at a few worker threads, shared round-robin between keys (namespaces, client addresses).

Both of the injector's blocking queues use it: the admission thread (one worker, keyed by the
review's namespace) and the Kubernetes API calls (a few workers, keyed by namespace or by the
client's address). A key's work waits in its own lane; a free worker takes the next lane's
oldest job in turn, skipping lanes that already run `per_key` jobs. So a key that floods the
queue delays another key's job by at most one job per other busy lane, never by its own
backlog, and it can hold at most `per_key` workers at once.

Bounds: at most `waiting_per_key` jobs wait in one lane and `max_waiting` in all; a job with a
deadline is shed (`Overloaded`) when it is expected to finish after it, both when it arrives
and when its turn comes, so nothing waits for an answer its caller has stopped waiting for.
Jobs run in the queue's own threads, never in asyncio's default executor, which everything
else in the process shares.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

SMOOTHING = 0.2
"""Weight of the newest job's duration in the running estimate of a job's cost."""


class Overloaded(Exception):
    """The job was not run: its lane or the queue is full, or it could not meet its deadline."""


@dataclass(eq=False)
class _Job(Generic[T]):
    key: Hashable
    work: Callable[[], T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    deadline: float | None


@dataclass
class _Lanes:
    """The state the lock guards: jobs waiting per key (in turn order) and jobs running."""

    waiting: OrderedDict[Hashable, deque[_Job[Any]]] = field(default_factory=OrderedDict)
    running: dict[Hashable, int] = field(default_factory=dict)
    busy: int = 0
    total: int = 0


class FairQueue:
    """`await queue.run(key, work)` runs `work()` in one of `workers` threads, fairly by key."""

    def __init__(
        self,
        name: str,
        *,
        workers: int,
        per_key: int = 1,
        waiting_per_key: int,
        max_waiting: int,
        expected_cost: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`expected_cost` is the seconds a job is assumed to take until some have run."""
        if not 1 <= per_key <= workers:
            raise ValueError(f"per_key must be between 1 and workers ({workers}), not {per_key}")
        if not 1 <= waiting_per_key <= max_waiting:
            raise ValueError(
                f"waiting_per_key must be between 1 and max_waiting ({max_waiting}), "
                f"not {waiting_per_key}"
            )
        self.name = name
        self.workers = workers
        self.per_key = per_key
        self.waiting_per_key = waiting_per_key
        self.max_waiting = max_waiting
        self.cost = expected_cost
        """Running estimate of one job's seconds (exponentially smoothed)."""
        self.clock = clock
        self._fresh()

    def waiting(self, key: Hashable | None = None) -> int:
        """Jobs waiting for a worker: of `key`, or of all keys."""
        with self._lock:
            if key is None:
                return self._lanes.total
            return len(self._lanes.waiting.get(key, ()))

    def running(self, key: Hashable) -> int:
        with self._lock:
            return self._lanes.running.get(key, 0)

    async def run(
        self,
        key: Hashable,
        work: Callable[[], T],
        *,
        deadline: float | None = None,
        small: bool = False,
    ) -> T:
        """`work()`'s result once a worker ran it; Overloaded when it was shed instead.

        `deadline` is on the queue's clock. A caller that stops waiting takes its job out of
        the lane; a job already running finishes in its thread and its result is dropped.
        A `small` job (the caller's promise: it takes well under a millisecond) runs at once
        in the caller's thread when the queue is idle, no job waiting and no worker busy: it
        overtakes no one, and skips the two thread switches that would cost it more than its
        work (docs/webhook.md, "Admission queue").
        """
        if self._pid != os.getpid():
            self._fresh()
        if small:
            with self._lock:
                idle = self._lanes.busy == 0 and self._lanes.total == 0
            if idle:
                return work()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(key, work, loop, future, deadline)
        with self._lock:
            lane = self._lanes.waiting.get(key)
            if lane is not None and len(lane) >= self.waiting_per_key:
                raise Overloaded(
                    f"{self.name}: {self.waiting_per_key} jobs of the same source are already "
                    "waiting"
                )
            if self._lanes.total >= self.max_waiting:
                raise Overloaded(f"{self.name}: {self.max_waiting} jobs are already waiting")
            if deadline is not None and self._finish_estimate(key) > deadline:
                raise Overloaded(f"{self.name}: the queue is too long to finish in time")
            self._lanes.waiting.setdefault(key, deque()).append(job)
            self._lanes.total += 1
            ready = self._take()
        self._start(ready)
        try:
            return await future
        except asyncio.CancelledError:
            with self._lock:
                self._drop(job)
            raise

    def _finish_estimate(self, key: Hashable) -> float:
        """When a job of `key` joining now is expected done: round-robin puts one job of every
        other lane ahead of it per job already in its own lane."""
        lanes = self._lanes.waiting
        own = len(lanes.get(key, ()))
        ahead = own + sum(min(len(lane), own + 1) for k, lane in lanes.items() if k != key)
        ahead += self._lanes.busy
        return self.clock() + (ahead // self.workers + 1) * self.cost

    def _take(self) -> list[_Job[Any]]:
        """Jobs to start now (called with the lock held): the next lanes' oldest, in turn."""
        started: list[_Job[Any]] = []
        lanes = self._lanes
        while lanes.busy < self.workers:
            job = self._next()
            if job is None:
                break
            if job.deadline is not None and self.clock() + self.cost > job.deadline:
                _settle(job, Overloaded(f"{self.name}: its turn came too late to finish in time"))
                continue
            lanes.busy += 1
            lanes.running[job.key] = lanes.running.get(job.key, 0) + 1
            started.append(job)
        return started

    def _next(self) -> _Job[Any] | None:
        for key, lane in self._lanes.waiting.items():
            if self._lanes.running.get(key, 0) >= self.per_key:
                continue
            job = lane.popleft()
            self._lanes.total -= 1
            if lane:
                self._lanes.waiting.move_to_end(key)
            else:
                del self._lanes.waiting[key]
            return job
        return None

    def _drop(self, job: _Job[Any]) -> None:
        lane = self._lanes.waiting.get(job.key)
        if lane is None or job not in lane:
            return
        lane.remove(job)
        self._lanes.total -= 1
        if not lane:
            del self._lanes.waiting[job.key]

    def _start(self, jobs: list[_Job[Any]]) -> None:
        for job in jobs:
            self._pool.submit(self._work, job)

    def _work(self, job: _Job[Any]) -> None:
        """In a worker thread: run the job, hand its outcome to its loop, start the next."""
        started = self.clock()
        outcome: Any
        try:
            outcome = job.work()
        except BaseException as error:  # the caller re-raises it
            outcome = error
        took = self.clock() - started
        with self._lock:
            self.cost += SMOOTHING * (took - self.cost)
            lanes = self._lanes
            lanes.busy -= 1
            left = lanes.running[job.key] - 1
            if left:
                lanes.running[job.key] = left
            else:
                del lanes.running[job.key]
            ready = self._take()
        _settle(job, outcome)
        self._start(ready)

    def _fresh(self) -> None:
        """An empty queue and pool: at the start, and again in a forked child, which inherits
        the pool and the parent's jobs but not their threads (mutation testing forks a process
        per mutant; so would a pre-forking server)."""
        self._lock = threading.Lock()
        self._lanes = _Lanes()
        self._pid = os.getpid()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)


def _settle(job: _Job[Any], outcome: object) -> None:
    """Give the job's waiter its outcome on the waiter's loop (a gone loop wants none)."""

    def settle() -> None:
        if job.future.done():
            return
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:
        pass
