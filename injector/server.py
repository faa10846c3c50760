"""Run the injector's listeners on uvicorn, each with its reloading TLS context, in one event loop.

`serve` runs one uvicorn server per port (the webhook's and the broker's) in one loop, so they
share the process's caches, clients and Sakura budget; a signal stops them all at once, and
the shutdown hooks run after the last one has drained. There is no plain-HTTP port at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from injector.connections import ConnectionLimits, protocol_for
from injector.tls import ReloadingTLS

Shutdown = Callable[[], Awaitable[None]]
"""Closes a resource (e.g. the broker's Sakura connections) once every listener has stopped."""


@dataclass(frozen=True)
class Listener:
    """One TLS port: what it serves and with which certificate (and client CA)."""

    name: str
    """`webhook` or `broker`, for logs and error messages."""
    app: ASGIApp
    tls: ReloadingTLS
    port: int


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve_listeners`, which stops every port."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_server(
    listener: Listener,
    *,
    host: str,
    limits: ConnectionLimits = ConnectionLimits(),  # noqa: B008 (frozen, shared safely)
    log_level: str = "info",
    configure_logging: bool = True,
) -> uvicorn.Server:
    """A uvicorn server whose listening socket uses `listener.tls.context` for every handshake.

    `configure_logging=False` leaves the process's logging alone (tests, benchmarks).
    """
    extra: dict[str, Any] = {} if configure_logging else {"log_config": None}

    def context_factory(_: uvicorn.Config, __: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return listener.tls.context

    config = uvicorn.Config(
        listener.app,
        host=host,
        port=listener.port,
        http=protocol_for(limits),
        ssl_context_factory=context_factory,
        log_level=log_level,
        access_log=False,  # probes every few seconds; admissions are logged by the app
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=limits.keep_alive,
        timeout_graceful_shutdown=20,
        **extra,
    )
    return _Server(config)


async def serve_listeners(
    servers: Sequence[uvicorn.Server], shutdown: Sequence[Shutdown] = ()
) -> None:
    """Serve until a signal (main thread) or until any server stops; then stop them all.

    A second SIGINT/SIGTERM skips the graceful drain.
    """
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

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
) -> None:
    """Serve every listener until SIGTERM/SIGINT; uvicorn drains open requests before exiting."""
    servers = [
        build_server(item, host=host, limits=limits, log_level=log_level) for item in listeners
    ]
    asyncio.run(serve_listeners(servers, shutdown))


@contextlib.contextmanager
def serving_in_thread(
    listeners: Sequence[Listener],
    *,
    host: str = "127.0.0.1",
    limits: ConnectionLimits = ConnectionLimits(),  # noqa: B008
    shutdown: Sequence[Shutdown] = (),
) -> Iterator[list[str]]:
    """Serve in a background thread (tests, benchmarks); yields `https://HOST:PORT` per listener."""
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
        yield [f"https://{host}:{port}" for port in ports]
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(timeout=10)
