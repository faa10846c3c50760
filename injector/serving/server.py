"""Run the injector's listeners on uvicorn, each with its reloading TLS context, in one event loop.

`serve` runs one uvicorn server per port (the webhook's, the broker's and the probes') in one
loop, so they share the process's caches, clients and Sakura budget; a signal stops them all
at once, and the shutdown hooks run after the last one has drained. The probe port is the only
plain-HTTP one: it serves `/healthz`, `/readyz` and `/metrics` and has its own small
connection bound (`probe_limits`), so clients of the TLS ports cannot crowd the kubelet out.

Every port counts its connections from accept and runs TLS itself (`injector.serving.protocol`),
listening on sockets that reset an over-rate address's connections at accept
(`injector.serving.listening`); at start `serve` raises the process's descriptor limit to what
its ports may hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import STARTUP_FAILURE

from injector.serving.connections import ConnectionLimits
from injector.serving.errors import DescriptorLimitError
from injector.serving.listening import listening_sockets
from injector.serving.protocol import AcceptGate, gate_for
from injector.serving.tls import ReloadingTLS

log = logging.getLogger(__name__)

PROBE_CONNECTIONS = 16
"""Connections the probe port holds at once: the kubelet's probes and a scraper or two."""
PROBE_CONNECTIONS_PER_ADDRESS = 4
"""... of which one address (a node's kubelet, a Prometheus pod) holds at most this many."""
SPARE_DESCRIPTORS = 256
"""Descriptors beyond the ports' connections: Sakura and Kubernetes clients, files, the loop."""
BACKLOG = 1024
"""Connections the kernel queues for a TLS port until the loop accepts them. asyncio accepts up
to this many at once (asyncio/selector_events.py `_accept_connection`), each a descriptor until
the table has refused it and the loop has closed it, so a flood briefly holds this many beyond
the port's bound; a smaller queue drops a wave of reconnections' SYNs, new clients' with them
(a second's retransmit each). uvicorn's default is 2048."""
PROBE_BACKLOG = 64
"""The same for the probe port: the kubelet connects a few times per probe period."""

Shutdown = Callable[[], Awaitable[None]]
"""Closes a resource (e.g. the broker's Sakura connections) once every listener has stopped."""


@dataclass(frozen=True)
class Listener:
    """One port: what it serves and with which certificate (and client CA)."""

    name: str
    """`webhook`, `broker` or `probes`, for logs and error messages."""
    app: ASGIApp
    tls: ReloadingTLS | None
    """None: plain HTTP, for the probe port only; it gets `probe_limits`."""
    port: int


def probe_limits(limits: ConnectionLimits) -> ConnectionLimits:
    """The probe port's bounds: the same deadlines, its own small connection bound."""
    return dataclasses.replace(
        limits, max_connections=PROBE_CONNECTIONS, per_address=PROBE_CONNECTIONS_PER_ADDRESS
    )


def descriptors_needed(listeners: Sequence[Listener], limits: ConnectionLimits) -> int:
    """Descriptors the process may need with every port full and its backlog just accepted."""
    ports = sum(
        limits.max_connections + BACKLOG
        if item.tls is not None
        else PROBE_CONNECTIONS + PROBE_BACKLOG
        for item in listeners
    )
    return ports + len(listeners) + SPARE_DESCRIPTORS


def raise_descriptor_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; the new soft limit.

    Raises DescriptorLimitError when even that is below `needed`: a port that runs out of
    descriptors fails every accept, its probes included, so `serve` refuses to start instead.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, needed) if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, error)
        else:
            log.info("raised the open-files limit (nofile) from %d to %d", soft, target)
            soft = target
    if soft < needed:
        raise DescriptorLimitError(
            f"the open-files limit (nofile) is {soft}, but the ports may hold {needed} "
            "descriptors with --max-connections connections each: lower --max-connections "
            "or raise the container's nofile limit"
        )
    return soft


@dataclass
class Drain:
    """The pause between SIGTERM and closing the ports, so that no admission is refused.

    When a replica is deleted, the API server may still send it a review (an open connection,
    an endpoint list not yet updated) in the moments after the signal; with `failurePolicy:
    Fail` a closed port refuses that pod. During `delay` the replica answers everything as
    before, and `/readyz` fails, so no new traffic is sent its way; then the ports drain and
    close. A second signal skips the wait (as a third skips uvicorn's drain).
    """

    delay: float = 0.0
    started: bool = False

    def readiness(self) -> str | None:
        """For /readyz: not ready from the first signal on."""
        return "shutting down: the ports close after the drain delay" if self.started else None


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve_listeners`, which stops every port, and
    listens on `ScreeningSocket`s, which refuse an over-rate address at accept."""

    def __init__(self, config: uvicorn.Config, gate: type[AcceptGate]) -> None:
        super().__init__(config)
        self.gate = gate

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is not None:
            await super().startup(sockets=sockets)
            return
        config = self.config
        try:
            screening = listening_sockets(config.host, config.port, self.gate)
        except OSError as error:  # as uvicorn does when it cannot bind
            log.error("cannot listen on %s:%d: %s", config.host, config.port, error)
            sys.exit(STARTUP_FAILURE)
        log.info("listening on %s:%d", config.host, screening[0].getsockname()[1])
        await super().startup(sockets=list(screening))


def build_server(
    listener: Listener,
    *,
    host: str,
    limits: ConnectionLimits = ConnectionLimits(),  # noqa: B008 (frozen, shared safely)
    log_level: str = "info",
    configure_logging: bool = True,
) -> uvicorn.Server:
    """A uvicorn server whose connections use `listener.tls.context` for every handshake.

    uvicorn itself sees a plain port: `injector.serving.protocol` runs the TLS, from accept.
    `configure_logging=False` leaves the process's logging alone (tests, benchmarks).
    """
    extra: dict[str, Any] = {} if configure_logging else {"log_config": None}
    if listener.tls is None:
        limits = probe_limits(limits)
    gate = gate_for(limits, listener.tls.context if listener.tls is not None else None)
    config = uvicorn.Config(
        listener.app,
        host=host,
        port=listener.port,
        http=gate,
        log_level=log_level,
        access_log=False,  # probes every few seconds; admissions are logged by the app
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=limits.keep_alive,
        timeout_graceful_shutdown=20,
        backlog=BACKLOG if listener.tls is not None else PROBE_BACKLOG,
        **extra,
    )
    return _Server(config, gate)


async def serve_listeners(
    servers: Sequence[uvicorn.Server],
    shutdown: Sequence[Shutdown] = (),
    drain: Drain | None = None,
) -> None:
    """Serve until a signal (main thread) or until any server stops; then stop them all.

    With a `drain`, the first SIGINT/SIGTERM starts its delay and the ports close after it; the
    next signal closes them at once, and the one after that skips uvicorn's graceful drain.
    """
    loop = asyncio.get_running_loop()

    def close_ports() -> None:
        for server in servers:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

    def stop() -> None:
        if drain is None or drain.delay <= 0 or drain.started:
            close_ports()
            return
        drain.started = True
        log.info("signal received: not ready; the ports close in %gs", drain.delay)
        loop.call_later(drain.delay, lambda: None if servers[0].should_exit else close_ports())

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)

    async def run(server: uvicorn.Server) -> None:
        try:
            await server.serve()
        finally:
            for other in servers:  # one port down (or failed to bind): the process stops
                other.should_exit = True

    try:
        await asyncio.gather(*(run(server) for server in servers))
    finally:
        for close in shutdown:
            await close()


def serve(
    listeners: Sequence[Listener],
    *,
    host: str,
    limits: ConnectionLimits,
    log_level: str,
    shutdown: Sequence[Shutdown] = (),
    drain: Drain | None = None,
) -> None:
    """Serve every listener until SIGTERM/SIGINT (and `drain`'s delay); uvicorn drains open
    requests before exiting.

    Raises DescriptorLimitError (before listening) when the process may not hold every port's
    connections.
    """
    raise_descriptor_limit(descriptors_needed(listeners, limits))
    servers = [  # uvicorn's own lines go through the process's handler (--log-format)
        build_server(item, host=host, limits=limits, log_level=log_level, configure_logging=False)
        for item in listeners
    ]
    asyncio.run(serve_listeners(servers, shutdown, drain))


@contextlib.contextmanager
def serving_in_thread(
    listeners: Sequence[Listener],
    *,
    host: str = "127.0.0.1",
    limits: ConnectionLimits = ConnectionLimits(),  # noqa: B008
    shutdown: Sequence[Shutdown] = (),
) -> Iterator[list[str]]:
    """Serve in a background thread (tests, benchmarks); yields `SCHEME://HOST:PORT` per port."""
    servers = [
        build_server(item, host=host, limits=limits, log_level="warning", configure_logging=False)
        for item in listeners
    ]
    thread = threading.Thread(
        target=lambda: asyncio.run(serve_listeners(servers, shutdown)),
        name="injector-server",
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not all(server.started for server in servers):
        if not thread.is_alive() or time.monotonic() > deadline:
            names = ", ".join(f"{item.name} on {host}:{item.port}" for item in listeners)
            raise RuntimeError(f"the injector server did not start ({names})")
        time.sleep(0.01)
    ports = [server.servers[0].sockets[0].getsockname()[1] for server in servers]
    try:
        yield [
            f"{'http' if item.tls is None else 'https'}://{host}:{port}"
            for item, port in zip(listeners, ports, strict=True)
        ]
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(timeout=10)
