"""Numerous clients: connections counted from accept, the handshake deadline, each address's
share, the oldest idle connection closed for a new one, the probe port out of the clients'
way, and a client that does not read its answer.

A real injector (its three ports) on uvicorn over TLS, with clients from several loopback
addresses (127.0.0.2, 127.0.0.3, ...: one address each, like pods). Waits are generous; what is
asserted is which connections the server closed, and that fetches and probes are answered.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest
from support.connection_harness import (
    BIG_ANSWER,
    GENEROUS,
    closed_within,
    half_a_client_hello,
    injector,
    raw_connection,
    request,
    still_open,
    tls_connection,
)

from injector.operations.certs import KeyPair, generate_ca
from injector.serving.connections import ConnectionLimits

HELD = 300.0
"""A deadline no test waits for: only the bound under test can close a connection."""


@pytest.fixture
def ca() -> KeyPair:
    return generate_ca()


def fetch(url: str, ca: KeyPair) -> httpx.Response:
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    with httpx.Client(verify=context, timeout=30) as client:
        return client.get(url)


def probe(url: str) -> httpx.Response:
    with httpx.Client(timeout=30) as client:
        return client.get(url)


def test_idle_connections_holding_every_slot_lock_out_neither_fetches_nor_probes(
    tmp_path: Path, ca: KeyPair
) -> None:
    """Case 1 of issue 15: every broker slot held by idle TLS connections from four pods."""
    limits = ConnectionLimits(
        header_timeout=HELD, body_timeout=HELD, keep_alive=300, max_connections=8, per_address=2
    )
    with injector(tmp_path, ca, limits) as urls:
        held = [tls_connection(urls.broker, ca, f"127.0.0.{2 + i // 2}") for i in range(8)]
        fetches = [fetch(f"{urls.broker}/ping", ca).text for _ in range(5)]
        probes = [probe(f"{urls.probes}/{path}").status_code for path in ("healthz", "readyz")]
        metrics = probe(f"{urls.probes}/metrics")
        closed = sum(not still_open(sock) for sock in held)
        for sock in held:
            sock.close()

    assert fetches == ["pong"] * 5
    assert probes == [200, 200]
    assert metrics.status_code == 200 and "sakura_secrets" in metrics.text
    assert 1 <= closed <= 5, "each fetch takes the slot of one idle connection, no more"


def test_the_probe_port_has_a_bound_of_its_own_that_idle_clients_cannot_fill(
    tmp_path: Path, ca: KeyPair
) -> None:
    """16 connections, 4 per address, whatever --max-connections says for the TLS ports."""
    limits = ConnectionLimits(header_timeout=HELD, keep_alive=300, max_connections=1000)
    with injector(tmp_path, ca, limits) as urls:
        held = [raw_connection(urls.probes, f"127.0.0.{2 + i // 5}") for i in range(20)]
        time.sleep(0.5)  # every one accepted
        answered = probe(f"{urls.probes}/healthz").json()
        broker = fetch(f"{urls.broker}/ping", ca).text
        closed = [not still_open(sock) for sock in held]
        for sock in held:
            sock.close()

    assert answered == {"status": "ok"}
    assert broker == "pong"
    # the fifth of each address took its address's oldest slot, the probe the port's oldest
    assert sum(closed) == 5
    assert closed[0] and all(closed[i] for i in (5, 10, 15))


def test_silent_sockets_are_closed_at_the_handshake_deadline(tmp_path: Path, ca: KeyPair) -> None:
    """Case 2: no TLS at all, or half a ClientHello. asyncio alone would wait 60 s."""
    limits = ConnectionLimits(
        header_timeout=HELD, keep_alive=300, handshake_timeout=1.0, max_connections=64
    )
    hello = half_a_client_hello()
    with injector(tmp_path, ca, limits) as urls:
        silent = [raw_connection(urls.broker, f"127.0.0.{2 + i}") for i in range(4)]
        started = [raw_connection(urls.webhook, f"127.0.0.{2 + i}") for i in range(4)]
        for sock in started:
            sock.sendall(hello)
        closed = [closed_within(sock, 30) for sock in silent + started]
        for sock in silent + started:
            sock.close()
        answered = fetch(f"{urls.broker}/ping", ca).text

    assert closed == [True] * 8, "a connection outlived the handshake deadline"
    assert answered == "pong"


def test_connections_count_from_accept_and_the_oldest_idle_one_goes_first(
    tmp_path: Path, ca: KeyPair
) -> None:
    """Silent sockets take slots before any TLS; a new client gets the oldest idle one's."""
    limits = ConnectionLimits(header_timeout=HELD, handshake_timeout=HELD, max_connections=4)
    with injector(tmp_path, ca, limits) as urls:
        silent = []
        for i in range(4):
            silent.append(raw_connection(urls.broker, f"127.0.0.{2 + i}"))
            time.sleep(0.2)  # accepted in this order
        answered = fetch(f"{urls.broker}/ping", ca).text
        closed = [not still_open(sock) for sock in silent]
        for sock in silent:
            sock.close()

    assert answered == "pong"
    assert closed == [True, False, False, False], "the oldest silent socket gives its slot"


def test_the_oldest_idle_keep_alive_connection_is_closed_for_a_new_one(
    tmp_path: Path, ca: KeyPair
) -> None:
    """Idle since its last answer, not since it was opened: a used connection is younger."""
    limits = ConnectionLimits(header_timeout=HELD, keep_alive=300, max_connections=3)
    with injector(tmp_path, ca, limits) as urls:
        first, second, third = (tls_connection(urls.broker, ca, f"127.0.0.{i}") for i in (2, 3, 4))
        first.sendall(request("/ping"))
        first.settimeout(30)
        assert first.recv(65536).startswith(b"HTTP/1.1 200")
        answered = fetch(f"{urls.broker}/ping", ca).text
        closed = [not still_open(sock) for sock in (first, second, third)]
        for sock in (first, second, third):
            sock.close()

    assert answered == "pong"
    assert closed == [False, True, False]


def test_one_address_holds_no_more_than_its_share(tmp_path: Path, ca: KeyPair) -> None:
    limits = ConnectionLimits(header_timeout=HELD, keep_alive=300, max_connections=8, per_address=2)
    started = b"GET /ping HTTP/1.1\r\nHost: localhost\r\n"  # headers begun: busy, never evicted
    with injector(tmp_path, ca, limits) as urls:
        busy = [tls_connection(urls.broker, ca, "127.0.0.2") for _ in range(2)]
        for sock in busy:
            sock.sendall(started)
        # 127.0.0.1 has its own share; its handshake's round trips also let the server read
        # the two partial requests, sent before it connected
        elsewhere = fetch(f"{urls.broker}/ping", ca).text
        with pytest.raises((OSError, ssl.SSLError)):  # refused at accept, before TLS
            with tls_connection(urls.broker, ca, "127.0.0.2") as third:
                third.sendall(request("/ping"))
                third.settimeout(30)
                if not third.recv(65536):
                    raise ConnectionResetError("closed without an answer")
        idle = [tls_connection(urls.broker, ca, "127.0.0.3") for _ in range(2)]
        newest = tls_connection(urls.broker, ca, "127.0.0.3")
        newest.sendall(request("/ping"))
        newest.settimeout(30)
        newest_answer = newest.recv(65536)
        idle_closed = [not still_open(sock) for sock in idle]
        busy_open = [still_open(sock) for sock in busy]
        for sock in [*busy, *idle, newest]:
            sock.close()

    assert elsewhere == "pong"
    assert newest_answer.startswith(b"HTTP/1.1 200")
    assert idle_closed == [True, False], "at its share, an address's own oldest idle one goes"
    assert busy_open == [True, True]


def test_a_client_that_does_not_read_its_answer_is_dropped(tmp_path: Path, ca: KeyPair) -> None:
    """The answer stays in the server's buffers only until the send deadline."""
    limits = ConnectionLimits(header_timeout=HELD, keep_alive=300, send_timeout=1.0)
    with injector(tmp_path, ca, limits) as urls, tls_connection(urls.broker, ca) as sock:
        small = socket.SO_RCVBUF
        sock.setsockopt(socket.SOL_SOCKET, small, 64 * 1024)
        sock.sendall(request("/big"))
        time.sleep(5)  # not reading: the server has the rest of 32 MiB buffered for us
        received = 0
        sock.settimeout(GENEROUS)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(1024 * 1024):
                received += len(chunk)
        after = fetch(f"{urls.broker}/ping", ca).text

    assert received < BIG_ANSWER, "the whole answer was kept for a client that did not read"
    assert after == "pong"
