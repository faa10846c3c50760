"""A client that sends bodies as fast as the server reads them: its address's receive budget.

A real injector (its three ports) on uvicorn over TLS, in this process, with a small budget.
Past its burst, an address's connections are not read (nor decrypted, nor parsed) until its
budget has refilled, so a flood of large bodies costs its sender time instead of costing the
server CPU; another address is read as usual meanwhile. Only lower bounds on wall-clock time
are asserted: a slow machine makes the flood slower still.
"""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest
from support.connection_harness import injector
from support.webhook_harness import admission_review, pod

from injector.operations.certs import KeyPair, generate_ca
from injector.serving.connections import ConnectionLimits

KIB = 1024
BUDGET = 128 * KIB
"""Bytes a second one address may send; its burst is two seconds' worth."""
FLOOD = b'{"not": "a review", "filler": "' + b"x" * (1024 * KIB) + b'"}'
"""1 MiB that the webhook refuses with a 400 once it has read it all."""


@pytest.fixture
def ca() -> KeyPair:
    return generate_ca()


def test_an_address_over_its_receive_budget_is_not_read_until_it_refills(
    tmp_path: Path, ca: KeyPair
) -> None:
    limits = ConnectionLimits(per_address_bytes=BUDGET, body_timeout=120)
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    finished: dict[str, tuple[float, int]] = {}

    def post(name: str, url: str, body: bytes, source: str) -> None:
        transport = httpx.HTTPTransport(verify=context, local_address=source)
        with httpx.Client(transport=transport, timeout=120) as client:
            status = client.post(url, content=body).status_code
        finished[name] = (time.monotonic(), status)

    with injector(tmp_path, ca, limits) as urls:
        started = time.monotonic()
        flood = threading.Thread(
            target=post, args=("flood", f"{urls.webhook}/mutate", FLOOD, "127.0.0.6")
        )
        flood.start()
        time.sleep(1.0)  # past its burst by now, and held
        post("review", f"{urls.webhook}/mutate", admission_review(pod()), "127.0.0.1")
        flood.join()

    flood_done, flood_status = finished["flood"]
    review_done, review_status = finished["review"]
    assert (flood_status, review_status) == (400, 200)
    least = (len(FLOOD) - 2 * BUDGET - 128 * KIB) / BUDGET  # the burst, and a read or so more
    assert flood_done - started >= least, (
        f"{len(FLOOD)} bytes were read in {flood_done - started:.1f} s, "
        f"at {BUDGET} bytes a second after {2 * BUDGET} they take at least {least:.1f} s"
    )
    assert review_done < flood_done, "another address waited for the flood"
