"""Short-lived memory of answers, and single-flight: one computation per key at a time.

The broker asks the same questions over and over during a rollout (is this token valid, may
this ServiceAccount read this secret, what is in this vault). Remembering answers briefly and
letting concurrent askers share one computation keeps the API server and Sakura calm.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Concurrent `run` calls with the same key share the first caller's computation.

    The computation runs in its own task, so a caller that goes away (client disconnect)
    does not cancel it for the others still waiting.
    """

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, compute: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """Return the result and whether it was shared with an earlier caller."""
        task = self._running.get(key)
        shared = task is not None
        if task is None:
            task = asyncio.ensure_future(_call(compute))
            self._running[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        return await asyncio.shield(task), shared

    def _forget(self, key: K, done: asyncio.Task[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # mark retrieved: waiters re-raise it, nobody else must


async def _call(compute: Callable[[], Awaitable[V]]) -> V:
    return await compute()


class ExpiringMemo(Generic[K, V]):
    """Answers remembered for a time chosen per answer, at most `max_entries` of them.

    Failures are never remembered; concurrent misses for one key share one computation.
    """

    def __init__(
        self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries!r}")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._flight: SingleFlight[K, V] = SingleFlight()

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: K) -> V | None:
        """The remembered answer if it has not expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def get(
        self, key: K, compute: Callable[[], Awaitable[V]], ttl: Callable[[V], float]
    ) -> V:
        """The remembered answer, or compute it once (shared) and remember it for `ttl(v)`."""
        cached = self.peek(key)
        if cached is not None:
            return cached

        async def compute_and_keep() -> V:
            value = await compute()
            self.put(key, value, ttl(value))
            return value

        value, _ = await self._flight.run(key, compute_and_keep)
        return value

    def put(self, key: K, value: V, seconds: float) -> None:
        """Remember `value` for `key` for `seconds` (not at all when not positive), in place
        of what was remembered: an answer learned on the way to another question."""
        if seconds > 0:
            self._entries[key] = (self._clock() + seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)
