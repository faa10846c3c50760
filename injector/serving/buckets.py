"""Token buckets per client address: what one address may still open or send now.

One bucket per address holds up to `burst` tokens and refills at `rate` tokens a second. The
connection table counts connections in them (one token each, refused when none is left), the
TLS ports' receive budget counts bytes (spent after they are read, so a bucket may go below
zero: the address then waits until it is back at zero).

An address seen once is a stranger again once its bucket is full: past `keep` buckets, the full
ones are forgotten, so a flood from many addresses cannot grow the table without bound.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """Tokens a second, after a burst of `burst` tokens."""

    per_second: float
    """Above 0 (the bounds that make a `Rate` check their own values)."""
    burst: float


class AddressBuckets:
    """One `Rate` bucket per client address, full until the address spends from it."""

    def __init__(self, rate: Rate, keep: int) -> None:
        self.rate = rate
        self._spent: dict[str, tuple[float, float]] = {}
        """Per address that spent lately: the tokens it had left, and when (the callers' clock)."""
        self._forget_at = keep
        """Buckets held before the full ones are forgotten."""

    def __len__(self) -> int:
        return len(self._spent)

    def left(self, address: str, now: float) -> float:
        """Tokens `address` has at `now` (`now` is a monotonic clock in seconds)."""
        spent = self._spent.get(address)
        if spent is None:
            return self.rate.burst
        left, since = spent
        return min(self.rate.burst, left + (now - since) * self.rate.per_second)

    def spend(self, address: str, tokens: float, now: float) -> float:
        """Take `tokens` from `address`'s bucket, below zero if need be; what is left."""
        left = self.left(address, now) - tokens
        self._spent[address] = (left, now)
        if len(self._spent) > self._forget_at:  # an address with a full bucket is a stranger
            burst = self.rate.burst
            self._spent = {
                other: spent
                for other, spent in self._spent.items()
                if self.left(other, now) < burst
            }
            self._forget_at = max(self._forget_at, 2 * len(self._spent))
        return left

    def wait(self, address: str, now: float) -> float:
        """Seconds until `address`'s bucket is back at zero (0 when it is not below)."""
        return max(0.0, -self.left(address, now) / self.rate.per_second)
