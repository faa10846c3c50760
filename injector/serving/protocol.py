"""The injector's connections on the event loop: a slot from accept, TLS with a deadline, and
uvicorn's h11 protocol with header, body and send deadlines (bounds:
`injector.serving.connections`).

asyncio calls a server's protocol factory when it accepts a connection, but with `ssl=` it
calls the protocol's `connection_made` only once the TLS handshake is done, and gives that
handshake 60 s (CPython 3.11: `_accept_connection2` in asyncio/selector_events.py,
`_on_handshake_complete` in asyncio/sslproto.py); uvicorn passes no handshake timeout. So
uvicorn serves these ports without `ssl=`, and its factory makes an `AcceptGate`: its
`connection_made` runs at accept with the plain socket and the client's address, takes a slot
in the port's `ConnectionTable` (closing an idle connection for it, or refusing the new one
before any TLS work) and starts the handshake deadline. The TLS state (`CompactTLS`) is made
only when the client's first bytes (its ClientHello) arrive: a socket that says nothing costs
the socket alone. Once the handshake is done the TLS transport goes to a `BoundedH11Protocol`.
The plain probe port skips the TLS. A connection from an address over its rate of new
connections never gets this far: the listening socket resets it at accept
(`injector.serving.listening`).

What a TLS connection reads counts against its address's receive budget (`per_address_bytes`
a second, the table's `receive`): past it, `CompactTLS` stops reading the socket until the
budget has refilled, so a flood of bodies waits in the kernel and its sender's TCP window
instead of being decrypted, parsed and screened on the loop.

Deadlines, per connection, on the event loop's clock (a passed one closes the connection):

- handshake: from accept, the TLS handshake must be done within `handshake_timeout`;
- headers: from the moment the connection is ready or the previous answer was sent, the next
  request's headers must be complete within `header_timeout`;
- body: from the moment the headers are in, the whole body must arrive within `body_timeout`;
- send: from the moment an answer no longer fits the transport's buffers (asyncio pauses the
  writer) or is complete with bytes still buffered, the client has `send_timeout` to take it;
  then the connection is aborted, which frees the buffered answer at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from asyncio import sslproto
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from injector.serving.connections import ConnectionLimits, ConnectionTable

log = logging.getLogger(__name__)

WARN_EVERY = 10.0
"""Seconds between two warnings about refused connections on one port (a flood logs little)."""
TLS_READ_BUFFER = 32 * 1024
"""Bytes a TLS connection reads from its socket at once: two full TLS records (16 KiB + 256)."""


class CompactTLS(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a 32 KiB read buffer instead of 256 KiB, reading no faster
    than its address's receive budget.

    CPython 3.11's `SSLProtocol` allocates (and zeroes) `max_size` bytes for every connection
    as it is made, and no public API (`loop.start_tls`, `create_server(ssl=...)`) sets it: with
    hundreds of connections in their handshake that is hundreds of MiB, and glibc keeps much of
    it after they close. `max_size` is only the size of the buffer the socket is read into and
    of one `SSLObject.read` (asyncio/sslproto.py: `__init__`, `get_buffer`,
    `_do_read__copied`); a TLS record is at most 16 KiB + 256 bytes, so 32 KiB reads whole
    records and only a large body takes more reads. The handshake, reads, writes and shutdown
    are asyncio's; the budget pauses and resumes the socket's reading beside asyncio's own flow
    control (its incoming buffer's high and low water), neither resuming what the other holds.
    """

    max_size = TLS_READ_BUFFER
    _ssl_reading_paused: bool
    """asyncio's: set while it holds the socket's reading for its own incoming buffer."""

    def __init__(
        self, *args: Any, table: ConnectionTable[AcceptGate], address: str, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._table = table
        self._address = address
        self._socket: asyncio.Transport | None = None
        self._unread: asyncio.TimerHandle | None = None
        """Set while the client's address is over its receive budget: the socket is not read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._socket = transport
        super().connection_made(transport)

    def buffer_updated(self, nbytes: int) -> None:
        """The socket's bytes, then the address's receive budget: over it, stop reading."""
        super().buffer_updated(nbytes)
        wait = self._table.receive(self._address, nbytes, self._loop.time())
        if wait > 0 and self._unread is None and self._socket is not None:
            self._socket.pause_reading()
            self._unread = self._loop.call_later(wait, self._read_again)

    def _read_again(self) -> None:
        self._unread = None
        if self._socket is None:
            return
        wait = self._table.unread_for(self._address, self._loop.time())
        if wait > 0:  # the address's other connections spent meanwhile
            self._unread = self._loop.call_later(wait, self._read_again)
            return
        if not self._ssl_reading_paused:
            self._socket.resume_reading()
        self._control_ssl_reading()

    def _control_ssl_reading(self) -> None:
        """asyncio's own pause and resume of the socket (its incoming buffer's high and low
        water, asyncio/sslproto.py), which must not resume a socket the budget holds:
        `_read_again` calls it once the budget allows."""
        if self._unread is None:
            super()._control_ssl_reading()  # type: ignore[misc]  # not in typeshed

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._unread is not None:
            self._unread.cancel()
            self._unread = None
        self._socket = None
        super().connection_lost(exc)


class _HandshakeDone(asyncio.Protocol):
    """`CompactTLS`'s application protocol until the handshake is done: then the gate's."""

    def __init__(self, gate: AcceptGate) -> None:
        self.gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.gate.handshake_done(transport)


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header, body and send deadlines, reporting idle and busy.

    `limits` is set on a subclass per server (see `gate_for`), since uvicorn builds the
    protocol from its class and its Config alone.
    """

    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate: AcceptGate | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None
        self._send_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers", self.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_the_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._follow_the_request()
        self._watch_the_answer()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._watch_the_answer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None
        if self.gate is not None:
            self.gate.release()
        super().connection_lost(exc)

    def unsent(self) -> int:
        """Bytes of answers the client has not taken yet (TLS buffers and the socket's)."""
        size = self.transport.get_write_buffer_size()
        raw = self.gate.raw if self.gate is not None else None
        if raw is not None and raw is not self.transport:
            size += raw.get_write_buffer_size()
        return size

    def _follow_the_request(self) -> None:
        """Move the deadline along with the request: headers, then body, then the next one."""
        reading = self.cycle is not None and not self.cycle.response_complete
        if not reading:
            # waiting for a request's headers (new connection, keep-alive, or partial headers)
            if self._waiting_for != "headers":
                self._arm("headers", self.limits.header_timeout)
            started = bool(self.conn.trailing_data[0])
            if self.gate is not None:
                self.gate.busy() if started else self.gate.idle()
            return
        if self.gate is not None:
            self.gate.busy()
        if self.conn.their_state is h11.SEND_BODY:
            if self._waiting_for != "body":
                self._arm("body", self.limits.body_timeout)
        else:
            self._disarm()  # the request is in; the handler's own time is the app's business

    def _watch_the_answer(self) -> None:
        if self._send_deadline is None and self.unsent():
            self._send_deadline = self.loop.call_later(self.limits.send_timeout, self._unread)

    def _unread(self) -> None:
        self._send_deadline = None
        unsent = self.unsent()
        if unsent:
            log.info(
                "dropping a client that left %d bytes of its answer unread for %g s "
                "(--send-timeout)",
                unsent,
                self.limits.send_timeout,
            )
            self.transport.abort()

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._waiting_for = what
        self._deadline = self.loop.call_later(seconds, self._expire, what, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._waiting_for = None

    def _expire(self, what: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        log.info("closing a connection that did not send its %s within %g s", what, seconds)
        self.transport.close()


class AcceptGate(asyncio.Protocol):
    """What uvicorn's factory makes at accept: a slot in the port's table, then TLS, then h11.

    `table`, `tls` and `http` are set on a subclass per server (see `gate_for`).
    """

    table: ConnectionTable[AcceptGate]
    tls: ssl.SSLContext | None
    http: type[BoundedH11Protocol]
    last_warning = float("-inf")
    refused_since_warning = 0

    def __init__(self, **uvicorn_arguments: Any) -> None:
        self._uvicorn_arguments = uvicorn_arguments
        self.loop = uvicorn_arguments.get("_loop") or asyncio.get_event_loop()
        self.raw: asyncio.Transport | None = None
        self.inner: BoundedH11Protocol | None = None
        self.address = "unknown"
        self._tls: CompactTLS | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.raw = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple | list) and peer:
            self.address = str(peer[0])
        admission = self.table.admit(self, self.address)
        if admission.evicted is not None:
            admission.evicted.evict()
        if not admission.admitted:
            self.warn_refused(self.address, admission.refused_because)
            transport.abort()
            return
        if self.tls is None:
            self._hand_over(transport)
            return
        self._deadline = self.loop.call_later(
            self.table.limits.handshake_timeout, self._handshake_late
        )

    def data_received(self, data: bytes) -> None:
        """The client's first bytes (its ClientHello on a TLS port): now start the TLS."""
        if self.tls is not None and self._tls is None and self.raw is not None:
            self._start_tls(self.raw, self.tls, data)

    def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext, hello: bytes) -> None:
        """What `loop.start_tls` does, with `CompactTLS`, fed the bytes already read."""
        limits = self.table.limits
        waiter = self.loop.create_future()
        waiter.add_done_callback(self._handshake_ended)
        tls = CompactTLS(
            self.loop,
            _HandshakeDone(self),
            context,
            waiter,
            server_side=True,
            # the gate's own deadline (from accept) comes first; this one (from now) is a spare
            ssl_handshake_timeout=math.ceil(limits.handshake_timeout),
            ssl_shutdown_timeout=limits.send_timeout,
            table=self.table,
            address=self.address,
        )
        self._tls = tls
        raw.set_protocol(tls)
        tls.connection_made(raw)
        view = memoryview(hello)
        while view and not raw.is_closing():  # a BufferedProtocol: fill its buffer, report
            buffer = tls.get_buffer(len(view))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            view = view[size:]
            tls.buffer_updated(size)

    def handshake_done(self, transport: asyncio.Transport) -> None:
        """The TLS handshake is done: h11 takes the connection over."""
        self._stop_deadline()
        self._hand_over(transport)

    def _handshake_ended(self, waiter: asyncio.Future[None]) -> None:
        """The handshake's outcome; a failed or cut one frees the slot and the socket now."""
        if not waiter.cancelled() and waiter.exception() is not None:
            log.debug("TLS handshake with %s failed: %s", self.address, waiter.exception())
        if self.inner is None:
            self._close_unready()

    def _handshake_late(self) -> None:
        self._deadline = None
        if self.inner is None:
            log.info(
                "closing a connection from %s that did not finish its TLS handshake within "
                "%g s (--handshake-timeout)",
                self.address,
                self.table.limits.handshake_timeout,
            )
            self._close_unready()

    def _close_unready(self) -> None:
        self._stop_deadline()
        self.release()
        if self.raw is not None:
            self.raw.abort()

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _hand_over(self, transport: asyncio.Transport) -> None:
        inner = self.http(**self._uvicorn_arguments)
        inner.gate = self
        self.inner = inner
        transport.set_protocol(inner)
        self.idle()  # past its handshake: now its own address's to close for a newcomer
        inner.connection_made(transport)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        """Lost before the TLS started (after, the TLS or h11 protocol hears of it)."""
        if self.inner is not None:
            self.inner.connection_lost(exc)
        else:
            self._stop_deadline()
            self.release()

    def idle(self) -> None:
        self.table.idle(self)

    def busy(self) -> None:
        self.table.busy(self)

    def release(self) -> None:
        self.table.release(self)

    def evict(self) -> None:
        """Close this idle connection now: its slot went to a new one."""
        log.debug("closing an idle connection from %s: the port needs its slot", self.address)
        transport = self.inner.transport if self.inner is not None else self.raw
        if transport is not None:
            transport.abort()

    @classmethod
    def warn_refused(cls, address: str, because: str) -> None:
        """Count a refused connection; warn about them at most every `WARN_EVERY` seconds."""
        cls.refused_since_warning += 1
        now = time.monotonic()
        if now - cls.last_warning >= WARN_EVERY:
            log.warning(
                "refused %d connection(s) in the last %g s, the last from %s: %s",
                cls.refused_since_warning,
                WARN_EVERY,
                address,
                because,
            )
            cls.last_warning = now
            cls.refused_since_warning = 0


def gate_for(limits: ConnectionLimits, tls: ssl.SSLContext | None) -> type[AcceptGate]:
    """The protocol class uvicorn builds for one port: its own table, TLS context and limits."""
    http = type("BoundedH11Protocol", (BoundedH11Protocol,), {"limits": limits})
    table: ConnectionTable[AcceptGate] = ConnectionTable(limits)
    return type("AcceptGate", (AcceptGate,), {"table": table, "tls": tls, "http": http})
