"""What the slow- and numerous-client tests share: an injector on its three ports (real uvicorn,
real TLS) with small bounds, and raw clients that can choose their source address on the
loopback (127.0.0.0/8 is all local on Linux) and tell whether the server closed them."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from injector.operations.certs import KeyPair
from injector.serving.app import create_apps
from injector.serving.connections import ConnectionLimits
from injector.serving.server import Listener, serving_in_thread
from support.webhook_harness import RecordingCheck, loopback_injector

GENEROUS = 60.0
"""Seconds a slow connection may stay open before the test calls it never closed."""
BIG_ANSWER = 32 * 1024 * 1024
"""Bytes of `GET /big`: far more than the kernel's socket buffers on the loopback hold."""


@dataclass(frozen=True)
class Urls:
    webhook: str
    broker: str
    probes: str


async def _ping(_: Request) -> Response:
    return PlainTextResponse("pong")


async def _big(_: Request) -> Response:
    return Response(b"x" * BIG_ANSWER, media_type="application/octet-stream")


TEST_ROUTES = [Route("/ping", _ping, methods=["GET"]), Route("/big", _big, methods=["GET"])]
"""A fetch that costs nothing, and an answer too big for a client that does not read it."""


@contextlib.contextmanager
def injector(tmp_path: Path, ca: KeyPair, limits: ConnectionLimits) -> Iterator[Urls]:
    settings, tls = loopback_injector(tmp_path, ca)
    apps = create_apps(settings, check=RecordingCheck(), routes=TEST_ROUTES)
    listeners = [
        Listener("webhook", apps.webhook, tls, 0),
        Listener("broker", apps.broker, tls, 0),
        Listener("probes", apps.probes, None, 0),
    ]
    with serving_in_thread(listeners, limits=limits) as [webhook, broker, probes]:
        yield Urls(webhook, broker, probes)


def raw_connection(url: str, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection from `source` (any 127.x.y.z) that has sent nothing yet."""
    host, port = url.split("://")[1].split(":")
    return socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))


def tls_connection(url: str, ca: KeyPair, source: str = "127.0.0.1") -> ssl.SSLSocket:
    """A connection whose handshake is complete (TLS 1.2: the server has finished its side)."""
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context.wrap_socket(raw_connection(url, source), server_hostname="localhost")


def half_a_client_hello() -> bytes:
    """The first half of a real TLS ClientHello: a handshake started and never finished."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    return hello[: len(hello) // 2]


def closed_by_server(sock: socket.socket, payload: bytes, every: float) -> bool:
    """Send `payload` a byte per `every` seconds (then nothing); True once the server closes."""
    return closed_within(sock, GENEROUS, payload, every)


def closed_within(
    sock: socket.socket, seconds: float, payload: bytes = b"", every: float = 0.1
) -> bool:
    """`closed_by_server` that gives up after `seconds`."""
    sock.settimeout(every)
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        try:
            if sent < len(payload):
                sock.sendall(payload[sent : sent + 1])
                sent += 1
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:  # reset, broken pipe, TLS alert: closed all the same
            return True
    return False


def still_open(sock: socket.socket) -> bool:
    """True when the server has not closed `sock` (nothing to read, no EOF, no reset)."""
    return not closed_within(sock, 0.2)


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
