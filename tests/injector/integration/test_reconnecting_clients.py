"""What a client that reconnects in a loop, or opens sockets and says nothing, costs the server.

A real injector (its three ports) on uvicorn over TLS, in this process: an address's own
connections in their handshake are not closed for its next one, an address opens connections
no faster than its rate, and a socket holds no TLS state until its client speaks (asyncio's own
TLS protocol allocates 256 KiB per connection; tracemalloc sees what the server holds).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.connection_harness import (
    closed_within,
    half_a_client_hello,
    injector,
    raw_connection,
    still_open,
    tls_connection,
)

from injector.operations.certs import KeyPair, generate_ca
from injector.serving.address_filter import BLOCK_SECONDS
from injector.serving.connections import ConnectionLimits
from injector.serving.protocol import AcceptGate

HELD = 300.0
"""A deadline no test waits for: only the bound under test can close a connection."""
MIB = 1024 * 1024


@pytest.fixture
def ca() -> KeyPair:
    return generate_ca()


def fetch(url: str, ca: KeyPair) -> str:
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    with httpx.Client(verify=context, timeout=30) as client:
        return client.get(url).text


def test_an_address_at_its_share_refuses_its_newcomer_rather_than_close_its_handshakes(
    tmp_path: Path, ca: KeyPair
) -> None:
    """Closing one of them would only start the same handshake again, at the server's cost."""
    limits = ConnectionLimits(handshake_timeout=HELD, max_connections=64, per_address=2)
    with injector(tmp_path, ca, limits) as urls:
        first, second = (raw_connection(urls.broker, "127.0.0.2") for _ in range(2))
        third = raw_connection(urls.broker, "127.0.0.2")
        third_closed = closed_within(third, 30)
        open_ones = [still_open(first), still_open(second)]
        answered = fetch(f"{urls.broker}/ping", ca)
        for sock in (first, second, third):
            sock.close()

    assert third_closed, "the newcomer was kept"
    assert open_ones == [True, True], "a connection in its handshake was closed for its own"
    assert answered == "pong"


def test_an_address_opens_no_more_connections_than_its_burst_and_rate(
    tmp_path: Path, ca: KeyPair
) -> None:
    """The rest are refused at accept, before any TLS: a reconnect loop buys no handshakes."""
    limits = ConnectionLimits(max_connections=64, per_address_rate=1)  # a burst of 2
    attempts = 12
    with injector(tmp_path, ca, limits) as urls:
        started = time.monotonic()
        handshakes = 0
        for _ in range(attempts):
            try:
                with tls_connection(urls.broker, ca, "127.0.0.3"):
                    handshakes += 1
            except (OSError, ssl.SSLError):
                pass
        elapsed = time.monotonic() - started
        elsewhere = fetch(f"{urls.broker}/ping", ca)

    assert elsewhere == "pong", "another address has its own rate"
    allowed = 2 + int(elapsed * 1) + 1
    assert handshakes <= min(allowed, attempts - 1), (
        f"{handshakes} of {attempts} connections in {elapsed:.1f} s got a handshake"
    )
    assert handshakes >= 2


def test_a_connection_over_its_address_rate_is_reset_at_accept(
    tmp_path: Path, ca: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused before asyncio makes a transport or a protocol for it, with a RST: a client
    reconnecting hundreds of times a second costs the loop an accept and a close each."""
    made: list[str] = []
    connection_made = AcceptGate.connection_made

    def spy(gate: AcceptGate, transport: asyncio.BaseTransport) -> None:
        made.append(str(transport.get_extra_info("peername")[0]))
        connection_made(gate, transport)

    monkeypatch.setattr(AcceptGate, "connection_made", spy)
    limits = ConnectionLimits(max_connections=64, per_address_rate=1)  # a burst of 2
    attempts = 12
    outcomes = []
    with injector(tmp_path, ca, limits) as urls:
        started = time.monotonic()
        for _ in range(attempts):
            try:
                sock = raw_connection(urls.broker, "127.0.0.4")
            except ConnectionResetError:  # the RST came before connect() returned (a busy host)
                outcomes.append("reset")
                continue
            with sock:
                sock.settimeout(0.5)
                try:
                    outcomes.append("data" if sock.recv(1) else "closed")
                except TimeoutError:
                    outcomes.append("open")
                except ConnectionResetError:
                    outcomes.append("reset")
        elapsed = time.monotonic() - started
        elsewhere = fetch(f"{urls.broker}/ping", ca)

    assert elsewhere == "pong"
    allowed = 2 + int(elapsed * 1) + 1
    assert "closed" not in outcomes, f"a refused connection was closed, not reset: {outcomes}"
    assert outcomes.count("reset") >= attempts - allowed, outcomes
    assert made.count("127.0.0.4") == outcomes.count("open"), (
        f"{made.count('127.0.0.4')} gates were made for {outcomes.count('open')} admitted ones"
    )


def answered_within(url: str, source: str, seconds: float) -> bool:
    """Whether the kernel completes a connect from `source` within `seconds` (a dropped SYN
    is sent again only after a second)."""
    host, port = url.split("://")[1].split(":")
    try:
        socket.create_connection((host, int(port)), seconds, source_address=(source, 0)).close()
    except TimeoutError:
        return False
    return True


def test_an_address_refused_for_its_rate_gets_no_answer_from_the_kernel_for_a_while(
    tmp_path: Path, ca: KeyPair
) -> None:
    """Its reconnect loop then waits on its own SYN timeouts instead of making the kernel and
    the loop complete and reset thousands of connections a second; other addresses are
    answered as usual, and the address itself again after BLOCK_SECONDS."""
    limits = ConnectionLimits(max_connections=64, per_address_rate=1)  # a burst of 2
    with injector(tmp_path, ca, limits) as urls:
        held = [raw_connection(urls.broker, "127.0.0.7") for _ in range(2)]  # its burst
        refused = raw_connection(urls.broker, "127.0.0.7")
        refused.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            refused.recv(1)  # the reset at accept, and with it the block
        refused_at = time.monotonic()
        blocked = answered_within(urls.broker, "127.0.0.7", 0.3)
        others = answered_within(urls.broker, "127.0.0.8", 0.3)
        time.sleep(max(0.0, refused_at + BLOCK_SECONDS + 0.2 - time.monotonic()))
        later = answered_within(urls.broker, "127.0.0.7", 0.3)
        elsewhere = fetch(f"{urls.broker}/ping", ca)
        for sock in (*held, refused):
            sock.close()

    assert (blocked, others, later) == (False, True, True)
    assert elsewhere == "pong"


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def held_bytes(
    url: str, ca: KeyPair, source: str, payload: bytes = b""
) -> tuple[int, list[socket.socket]]:
    """100 connections from four addresses `source`.0-3, each sending `payload`: what the
    server holds for them once it has accepted them (a request after them is answered only
    once the loop has run their accepts), and the sockets."""
    before = tracemalloc.get_traced_memory()[0]
    sockets = [raw_connection(url, f"{source}.{i % 4}") for i in range(100)]
    for sock in sockets:
        if payload:
            sock.sendall(payload)
    fetch(f"{url}/healthz", ca)
    return tracemalloc.get_traced_memory()[0] - before, sockets


def test_a_silent_socket_holds_no_tls_state_and_a_started_handshake_a_small_buffer(
    tmp_path: Path, ca: KeyPair, traced: None
) -> None:
    """asyncio's TLS protocol would hold 256 KiB for each: 100 silent sockets, 25 MiB."""
    limits = ConnectionLimits(handshake_timeout=HELD, max_connections=256)
    hello = half_a_client_hello()
    with injector(tmp_path, ca, limits) as urls:
        assert fetch(f"{urls.broker}/ping", ca) == "pong"  # the server's own first allocations
        silent_bytes, silent = held_bytes(urls.broker, ca, "127.0.1")
        started_bytes, started = held_bytes(urls.webhook, ca, "127.0.2", hello)
        open_ones = sum(still_open(sock) for sock in silent[-4:] + started[-4:])
        for sock in silent + started:
            sock.close()

    assert open_ones == 8, "the sockets were refused, not held"
    assert silent_bytes < 4 * MIB, f"100 silent sockets hold {silent_bytes / MIB:.1f} MiB"
    assert started_bytes < 10 * MIB, f"100 started handshakes hold {started_bytes / MIB:.1f} MiB"
