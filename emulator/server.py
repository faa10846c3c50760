"""Serve any ASGI app with uvicorn on a background thread: for tests, demos and benchmarks.

Binding the socket ourselves gives a free port (port=0) known before the server starts, so
the caller gets a ready URL and never races the server's startup.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from emulator.app import Emulator, EmulatorConfig


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for uvicorn. Its proto is IPPROTO_TCP, not 0: asyncio turns Nagle off
    (TCP_NODELAY) only on connections whose socket says TCP (`base_events._set_nodelay`), and
    with Nagle on, an answer written in pieces (headers, body) waits for the client's delayed
    ACK, about 40 ms a request, which the benchmarks would count as the client's time."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


@contextmanager
def run_in_thread(
    app_or_config: ASGIApp | EmulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    startup_timeout: float = 10.0,
) -> Iterator[str]:
    """Start serving, yield the base URL (e.g. "http://127.0.0.1:PORT"), stop on exit.

    An EmulatorConfig is turned into an Emulator; to reach its store and knobs, build the
    Emulator yourself and pass it (it is an ASGI app).
    """
    app = Emulator(app_or_config) if isinstance(app_or_config, EmulatorConfig) else app_or_config
    sock = listening_socket(host, port)
    family = sock.family
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host=host,
        port=bound_port,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="auto",
    )
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)

    thread = threading.Thread(target=serve, name=f"uvicorn-{bound_port}", daemon=True)
    thread.start()
    try:
        give_up = time.monotonic() + startup_timeout
        while not server.started:
            if errors or not thread.is_alive():
                raise RuntimeError(f"the server on {host}:{bound_port} failed to start") from (
                    errors[0] if errors else None
                )
            if time.monotonic() > give_up:
                raise RuntimeError(f"the server on {host}:{bound_port} did not start in time")
            time.sleep(0.01)
        scheme = "https" if ssl_certfile else "http"
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        yield f"{scheme}://{shown}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
