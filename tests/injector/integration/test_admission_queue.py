"""Issue 15, case 4, over real TLS: bodies of nested lists no longer hold up a normal review.

Before the fix, every body up to the size limit was parsed and walked (in Python) on the one
admission thread before anyone looked at what it was: eight ~3 MiB bodies of nested lists kept
that thread busy for about ten seconds, and a normal review sent behind them waited past the
API server's 10 s timeout. Now what does not claim to be a review is refused on the event loop,
and what claims to be one is screened on the bytes (its value count) in its own lane.

Measured as the admission thread's CPU time, which a busy machine does not inflate, and the
victim's answer within half of the API server's timeout (it took seconds before, 30 ms alone).
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support.webhook_harness import RecordingCheck, admission_review, pod, serving, write_pair

from injector.operations.certs import KeyPair, generate_ca, issue_serving_cert
from injector.serving.app import create_apps
from injector.serving.tls import ReloadingTLS
from injector.webhook.settings import WebhookSettings

FLOOD = 8
LISTS = 600_000
"""`[[]]` items per body: about 3 MB, under the 3 MiB cap."""


def nested_lists(envelope: bytes) -> bytes:
    return envelope + b'"a":[' + b",".join([b"[[]]"] * LISTS) + b"]}"


BODIES = {
    "not reviews": nested_lists(b"{"),
    "claiming to be reviews of another namespace": nested_lists(
        b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1",'
        b'"request":{"uid":"f","namespace":"flood"},'
    ),
}


@pytest.fixture
def ca() -> KeyPair:
    return generate_ca()


@pytest.fixture
def tls(tmp_path: Path, ca: KeyPair) -> ReloadingTLS:
    write_pair(tmp_path, issue_serving_cert(ca, ["localhost"], ["127.0.0.1"]))
    return ReloadingTLS(tmp_path / "tls.crt", tmp_path / "tls.key")


@pytest.fixture
def webhook(ca: KeyPair, tls: ReloadingTLS) -> Iterator[str]:
    settings = WebhookSettings(
        image="sakura-secrets-injector:test",
        broker_url="https://sakura-secrets-injector.sakura-secrets.svc",
        broker_ca_pem=ca.cert_pem.decode(),
        default_vault_id="123456789012",
    )
    with serving(create_apps(settings, check=RecordingCheck()), tls) as ports:
        yield ports.webhook


def admission_cpu_seconds() -> float:
    """CPU time of this process's admission threads so far (Linux: /proc/self/task)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith("admission") and thread.native_id is not None:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@pytest.mark.parametrize("flood", BODIES)
def test_bodies_of_nested_lists_do_not_hold_up_a_review(
    webhook: str, ca: KeyPair, flood: str
) -> None:
    body = BODIES[flood]
    assert len(body) < 3 * 1024 * 1024
    verify = ssl.create_default_context(cadata=ca.cert_pem.decode())
    sent = threading.Semaphore(0)

    def attack() -> int:
        def chunks() -> Iterator[bytes]:
            yield body
            sent.release()

        with httpx.Client(verify=verify, timeout=120) as client:
            return client.post(f"{webhook}/mutate", content=chunks()).status_code

    with httpx.Client(verify=verify, timeout=60) as client:  # warm: the thread exists
        assert client.post(f"{webhook}/mutate", content=admission_review(pod())).is_success
    cpu_before = admission_cpu_seconds()
    with ThreadPoolExecutor(FLOOD) as attackers:
        floods = [attackers.submit(attack) for _ in range(FLOOD)]
        for _ in range(FLOOD):
            assert sent.acquire(timeout=60)
        with httpx.Client(verify=verify, timeout=60) as client:
            started = time.monotonic()
            answer = client.post(f"{webhook}/mutate", content=admission_review(pod()))
            took = time.monotonic() - started
        assert [f.result() for f in floods] == [400] * FLOOD
    assert answer.json()["response"]["allowed"] is True
    assert "patch" in answer.json()["response"]
    assert took < 5.0, f"a normal review waited {took:.1f}s behind {FLOOD} bodies of lists"
    assert admission_cpu_seconds() - cpu_before < 1.0, "the flood was parsed and walked"
    json.dumps(answer.json())  # a complete answer
