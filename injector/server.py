"""Run the application on uvicorn with the reloading TLS context (no plain-HTTP port at all)."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from injector.tls import ReloadingTLS


def build_server(
    app: ASGIApp,
    tls: ReloadingTLS,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    configure_logging: bool = True,
) -> uvicorn.Server:
    """A uvicorn server whose listening socket uses `tls.context` for every handshake.

    `configure_logging=False` leaves the process's logging alone (tests, benchmarks).
    """
    extra: dict[str, Any] = {} if configure_logging else {"log_config": None}

    def context_factory(_: uvicorn.Config, __: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return tls.context

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_context_factory=context_factory,
        log_level=log_level,
        access_log=False,  # probes every few seconds; admissions are logged by the app
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=20,
        **extra,
    )
    return uvicorn.Server(config)


def serve(app: ASGIApp, tls: ReloadingTLS, *, host: str, port: int, log_level: str) -> None:
    """Serve until SIGTERM/SIGINT; uvicorn drains open requests before exiting."""
    build_server(app, tls, host=host, port=port, log_level=log_level).run()


@contextlib.contextmanager
def serving_in_thread(
    app: ASGIApp, tls: ReloadingTLS, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Serve in a background thread (tests, benchmarks); yields `https://HOST:PORT`."""
    server = build_server(
        app, tls, host=host, port=port, log_level="warning", configure_logging=False
    )
    thread = threading.Thread(target=server.run, name="injector-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the injector server did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"https://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
