"""A client-side token bucket so we stay under Sakura's quota (about 100 requests a minute).

Callers that find no slot wait in line, one line per tenant (any key the caller chooses, e.g.
whose request this is): slots go round-robin between the tenants waiting, so one busy tenant
cannot make the others wait behind all of its calls, and `max_waiting` bounds how many calls
one tenant may have waiting (more are refused at once with `Crowded`). The bookkeeping uses a
thread lock rather than an asyncio lock, so one limiter can be shared by clients on different
event loops (the broker and its tests).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sakura.errors import Crowded

if TYPE_CHECKING:
    import asyncio

DEFAULT_PER_MINUTE = 90.0
DEFAULT_BURST = 5

Tenant = str | None
"""Whose call this is; None is one tenant like any other (e.g. a process with no tenants)."""


@dataclass(eq=False)
class _Waiter:
    tenant: Tenant
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None] = field(repr=False)
    granted: bool = False


class RateLimiter:
    """Token bucket: `burst` requests at once, refilled at `per_minute` requests a minute."""

    def __init__(
        self,
        per_minute: float = DEFAULT_PER_MINUTE,
        burst: int = DEFAULT_BURST,
        *,
        max_waiting: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        """`clock` and `sleep` (default asyncio.sleep) are the time the bucket, the waits and
        `max_wait` run on (a test passes a hand-driven pair); they must agree: `sleep(d)` lets
        `clock()` advance by d. asyncio loads only when a call waits in line: the init
        container's sync reader takes its slots with `reserve`, with no event loop."""
        _check(per_minute, burst)
        if max_waiting is not None and max_waiting < 1:
            raise ValueError(f"max_waiting must be at least 1, not {max_waiting!r}")
        self.per_minute = float(per_minute)
        self.burst = burst
        self.max_waiting = max_waiting
        self._rate = per_minute / 60.0
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()
        self._lines: OrderedDict[Tenant, deque[_Waiter]] = OrderedDict()
        """Waiting calls by tenant; the first tenant is served next, then moves to the end."""

    def __repr__(self) -> str:
        return f"RateLimiter(per_minute={self.per_minute:g}, burst={self.burst})"

    def set_rate(self, per_minute: float, burst: int) -> None:
        """Change the pace from now on (e.g. this replica's share of the account's budget)."""
        _check(per_minute, burst)
        with self._lock:
            self._wait_for_slot()  # the level up to now, at the old rate
            self.per_minute = float(per_minute)
            self.burst = burst
            self._rate = per_minute / 60.0
            self._tokens = min(float(burst), self._tokens)

    def waiting(self, tenant: Tenant = None) -> int:
        """How many calls of `tenant` wait for a slot now."""
        with self._lock:
            line = self._lines.get(tenant)
            return 0 if line is None else len(line)

    def waiting_by_tenant(self) -> dict[Tenant, int]:
        """How many calls wait for a slot now, by tenant (tenants with none left out)."""
        with self._lock:
            return {tenant: len(line) for tenant, line in self._lines.items()}

    def level(self) -> float:
        """Slots free now; below 0 while a Retry-After from Sakura is waited out (`hold_off`)."""
        with self._lock:
            self._wait_for_slot()  # brings the level up to now
            return self._tokens

    def reserve(self, max_wait: float | None = None) -> float | None:
        """Take a slot; return how long to wait for it, or None (nothing taken) if too long.

        The bare bucket: it takes no turn in the tenants' lines; callers use `acquire`.
        """
        with self._lock:
            wait = self._wait_for_slot()
            if max_wait is not None and wait > max_wait:
                return None
            self._tokens -= 1
            return wait

    def next_slot_in(self) -> float:
        """Seconds until a slot would be free, taking nothing (for a caller's Retry-After)."""
        with self._lock:
            return self._wait_for_slot()

    def hold_off(self, seconds: float) -> None:
        """Send nothing for `seconds`, then one request at a time at the steady rate.

        Sakura's quota is per account, so its 429 + Retry-After concerns every caller sharing
        this limiter, not just the one that got it; resuming without a burst avoids a second 429.
        """
        with self._lock:
            self._wait_for_slot()  # brings the level up to now
            resume = self._updated + max(0.0, seconds)
            # The level is a line rising at the rate; make it reach 1 no earlier than `resume`.
            self._tokens = min(self._tokens, 1 - (resume - self._updated) * self._rate)

    def _wait_for_slot(self) -> float:
        """Refill the bucket up to now (caller holds the lock); the wait for the next slot."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._rate

    def refund(self) -> None:
        """Give back a slot that was reserved but not used (e.g. the caller was cancelled)."""
        with self._lock:
            self._tokens = min(float(self.burst), self._tokens + 1)

    async def acquire(self, max_wait: float | None = None, *, tenant: Tenant = None) -> bool:
        """Wait for a slot, in `tenant`'s line. False if none is free within `max_wait`.

        Raises Crowded, without waiting, when `tenant` already has `max_waiting` calls waiting.
        """
        import asyncio

        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._lines and self._wait_for_slot() == 0:
                self._tokens -= 1  # nobody waits and a slot is free: no line to join
                return True
            line = self._lines.get(tenant)
            ahead = 0 if line is None else len(line)
            if self.max_waiting is not None and ahead >= self.max_waiting:
                raise Crowded(
                    f"this tenant already has {ahead} call(s) waiting for the client-side rate "
                    f"limit ({self.per_minute:g}/min), as many as it may",
                    retry_after=self._turn_comes_in(),
                    waiting=ahead,
                )
            if max_wait is not None and self._served_in(tenant, ahead) > max_wait:
                return False
            waiter = _Waiter(tenant, loop, loop.create_future())
            self._lines.setdefault(tenant, deque()).append(waiter)
        give_up_at = None if max_wait is None else self._clock() + max_wait
        try:
            while True:
                nap = self.dispatch()
                if waiter.granted:
                    return True
                if give_up_at is not None:
                    left = give_up_at - self._clock()
                    if left <= 0:
                        return self._leave(waiter)
                    nap = min(nap, left)
                await self._nap(waiter.future, max(nap, 0.001))
        except asyncio.CancelledError:
            if self._leave(waiter):
                self.refund()  # granted just as the caller went away
            raise

    async def _nap(self, woken: asyncio.Future[None], seconds: float) -> None:
        """Sleep `seconds` on the limiter's time, or less if `woken` (a slot was handed over)."""
        import asyncio

        sleep = asyncio.sleep if self._sleep is None else self._sleep
        nap = asyncio.ensure_future(sleep(seconds))
        try:
            await asyncio.wait((woken, nap), return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()  # woken first, or the caller was cancelled: no sleep left behind

    def dispatch(self) -> float:
        """Hand the free slots to waiting calls, round-robin by tenant; seconds to the next.

        Waiting calls run this themselves whenever the next slot is due.
        """
        with self._lock:
            while self._lines:
                wait = self._wait_for_slot()
                if wait > 0:
                    return wait
                tenant, line = next(iter(self._lines.items()))
                waiter = line.popleft()
                if line:
                    self._lines.move_to_end(tenant)
                else:
                    del self._lines[tenant]
                self._tokens -= 1
                waiter.granted = True
                if waiter.loop.is_closed():
                    continue
                waiter.loop.call_soon_threadsafe(_wake, waiter.future)
            return self._wait_for_slot()

    def _leave(self, waiter: _Waiter) -> bool:
        """Take `waiter` out of its line; True if it had been granted a slot meanwhile."""
        with self._lock:
            if waiter.granted:
                return True
            line = self._lines.get(waiter.tenant)
            if line is not None and waiter in line:
                line.remove(waiter)
                if not line:
                    del self._lines[waiter.tenant]
            return False

    def _served_in(self, tenant: Tenant, ahead: int) -> float:
        """Seconds until a call joining behind `ahead` calls of `tenant` gets its slot."""
        others = (min(len(ln), ahead + 1) for t, ln in self._lines.items() if t != tenant)
        missing = ahead + sum(others) + 1 - self._tokens
        return max(0.0, missing / self._rate)

    def _turn_comes_in(self) -> float:
        """Seconds until every waiting tenant, this one included, has had one more slot."""
        missing = max(1, len(self._lines)) - self._tokens
        return max(1.0 / self._rate, missing / self._rate)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _check(per_minute: float, burst: int) -> None:
    if per_minute <= 0:
        raise ValueError(f"per_minute must be positive, not {per_minute!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, not {burst!r}")
