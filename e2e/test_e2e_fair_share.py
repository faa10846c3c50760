"""Issue 9 on the local cluster: a hostile pod cannot spend the account's Sakura quota.

A ServiceAccount with one grant hammers the broker with missing pinned versions from 16
connections for 40 s (the test process holds its real bound token, as its pod would); the
injector answers from what it remembers missing, and another namespace's 5-pod rollout
meanwhile is as fast as without it.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest
from harness import manifests
from harness.kube import Kube
from harness.stack import Sakura, Webhook

pytestmark = pytest.mark.cluster

HAMMER_SECONDS = 40.0
CONNECTIONS = 16
GRANTED = "db-password"  # one version: every pinned version from 2 up is missing
HOSTILE_BUDGET = 10
REPLICAS = 5


@dataclass(frozen=True)
class Rollout:
    seconds: float
    sakura_calls: int
    failed_creates: tuple[str, ...]
    """Why the ReplicaSet could not create pods (e.g. another run's webhook on the cluster)."""


def sakura_calls(sakura: Sakura) -> int:
    return sakura.emulator.knobs.calls["total"]


def hostile_token(kube: Kube, webhook: Webhook) -> str:
    """A real bound token of a ServiceAccount granted one secret, as its pod would hold it."""
    ns = webhook.namespace("hostile", injection=False)
    kube.apply(
        manifests.service_account("hostile", ns),
        *manifests.grant("read-one", ns, "hostile", manifests.pairs(GRANTED)),
        manifests.pod(
            "anchor", ns, manifests.pod_spec("exec sleep 3600", service_account="hostile")
        ),
    )
    return kube.bound_token(ns, "hostile", "anchor")


def rollout(kube: Kube, webhook: Webhook, sakura: Sakura, purpose: str, secret: str) -> Rollout:
    """A 5-replica Deployment reading `secret`; seconds until every pod is Ready."""
    ns = webhook.namespace(purpose)
    kube.apply(
        manifests.service_account("app", ns),
        *manifests.grant("read", ns, "app", manifests.pairs(secret)),
    )
    annotations = manifests.pod_annotations({f"secret-{secret}": secret})
    spec = manifests.pod_spec("exec sleep 3600", service_account="app")
    before, started = sakura_calls(sakura), time.monotonic()
    kube.apply(manifests.deployment("victim", ns, spec, annotations, replicas=REPLICAS))

    def all_ready() -> bool:
        pods = kube.pods(ns, "app=victim")
        ready = [
            p
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        return len(ready) == REPLICAS

    kube.wait_for(f"{REPLICAS} ready pods in {ns}", all_ready, timeout=240, every=0.5)
    seconds, calls = time.monotonic() - started, sakura_calls(sakura) - before
    failed = tuple(
        str(e.get("message", ""))[:300]
        for e in kube.get("events", namespace=ns)["items"]
        if e.get("reason") == "FailedCreate"
    )
    return Rollout(seconds, calls, failed)


class Hammer:
    """16 connections posting 100 missing pinned versions each, as fast as answered."""

    def __init__(self, url: str, context: ssl.SSLContext, token: str, vault_id: str) -> None:
        self.url, self.context, self.token, self.vault_id = url, context, token, vault_id
        self.statuses: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CONNECTIONS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, index: int) -> None:
        first = 2 + index * 100_000
        with httpx.Client(verify=self.context, timeout=30) as http:
            while not self._stop.is_set():
                versions = range(first, first + 100)
                first += 100
                body = {
                    "vault_id": self.vault_id,
                    "secrets": [{"name": GRANTED, "version": v} for v in versions],
                }
                try:
                    response = http.post(
                        f"{self.url}/v1/secrets",
                        json=body,
                        headers={"Authorization": f"Bearer {self.token}"},
                    )
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                with self._lock:
                    self.statuses[status] += 1


def test_a_hostile_pod_spends_at_most_10_calls_and_another_rollout_keeps_its_pace(
    kube: Kube, webhook: Webhook, node: str, sakura: Sakura
) -> None:
    token = hostile_token(kube, webhook)
    baseline = rollout(kube, webhook, sakura, "victim-alone", "api-key")

    context = ssl.create_default_context(cadata=webhook.pki.ca.cert_pem.decode())
    hammer = Hammer(webhook.injector.broker_url, context, token, sakura.vault_id)
    before, started = sakura_calls(sakura), time.monotonic()
    hammer.start()
    try:
        time.sleep(5)  # the attack is in full swing before the other namespace rolls out
        attacked = rollout(kube, webhook, sakura, "victim-attacked", "job-token")
        time.sleep(max(0.0, HAMMER_SECONDS - (time.monotonic() - started)))
    finally:
        hammer.stop()
    spent = sakura_calls(sakura) - before - attacked.sakura_calls
    report = (
        f"hostile: {sum(hammer.statuses.values())} requests {dict(hammer.statuses)} in "
        f"{time.monotonic() - started:.0f} s cost {spent} Sakura calls; victim rollout "
        f"{baseline.seconds:.1f} s alone ({baseline.sakura_calls} calls), "
        f"{attacked.seconds:.1f} s under attack ({attacked.sakura_calls} calls); pods the "
        f"ReplicaSets could not create: {baseline.failed_creates + attacked.failed_creates}"
    )
    print(f"\n[e2e fair share] {report}")
    assert hammer.statuses[404] > 0, report  # the attack did reach the broker
    assert set(hammer.statuses) <= {404, 429}, report
    assert spent <= HOSTILE_BUDGET, report
    assert attacked.seconds <= 2 * baseline.seconds, report
