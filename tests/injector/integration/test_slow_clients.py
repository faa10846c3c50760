"""Slow clients: header and body deadlines (numerous clients: test_numerous_clients.py).

A real injector (its three ports) on uvicorn over TLS with small deadlines. Trickling clients send
a byte more often than the deadline, so only a deadline on the whole headers (or body) closes
them, never an idle timeout. No upper bound on wall-clock time: waits are generous, and what
is asserted is that each slow connection is closed by the server and a normal review is
answered while they trickle.
"""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

import httpx
import pytest
from support.connection_harness import GENEROUS, closed_by_server, injector, tls_connection
from support.webhook_harness import admission_review, pod

from injector.operations.certs import KeyPair, generate_ca
from injector.serving.connections import ConnectionLimits

TRICKLE = 0.05
"""Seconds between two bytes of a trickling client: far less than any deadline below."""


@pytest.fixture
def ca() -> KeyPair:
    return generate_ca()


def trickle_all(
    url: str, ca: KeyPair, payloads: list[bytes]
) -> tuple[list[threading.Thread], list[bool]]:
    results: list[bool] = [False] * len(payloads)

    def run(index: int, payload: bytes) -> None:
        with tls_connection(url, ca) as sock:
            results[index] = closed_by_server(sock, payload, TRICKLE)

    threads = [
        threading.Thread(target=run, args=(i, p), daemon=True) for i, p in enumerate(payloads)
    ]
    for thread in threads:
        thread.start()
    return threads, results


HEADERS_NEVER_DONE = b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 4000
BODY_NEVER_DONE = (
    b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100000\r\n\r\n" + b'{"apiVersion": "' + b"a" * 4000
)


def test_trickling_connections_are_closed_and_a_normal_review_is_answered(
    tmp_path: Path, ca: KeyPair
) -> None:
    limits = ConnectionLimits(
        header_timeout=1.0, body_timeout=1.0, max_connections=64, per_address=64
    )
    with injector(tmp_path, ca, limits) as ports:
        payloads = [HEADERS_NEVER_DONE] * 6 + [BODY_NEVER_DONE] * 6 + [b""] * 4
        threads, closed = trickle_all(ports.webhook, ca, payloads)
        threads += trickle_all(ports.broker, ca, [HEADERS_NEVER_DONE, BODY_NEVER_DONE])[0]
        context = ssl.create_default_context(cadata=ca.cert_pem.decode())
        with httpx.Client(verify=context, timeout=30) as client:
            answer = client.post(
                f"{ports.webhook}/mutate", content=admission_review(pod(), uid="normal")
            )
            health = client.get(f"{ports.probes}/healthz")
        for thread in threads:
            thread.join(GENEROUS + 10)

    assert answer.status_code == 200
    assert answer.json()["response"]["uid"] == "normal"
    assert health.json() == {"status": "ok"}
    assert closed == [True] * len(payloads), "some slow connections were never closed"


def test_a_keep_alive_connection_cannot_trickle_its_next_request(
    tmp_path: Path, ca: KeyPair
) -> None:
    """After one answered request the deadline starts again for the next request's headers."""
    limits = ConnectionLimits(header_timeout=1.0, body_timeout=1.0, keep_alive=300)
    review = admission_review(pod(), uid="first")
    request = (
        b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(review)}\r\n\r\n".encode()
        + review
    )
    with injector(tmp_path, ca, limits) as ports, tls_connection(ports.webhook, ca) as sock:
        sock.sendall(request)
        sock.settimeout(30)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        assert closed_by_server(sock, HEADERS_NEVER_DONE, TRICKLE)
