"""Case 3 of issue 15 over TLS: a small request cannot buy an unbounded answer.

Values made of control characters take six bytes each in JSON; a request for 22 such values of
64 KiB would be an 8.6 MiB answer. The broker refuses it with a final 422, and answers that
clients do not read hold at most a namespace's share of the process's answer budget: past it a
request gets a 503 with Retry-After at once, while another namespace is still served.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.broker_world import VALUES, VAULT, BrokerServer, World, fetch, serve_broker
from support.emulator import EmulatorHandle

from contract.broker import MAX_ANSWER_BYTES
from injector.broker.tuning import BrokerTuning

pytestmark = pytest.mark.cluster

SETTINGS = BrokerTuning(rate_burst=100)  # 22 first reads at once: no wait for the limiter
CONTROL = "\x01" * 65536  # Sakura's largest value, 384 KiB in JSON
VERSIONS = range(2, 24)  # "extra" keeps its version 1; 2..23 are CONTROL


def control_versions(emulator: EmulatorHandle) -> None:
    for _ in VERSIONS:
        emulator.store.put(VAULT, "extra", CONTROL)


def wanted(versions: range) -> list[dict[str, object]]:
    return [{"name": "extra", "version": v} for v in versions]


async def test_an_answer_over_the_bound_is_a_final_422_naming_it(
    world: World, emulator: EmulatorHandle, tls_files: tuple[Path, Path, bytes]
) -> None:
    control_versions(emulator)
    token = world.token(world.ns_a, "app")
    with serve_broker(emulator.url, tls_files, SETTINGS) as broker:
        refused = await fetch(broker, token, wanted(VERSIONS))
        assert refused.status_code == 422, refused.text[:200]
        assert refused.json()["reason"] == "answer_too_large"
        assert refused.json()["error"].startswith(
            f"the answer for these 22 secrets would be larger than {MAX_ANSWER_BYTES} bytes "
            "(8 MiB), the broker's bound on one answer"
        )
        assert "split the pod's secrets between pods" in refused.json()["error"]
        assert len(refused.content) < 1024
        fits = await fetch(broker, token, wanted(range(2, 23)))  # 21 values: 7.9 MiB
        assert fits.status_code == 200
        assert len(fits.content) <= MAX_ANSWER_BYTES
        assert [s["value"] for s in fits.json()["secrets"]] == [CONTROL] * 21


@contextlib.contextmanager
def stalled_clients() -> Iterator[list[ssl.SSLSocket]]:
    held: list[ssl.SSLSocket] = []
    try:
        yield held
    finally:
        for sock in held:
            sock.close()


def send_unread(server: BrokerServer, token: str, body: bytes) -> tuple[ssl.SSLSocket, bytes]:
    """POST over TLS and read only the status line's first bytes (a tiny receive window)."""
    url = urlsplit(server.url)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(30)
    raw.connect((url.hostname, url.port))
    tls = server.ssl_context.wrap_socket(raw, server_hostname="localhost")
    head = (
        f"POST /v1/secrets HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    tls.sendall(head.encode() + body)
    return tls, tls.recv(12)


def rest_of_head(sock: ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    return data


async def test_unread_answers_hold_a_share_of_the_budget_then_a_fast_503(
    world: World, emulator: EmulatorHandle, tls_files: tuple[Path, Path, bytes]
) -> None:
    control_versions(emulator)
    token = world.token(world.ns_a, "app")
    other = world.token(world.ns_b, "app")
    body = json.dumps({"vault_id": VAULT, "secrets": wanted(range(2, 23))}).encode()
    with serve_broker(emulator.url, tls_files, SETTINGS) as broker, stalled_clients() as held:
        statuses = []
        for _ in range(8):  # each holds what the kernel's buffers did not take (>= 4 MiB)
            sock, status = send_unread(broker, token, body)
            held.append(sock)
            statuses.append(status)
            if status != b"HTTP/1.1 200":
                break
        assert statuses[-1] == b"HTTP/1.1 503", statuses
        assert b"200" in statuses[0]
        head = rest_of_head(held[-1]).lower()
        assert b"retry-after: 2\r\n" in head
        # another namespace's share is its own: served while namespace A's answers wait
        served = await fetch(broker, other, [{"name": "other", "version": None}])
        assert served.status_code == 200, served.text
        assert served.json()["secrets"][0]["value"] == VALUES["other"][0]
        refused = await fetch(broker, token, wanted(range(2, 23)))  # as large as the last
        assert refused.status_code == 503
        assert refused.json()["error"].startswith(
            "the answer is not sent now: this namespace's answers already being sent hold "
        )
        assert refused.headers["retry-after"] == "2"
        for sock in held:
            sock.close()
        # the clients went away: what their answers held is given back
        deadline = time.monotonic() + 20
        while (again := await fetch(broker, token, wanted(range(2, 4)))).status_code != 200:
            assert time.monotonic() < deadline, again.text
            time.sleep(0.2)
