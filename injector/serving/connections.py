"""Bounds on what one port's connections may hold, and who gets a slot when the port is full.

The bounds (`ConnectionLimits`) are enforced by `injector.serving.protocol` on the event loop; this
module is the pure part: `ConnectionTable` decides, at accept time, whether a new connection
gets a slot, and which idle connection gives its slot up for it.

- a connection takes a slot when it is accepted, before its TLS handshake, and keeps it until
  it is closed;
- one client address opens at most `address_rate` connections a second, after a burst of
  `address_burst`: past that the new one is refused as it is accepted (`arrive`, called by
  `injector.serving.listening` before asyncio makes anything for the connection), so an
  address cannot make the server run handshakes (the dearest thing a connection costs), or
  even build a transport, as fast as it can reconnect;
- one client address holds at most `address_share` slots; at its share, its own oldest idle
  connection is closed for the new one, or the new one is refused when none of its
  connections is idle past its handshake;
- a full port closes its oldest idle connection (any address) for the new one, and refuses the
  new one only when every connection is busy.

Idle means no request in progress: the TLS handshake is not done yet, or the connection waits
for the first byte of its next request (keep-alive). A busy connection is bounded by the header
and body deadlines instead, and a connection whose answer is not read by the send deadline.
A connection still in its handshake is never closed for a newcomer from its own address: that
newcomer would only start the same handshake again (an address reconnecting in a loop would
otherwise evict itself and pay, or make the server pay, a handshake per turn).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from injector.serving.buckets import AddressBuckets, Rate
from injector.setting import OutOfRange

ADDRESS_SHARE_FRACTION = 4
"""One client address may hold a quarter of a port's connections ..."""
ADDRESS_SHARE_FLOOR = 8
"""... but at least this many (never more than the port's limit)."""
ADDRESS_RATE_FLOOR = 8.0
"""New connections a second one address may open: half its share, at least this many."""
BURST_SECONDS = 2
"""An address may open `BURST_SECONDS` seconds' worth of connections at once."""
KEPT_BUCKETS = 4
"""The table forgets full rate buckets once it tracks this many per slot of the port."""
MAX_TIMEOUT = 300.0
"""No deadline of a connection is longer: five minutes is past any client that still works."""
MAX_CONNECTIONS = 100_000
"""Connections one port may be told to hold (each is a file descriptor)."""
MIB = 1024 * 1024

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class ConnectionLimits:
    """Every bound with its default, checked when built; docs/webhook.md explains each."""

    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's headers (idle keep-alive included)."""
    body_timeout: float = 10.0
    """Seconds a request may take to send its body once the headers are in."""
    max_connections: int = 256
    """Connections one port holds at once, counted from accept (handshakes included)."""
    keep_alive: int = 5
    """Seconds an idle keep-alive connection stays open (uvicorn's timeout_keep_alive)."""
    handshake_timeout: float = 5.0
    """Seconds a connection may take to finish its TLS handshake once accepted."""
    send_timeout: float = 10.0
    """Seconds a client has to take an answer the server could not hand to the kernel at once."""
    per_address: int | None = None
    """Connections one client address holds on one port; None: `address_share` decides."""
    per_address_rate: float | None = None
    """New connections a second one address may open on one port; None: `address_rate`."""
    per_address_bytes: int = 8 * MIB
    """Bytes a second one client address may send to one TLS port, after a burst of
    `BURST_SECONDS` seconds' worth; past it, its connections are not read until it is back
    within (`injector.serving.protocol`): the cost of a flood of bodies lands on its sender."""

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "handshake_timeout", "send_timeout"):
            seconds = getattr(self, name)
            if not seconds > 0:
                raise OutOfRange(name, "must be above 0 seconds")
            if seconds > MAX_TIMEOUT:
                raise OutOfRange(name, f"must be above 0 and at most {MAX_TIMEOUT:g} seconds")
        if not 1 <= self.max_connections <= MAX_CONNECTIONS:
            raise OutOfRange("max_connections", f"must be between 1 and {MAX_CONNECTIONS}")
        if self.keep_alive < 1:
            raise OutOfRange("keep_alive", "must be at least 1 second")
        if self.per_address is not None and not 1 <= self.per_address <= self.max_connections:
            raise OutOfRange("per_address", "must be between 1 and max_connections")
        if self.per_address_rate is not None and not self.per_address_rate >= 1:
            raise OutOfRange("per_address_rate", "must be at least 1 connection a second")
        if not self.per_address_bytes >= 1:
            raise OutOfRange("per_address_bytes", "must be at least 1 byte a second")

    @property
    def address_share(self) -> int:
        """Slots one client address may hold: a quarter of the port's, at least 8, at most all."""
        if self.per_address is not None:
            return self.per_address
        share = max(ADDRESS_SHARE_FLOOR, self.max_connections // ADDRESS_SHARE_FRACTION)
        return min(self.max_connections, share)

    @property
    def address_rate(self) -> float:
        """New connections a second one address may open: half its share, at least 8."""
        if self.per_address_rate is not None:
            return self.per_address_rate
        return max(ADDRESS_RATE_FLOOR, self.address_share / 2)

    @property
    def address_burst(self) -> float:
        """New connections one address may open at once (its rate bucket's size)."""
        return BURST_SECONDS * self.address_rate

    @property
    def receive_rate(self) -> Rate:
        """Bytes one address may send to one TLS port: `per_address_bytes` a second."""
        return Rate(self.per_address_bytes, BURST_SECONDS * self.per_address_bytes)


@dataclass(frozen=True)
class Admission(Generic[Key]):
    """The table's answer to a new connection."""

    admitted: bool
    evicted: Key | None = None
    """An idle connection to close now: its slot went to the new one."""
    refused_because: str = ""
    """Why the new connection was refused (for the log), empty when admitted."""


class ConnectionTable(Generic[Key]):
    """The slots of one port: who holds them, from which address, and which are idle."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._address: dict[Key, str] = {}
        self._per_address: Counter[str] = Counter()
        self._idle: dict[Key, None] = {}
        """Idle connections, in their handshake or past it, oldest idle first (dicts keep
        insertion order): what a full port closes for a newcomer."""
        self._idle_of: dict[str, dict[Key, None]] = {}
        """Per address, its idle connections past their handshake, oldest first: what an
        address at its share closes for its own newcomer."""
        self._opened = AddressBuckets(
            Rate(limits.address_rate, limits.address_burst),
            keep=KEPT_BUCKETS * limits.max_connections,
        )
        """Per address, the connections it may still open (the clock `arrive` is given)."""
        self._received = AddressBuckets(
            limits.receive_rate, keep=KEPT_BUCKETS * limits.max_connections
        )
        """Per address, the bytes it may still send before its connections wait."""

    def __len__(self) -> int:
        return len(self._address)

    def count(self, address: str) -> int:
        """Slots `address` holds now."""
        return self._per_address[address]

    def is_idle(self, key: Key) -> bool:
        return key in self._idle

    def arrive(self, address: str, now: float) -> str:
        """A connection from `address` is accepted at `now` (a monotonic clock in seconds):
        empty when its rate allows it (it counts against the rate from now on, whatever
        becomes of it), else why it is refused."""
        if self._opened.left(address, now) < 1:
            limits = self.limits
            return (
                f"its address opened more than {limits.address_rate:g} connections a second "
                f"after a burst of {limits.address_burst:g} (half its share of "
                "--max-connections a second)"
            )
        self._opened.spend(address, 1, now)
        return ""

    def receive(self, address: str, size: int, now: float) -> float:
        """`address` sent `size` bytes at `now`: the seconds its connections must now wait
        before they are read again, 0 while it is within `per_address_bytes` a second."""
        self._received.spend(address, size, now)
        return self.unread_for(address, now)

    def unread_for(self, address: str, now: float) -> float:
        """Seconds `address`'s connections must still wait before they are read again."""
        return self._received.wait(address, now)

    def admit(self, key: Key, address: str) -> Admission[Key]:
        """Give `key` (an arrived connection) a slot, idle: its handshake is ahead; closes an
        idle connection for it if need be."""
        limits = self.limits
        evicted = None
        if self._per_address[address] >= limits.address_share:
            evicted = next(iter(self._idle_of.get(address, ())), None)
            if evicted is None:
                return Admission(
                    False,
                    refused_because=f"its address holds {limits.address_share} connections, "
                    "none idle past its handshake (its share of --max-connections)",
                )
        elif len(self._address) >= limits.max_connections:
            evicted = next(iter(self._idle), None)
            if evicted is None:
                return Admission(
                    False,
                    refused_because=f"all {limits.max_connections} connections of the "
                    "port are busy (--max-connections)",
                )
        if evicted is not None:
            self.release(evicted)
        self._address[key] = address
        self._per_address[address] += 1
        self._idle[key] = None  # in its handshake: the port's to close, not its address's
        return Admission(True, evicted=evicted)

    def idle(self, key: Key) -> None:
        """`key` is past its handshake and waits for a request: the newest idle one."""
        address = self._address.get(key)
        if address is not None:
            self.busy(key)
            self._idle[key] = None
            self._idle_of.setdefault(address, {})[key] = None

    def busy(self, key: Key) -> None:
        """`key` has a request in progress: never closed for another connection."""
        if key not in self._idle:
            return
        del self._idle[key]
        address = self._address[key]
        own = self._idle_of.get(address, {})
        own.pop(key, None)
        if not own:
            self._idle_of.pop(address, None)

    def release(self, key: Key) -> None:
        """`key` is closed (or being closed): its slot is free. Releasing twice is harmless."""
        if key not in self._address:
            return
        self.busy(key)
        address = self._address.pop(key)
        self._per_address[address] -= 1
        if not self._per_address[address]:
            del self._per_address[address]
