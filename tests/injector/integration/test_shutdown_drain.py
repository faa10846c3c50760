"""SIGTERM first makes the replica not ready and keeps answering for the drain delay, then
closes the ports: a review the API server still sends to a deleted replica is not refused.

The real servers in this process's main thread, the real signal (the handler must be the
loop's, or the signal would end the test run: checked first).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import AsyncIterator

import httpx
from support.admission_harness import RecordingCheck, settings

from injector.serving.app import create_apps
from injector.serving.server import Drain, Listener, build_server, serve_listeners


@contextlib.asynccontextmanager
async def probes(drain: Drain) -> AsyncIterator[tuple[str, asyncio.Task[None]]]:
    """The probe port served by `serve_listeners` with `drain`: its URL and the serving task."""
    assert threading.current_thread() is threading.main_thread()
    apps = create_apps(settings(), check=RecordingCheck(), readiness=[drain.readiness])
    server = build_server(
        Listener("probes", apps.probes, None, 0), host="127.0.0.1", configure_logging=False
    )
    serving = asyncio.create_task(serve_listeners([server], drain=drain))
    loop = asyncio.get_running_loop()
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", serving
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)


async def test_sigterm_fails_readiness_keeps_serving_for_the_delay_then_closes() -> None:
    async with probes(Drain(delay=1.5)) as (url, serving):
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/readyz")).status_code == 200
            os.kill(os.getpid(), signal.SIGTERM)
            signalled = time.monotonic()
            await asyncio.sleep(0.2)
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert "shutting down" in ready.json()["reasons"][0]
            assert (await client.get("/healthz")).status_code == 200  # the port still answers
            assert not serving.done()
        await asyncio.wait_for(serving, 10)
        assert time.monotonic() - signalled >= 1.5  # closed after the delay, not before


async def test_without_a_delay_the_signal_closes_the_ports_at_once() -> None:
    drain = Drain(delay=0)
    async with probes(drain) as (_, serving):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, 5)
        assert drain.readiness() is None  # never draining: no delay asked


async def test_a_second_signal_closes_the_ports_without_waiting_out_the_delay() -> None:
    drain = Drain(delay=30)
    async with probes(drain) as (_, serving):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.1)
        assert drain.started and not serving.done()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, 5)
