"""Addresses whose new connections the kernel drops for a while, before they reach the server.

Resetting an over-rate connection at accept (`injector.serving.listening`) still lets its
client reconnect at once: an address reconnecting in a loop made the kernel complete thousands
of handshakes a second and the server accept and reset each one (94,000 in 10 s in the hostile
benchmark's row 2), which slowed everyone else's requests. So an address refused for its rate is
also put on its listening socket's `Blocklist` for `BLOCK_SECONDS`: a classic BPF socket filter
(`SO_ATTACH_FILTER`, which the kernel runs on every packet for the listening socket, SYNs
included) drops its packets, so its connects get no answer and its kernel retries them after
its SYN timeout (1 s, then 3 s, ...). The cost of the flood lands on its sender; connections
already open are not the listening socket's and are untouched; other addresses are not
affected. A legitimate client behind that address sees a connect take about a second longer
instead of a reset.

Linux copies a listening socket's filter to each connection it accepts: a connection accepted
while some address is blocked keeps that program for its life. It never matches the
connection's own peer (whose packets passed it to be accepted), so it costs each of its packets
a few comparisons and nothing else.

The filter program is built here (pure: `program`); attaching it is the listening socket's.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
from dataclasses import dataclass, field

BLOCK_SECONDS = 1.0
"""How long an over-rate address's new connections are dropped: Linux's initial SYN timeout,
after which its client's kernel sends the SYN again."""
MAX_BLOCKED = 64
"""Addresses one listening socket blocks at once; past it, an over-rate address is only reset
at accept (the program grows with each address, and runs for every packet to the port)."""
SO_ATTACH_FILTER = 26
"""Linux's option number (asm-generic/socket.h; Python's socket module has no name for it).
The injector runs on Linux; elsewhere attaching fails and over-rate addresses are only reset."""

_SKF_NET_OFF = -0x100000
"""Classic BPF offsets from here read the network (IP) header, not the TCP one."""
_LOAD_WORD = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JUMP_IF_EQUAL = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_RETURN = 0x06  # BPF_RET | BPF_K
_KEEP = 0xFFFFFFFF
_DROP = 0
_SOURCE_OFFSET = {socket.AF_INET: 12, socket.AF_INET6: 8}
"""Where the source address starts in an IPv4 and an IPv6 header."""

Instruction = tuple[int, int, int, int]
"""(code, jump if true, jump if false, k): `struct sock_filter`."""


def program(family: socket.AddressFamily, addresses: list[str]) -> list[Instruction]:
    """A filter that drops every packet from `addresses` (all of `family`) and keeps the rest.

    Each address is compared a 32-bit word at a time (one for IPv4, four for IPv6); a mismatch
    jumps to the next address's comparisons, a full match returns "drop".
    """
    offset = _SKF_NET_OFF + _SOURCE_OFFSET[family]
    out: list[Instruction] = []
    for text in addresses:
        packed = ipaddress.ip_address(text).packed  # a scope (fe80::1%eth0) is not sent
        if len(packed) != (4 if family == socket.AF_INET else 16):
            raise ValueError(f"{text} is not an address of family {family}")
        words = struct.unpack(f"!{len(packed) // 4}I", packed)
        for i, word in enumerate(words):
            left = len(words) - i - 1  # comparisons after this one, each two instructions
            out.append(_statement(_LOAD_WORD, offset + 4 * i))
            out.append((_JUMP_IF_EQUAL, 0, 2 * left + 1, word))
        out.append(_statement(_RETURN, _DROP))
    out.append(_statement(_RETURN, _KEEP))
    return out


def _statement(code: int, k: int) -> Instruction:
    """An instruction that does not jump (the kernel ignores its jump fields)."""
    return (code, 0, 0, k)


def attach(sock: socket.socket, instructions: list[Instruction]) -> None:
    """Replace `sock`'s filter with `instructions` (the kernel copies the program)."""
    code = ctypes.create_string_buffer(
        b"".join(
            struct.pack("HBBI", code, true, false, k & 0xFFFFFFFF)  # negative offsets wrap
            for code, true, false, k in instructions
        )
    )
    fprog = struct.pack("HxxxxxxQ", len(instructions), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


@dataclass
class Blocklist:
    """The addresses one listening socket drops, each until its own time (a monotonic clock)."""

    family: socket.AddressFamily
    seconds: float = BLOCK_SECONDS
    limit: int = MAX_BLOCKED
    until: dict[str, float] = field(default_factory=dict)
    """Blocked addresses, the earliest to be let in again first (each is blocked for the same
    time, so insertion order is expiry order)."""

    def block(self, address: str, now: float) -> bool:
        """Block `address` from `now`: whether the set changed (and the filter must too)."""
        if address in self.until or len(self.until) >= self.limit:
            return False
        self.until[address] = now + self.seconds
        return True

    def expire(self, now: float) -> bool:
        """Let in the addresses whose time is up: whether the set changed."""
        done = [address for address, until in self.until.items() if until <= now]
        for address in done:
            del self.until[address]
        return bool(done)

    def next_expiry(self) -> float | None:
        return next(iter(self.until.values()), None)

    def program(self) -> list[Instruction]:
        return program(self.family, list(self.until))
