"""The emulator's behaviour knobs and call counters (the official mock's, plus counting).

Shared between the server thread and the test that drives it, so everything is behind a lock
and can be changed at run time (e.g. raise the fault rate in the middle of a rollout).
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """Answer `code` for a fraction `rate` of API requests."""

    code: int
    rate: float

    def __post_init__(self) -> None:
        if not 100 <= self.code <= 599:
            raise ValueError(f"fault code {self.code} is not an HTTP status")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate {self.rate} is not between 0 and 1")

    @classmethod
    def parse(cls, text: str) -> Fault:
        """`CODE:RATE`, e.g. `503:0.2` or `503:20%`."""
        code, sep, rate = text.partition(":")
        if not sep:
            raise ValueError(f"fault {text!r} is not CODE:RATE, e.g. 503:0.2")
        value = float(rate[:-1]) / 100 if rate.endswith("%") else float(rate)
        return cls(int(code), value)


class Knobs:
    """Latency, rate limit, faults and counters of one emulator instance."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        rate_limit: int | None = None,
        rate_limit_window: float = 60.0,
        faults: list[Fault] | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.latency = latency
        self.rate_limit = rate_limit
        self.rate_limit_window = rate_limit_window
        self.clock = clock
        """The rate-limit window's time; a test may set a hand-driven clock (e.g. the client's)."""
        self._faults = list(faults or [])
        self._fail_next: list[int] = []
        self._recent: collections.deque[float] = collections.deque()
        self.calls: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()

    # -- counters ---------------------------------------------------------------------

    def count(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1
            self.calls["total"] += 1

    def record_status(self, status: int) -> None:
        with self._lock:
            self.statuses[status] += 1

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {
                "calls": dict(self.calls),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "faults": [{"code": f.code, "rate": f.rate} for f in self._faults],
                "fail_next": list(self._fail_next),
                "latency": self.latency,
                "rate_limit": self.rate_limit,
                "rate_limit_window": self.rate_limit_window,
            }

    def reset_stats(self) -> None:
        with self._lock:
            self.calls.clear()
            self.statuses.clear()

    # -- faults -----------------------------------------------------------------------

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def set_faults(self, faults: list[Fault]) -> None:
        with self._lock:
            self._faults = list(faults)

    def fail_next(self, code: int, count: int = 1) -> None:
        """Answer `code` to the next `count` API requests: deterministic faults for tests."""
        with self._lock:
            self._fail_next.extend([code] * count)

    def draw_fault(self) -> int | None:
        with self._lock:
            if self._fail_next:
                return self._fail_next.pop(0)
            roll = self._rng.random()
            for fault in self._faults:
                if roll < fault.rate:
                    return fault.code
                roll -= fault.rate
            return None

    # -- rate limit -------------------------------------------------------------------

    def set_rate_limit(self, limit: int | None, window: float | None = None) -> None:
        with self._lock:
            self.rate_limit = limit
            if window is not None:
                self.rate_limit_window = window
            self._recent.clear()

    def admit(self) -> float | None:
        """None when the request is within the limit, else seconds until a slot frees."""
        with self._lock:
            if self.rate_limit is None:
                return None
            now = self.clock()
            while self._recent and self._recent[0] <= now - self.rate_limit_window:
                self._recent.popleft()
            if len(self._recent) >= self.rate_limit:
                if not self._recent:  # a limit of 0: nothing passes
                    return self.rate_limit_window
                return self._recent[0] + self.rate_limit_window - now
            self._recent.append(now)
            return None
