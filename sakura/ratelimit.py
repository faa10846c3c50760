"""A client-side token bucket so we stay under Sakura's quota (about 100 requests a minute).

Callers reserve a slot and sleep until it is theirs, so waiters are served in order. The
bookkeeping uses a thread lock rather than an asyncio lock, so one limiter can be shared by
clients on different event loops (the broker and its tests).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

DEFAULT_PER_MINUTE = 90.0
DEFAULT_BURST = 5


class RateLimiter:
    """Token bucket: `burst` requests at once, refilled at `per_minute` requests a minute."""

    def __init__(
        self,
        per_minute: float = DEFAULT_PER_MINUTE,
        burst: int = DEFAULT_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, not {per_minute!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self.per_minute = float(per_minute)
        self.burst = burst
        self._rate = per_minute / 60.0
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RateLimiter(per_minute={self.per_minute:g}, burst={self.burst})"

    def reserve(self, max_wait: float | None = None) -> float | None:
        """Take a slot; return how long to wait for it, or None (nothing taken) if too long."""
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

    async def acquire(self, max_wait: float | None = None) -> bool:
        """Wait for a slot. False, without waiting, if it would take longer than `max_wait`."""
        wait = self.reserve(max_wait)
        if wait is None:
            return False
        if wait > 0:
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                self.refund()
                raise
        return True
