"""Bounds on what one HTTP connection may hold: time to send headers, time to send the body,
and how many connections one port keeps open at once.

uvicorn closes an idle keep-alive connection, but a client that sends its headers (or its
body) one byte at a time, or connects and says nothing, is held forever. `BoundedH11Protocol`
adds the missing deadlines to uvicorn's h11 protocol, per connection, on the event loop's
clock:

- headers: from the moment the connection is ready (after TLS) or the previous response was
  sent, the next request's headers must be complete within `header_timeout`;
- body: from the moment the headers are in, the whole body must arrive within `body_timeout`;
- a port that already holds `max_connections` connections closes a new one at once.

A deadline that passes closes the connection; the handler waiting for the body sees a
disconnect (the webhook answers nothing, which the API server reports as a failed call).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    """Every bound with its default; docs/webhook.md explains each."""

    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's headers (idle keep-alive included)."""
    body_timeout: float = 10.0
    """Seconds a request may take to send its body once the headers are in."""
    max_connections: int = 256
    """Connections one port holds at once; more are closed as soon as they are accepted."""
    keep_alive: int = 5
    """Seconds an idle keep-alive connection stays open (uvicorn's timeout_keep_alive)."""

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0 seconds")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.keep_alive < 1:
            raise ValueError("keep_alive must be at least 1 second")


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body deadlines and a connection bound.

    `limits` is set on a subclass per server (see `protocol_for`), since uvicorn builds the
    protocol from its class and its Config alone.
    """

    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning(
                "closing a new connection: this port already holds %d (--max-connections)",
                self.limits.max_connections,
            )
            self.transport.close()
            return
        self._arm("headers", self.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_the_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._follow_the_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow_the_request(self) -> None:
        """Move the deadline along with the request: headers, then body, then the next one."""
        reading = self.cycle is not None and not self.cycle.response_complete
        if not reading:
            # waiting for a request's headers (new connection, keep-alive, or partial headers)
            if self._waiting_for != "headers":
                self._arm("headers", self.limits.header_timeout)
        elif self.conn.their_state is h11.SEND_BODY:
            if self._waiting_for != "body":
                self._arm("body", self.limits.body_timeout)
        else:
            self._disarm()  # the request is in; the handler's own time is the app's business

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


def protocol_for(limits: ConnectionLimits) -> type[BoundedH11Protocol]:
    """The protocol class for one server, carrying its limits."""
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {"limits": limits})
