"""The one hand-driven clock of the tests: time moves only when a test or a wait moves it."""

from __future__ import annotations

import asyncio


class HandClock:
    """Time that moves only when a test moves `now` or the code under test waits on it.

    `clock()` reads it. `sleep(d)` (async) and `blocking_sleep(d)` record d in `waits`, move
    `now` by d and return at once (the async one yields to the loop once): a wait of any length
    takes no real time, and a test asserts how long the code waited, not how long it took.
    It starts at 1000 s by default, away from zero, so code that adds a start time where it
    should subtract it (or takes a time for a duration) shows.
    """

    MAX_WAITS = 100_000
    """More waits than any test needs: a wait loop that never ends fails at once instead of
    spinning until a timeout (a mutant under mutation testing, a bug in a change)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def blocking_sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) > self.MAX_WAITS:
            raise AssertionError(f"more than {self.MAX_WAITS} waits: a wait loop never ends")
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.blocking_sleep(seconds)
        await asyncio.sleep(0)
