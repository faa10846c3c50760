"""A Kubernetes API server that accepts but never answers must not hang the broker.

The kubernetes client is synchronous and runs in worker threads; each call is bounded, so the
init container gets a 503 it can retry and the thread comes back, instead of both waiting
forever; and admission answers within its one budget, well before the webhook's timeout.
The silent API server is a real socket on loopback that reads and never replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Iterator

import pytest
from kubernetes import client as k8s
from support.broker_fakes import projected_token
from support.broker_world import VAULT, sakura_config
from support.emulator import EmulatorHandle

from contract import FileSpec, Plan, SecretRef
from injector.broker.access import SECRETS, AccessReviewer, Subject
from injector.broker.admission_check import BrokerAdmissionCheck
from injector.broker.inventory import VaultInventory
from injector.broker.tokens import TokenReviewer
from injector.kube import KubernetesUnavailable
from sakura import SakuraClient

TIMEOUT = 0.5
BUDGET = 3.0
"""The admission check's one budget: long enough that a busy machine's delays stay well
below a second budget."""


@contextlib.contextmanager
def silent_api_server() -> Iterator[k8s.ApiClient]:
    """An ApiClient pointed at a listener that takes requests and never answers them."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        yield k8s.ApiClient(configuration)
    finally:
        stop.set()
        thread.join()
        for conn in accepted:  # releases any thread still blocked on a read
            conn.close()
        listener.close()


async def _bounded(what: str, call: Awaitable[object]) -> float:
    started = time.monotonic()
    with pytest.raises(KubernetesUnavailable) as caught:
        await asyncio.wait_for(call, 10 * TIMEOUT)  # a hang fails here, not forever
    assert what in str(caught.value)
    return time.monotonic() - started


async def test_a_hung_token_review_is_a_kubernetes_unavailable_error() -> None:
    with silent_api_server() as api:
        tokens = TokenReviewer(api, request_timeout=TIMEOUT)
        elapsed = await _bounded("review the token", tokens.verify(projected_token()))
    assert elapsed < 5 * TIMEOUT


async def test_a_hung_subject_access_review_is_a_kubernetes_unavailable_error() -> None:
    with silent_api_server() as api:
        access = AccessReviewer(api, request_timeout=TIMEOUT)
        subject = Subject.of("shop", "api")
        elapsed = await _bounded("access to secrets 'db'", access.allowed(subject, SECRETS, "db"))
    assert elapsed < 5 * TIMEOUT


async def test_admission_spends_one_budget_and_checks_no_existence_without_access(
    emulator: EmulatorHandle,
) -> None:
    # RBAC hangs for the whole budget: the check admits with a warning within the one budget
    # (two budgets may exceed the webhook's timeoutSeconds and fail the pod), and does not
    # ask Sakura about secrets it could not authorize
    plan = Plan(
        files=(FileSpec(name="db", mode=0o400, secret=SecretRef("db")),),
        directory="/sakura/secrets",
        vault_id=VAULT,
        uid=1,
        gid=1,
    )
    emulator.knobs.reset_stats()
    with silent_api_server() as api:
        async with SakuraClient(sakura_config(emulator.url), max_retries=0) as sakura:
            check = BrokerAdmissionCheck(
                AccessReviewer(api, request_timeout=30),
                VaultInventory(sakura),
                timeout=BUDGET,
            )
            started = time.monotonic()
            outcome = await check("shop", "api", plan)
            elapsed = time.monotonic() - started
    assert outcome.denial is None
    assert [w.split(" (")[0] for w in outcome.warnings] == [
        "could not check access to the secrets now",
    ]
    assert emulator.knobs.stats()["calls"] == {}
    # two budgets would be 6 s: the bound leaves a busy machine 2.5 s of slack past the one
    assert elapsed < 1.85 * BUDGET, f"{elapsed:.2f}s: more than the one {BUDGET:g}s budget"
