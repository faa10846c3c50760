"""The TLS and probe ports' listening sockets, which refuse an over-rate address at accept.

asyncio accepts a connection by making a task, a transport and the protocol (an `AcceptGate`)
for it, several steps on the event loop before the gate can see the client's address and
refuse it: a client reconnecting in a loop (hundreds of times a second) made the loop spend
most of its time on connections it then refused. A `ScreeningSocket` is the listening socket
asyncio accepts from: its `accept` asks the port's `ConnectionTable` whether the address may
open another connection now (`arrive`, the per-address rate) and resets a refused one on the
spot (RST, so neither side keeps any state for it), before asyncio makes anything for it.
The table's other bounds (the address's share, the port's) are the gate's, which needs the
connection itself to close an idle one for it. A refused address is also put on the socket's
`Blocklist` (`injector.serving.address_filter`): for a second the kernel drops its new
connections before they are accepted at all.

asyncio calls `accept` on the listening socket it was given (CPython 3.11:
`BaseSelectorEventLoop._accept_connection` in asyncio/selector_events.py) until it raises
`BlockingIOError`, at most its backlog's number of times per turn of the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from typing import Any

from injector.serving.address_filter import Blocklist, attach
from injector.serving.protocol import AcceptGate

log = logging.getLogger(__name__)

REFUSED_PER_ACCEPT = 256
"""Refused connections one `accept` resets before it lets the loop run other work."""
RESET = struct.pack("ii", 1, 0)
"""SO_LINGER on, 0 seconds: `close` sends a RST and frees the socket at once."""


class ScreeningSocket(socket.socket):
    """A listening socket whose `accept` resets connections their address may not open."""

    gate: type[AcceptGate]
    blocklist: Blocklist | None
    """None once the kernel refused a filter (not Linux, say): then only resets."""
    expiry: asyncio.TimerHandle | None

    def accept(self) -> tuple[socket.socket, Any]:
        for _ in range(REFUSED_PER_ACCEPT):
            connection, address = super().accept()  # BlockingIOError: none is waiting
            host = str(address[0])
            now = time.monotonic()
            because = self.gate.table.arrive(host, now)
            if not because:
                return connection, address
            if self.blocklist is not None and self.blocklist.block(host, now):
                self._filter()  # before the reset: its client's next SYN finds the filter
            with contextlib.suppress(OSError):  # already reset by its client: just close
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
            connection.close()
            self.gate.warn_refused(host, because)
        raise BlockingIOError("refused a burst of connections; the loop's other work first")

    def _filter(self) -> None:
        """Give the kernel the blocklist as it is now, and wake up when it next changes."""
        blocklist = self.blocklist
        if blocklist is None or self.fileno() < 0:  # closed: the port is shutting down
            return
        try:
            attach(self, blocklist.program())
        except OSError as error:
            log.warning(
                "cannot filter over-rate addresses in the kernel (%s); they are reset at "
                "accept only",
                error,
            )
            self.blocklist = None
            return
        expiry = blocklist.next_expiry()
        if expiry is not None and self.expiry is None:
            delay = max(0.0, expiry - time.monotonic())
            self.expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self.expiry = None
        if self.blocklist is not None:
            self.blocklist.expire(time.monotonic())
            self._filter()


def listening_sockets(host: str, port: int, gate: type[AcceptGate]) -> list[ScreeningSocket]:
    """Bound, screening sockets for `host:port`, one per address family it resolves to, set
    up as asyncio's `create_server` sets up its own (asyncio/base_events.py)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[ScreeningSocket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = ScreeningSocket(family, kind, proto)
            sockets.append(sock)
            sock.gate = gate
            sock.blocklist = Blocklist(family)
            sock.expiry = None
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
