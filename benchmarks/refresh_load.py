"""Refreshing pods against one broker: what change-only reads cost Sakura, Kubernetes and CPU.

500 "pods" (default) each refresh 5 latest-version secrets every 10 s (with jitter) for 2
minutes, sending the versions they hold (`held`), as the refresh container does; in the middle
one secret gets a new version in the emulator. Each pod has its own bound token: a real Pod
object (never scheduled: `schedulerName` names no scheduler, so it costs the node nothing) and
a TokenRequest bound to it, one ServiceAccount for all, as a Deployment's pods share one.

The broker runs in a process of its own (`build_broker`, the production wiring, on uvicorn
over TLS) against the emulator at Sakura's real quota (100 calls per 60 s) and the cluster in
$KUBECONFIG; its Kubernetes API calls are counted inside it, by kind, and its CPU time and peak
RSS are read from /proc.

    KUBECONFIG=... python -m benchmarks.refresh_load [--pods 500] [--seconds 120] [--interval 10]

Prints Sakura calls by operation (goal: about one listing per vault per latest TTL plus one
unveil per new version), Kubernetes API calls by kind (goal: TokenReviews and
SubjectAccessReviews answered from the broker's caches, not one per refresh), the broker's CPU
(goal: under 25% of one core) and peak RSS, and how long the new version took to reach every
pod (bound: the interval plus the latest TTL, 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s

# broker_load sits beside this file (as hostile_attacks does beside hostile.py): one module
# name for it, whether this runs as `-m benchmarks.refresh_load` or is type-checked as a file
sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_load import SECRETS, VAULT, prepare_cluster, quota_emulator
from broker_process import broker_process, make_pods

from emulator.app import Emulator
from emulator.server import run_in_thread
from injector.kube import api_client as kube_api_client
from injector.operations.certs import generate_ca, issue_serving_cert

CHANGED = "api"


# ------------------------------------------------------------------ the refreshing pods


class Pods:
    """The refresh loops, and what they saw."""

    def __init__(self, url: str, ca_pem: bytes, tokens: list[str], interval: float) -> None:
        self.url, self.tokens, self.interval = url, tokens, interval
        self.context = ssl.create_default_context(cadata=ca_pem.decode())
        self.held: list[dict[str, int]] = [{} for _ in tokens]
        self.seen_change: list[float | None] = [None] * len(tokens)
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.first_error = ""

    async def run(self, seconds: float, change: float, emulator: Emulator) -> float:
        """Refresh for `seconds`; at `change` seconds put a new version; return its time."""
        limits = httpx.Limits(max_connections=len(self.tokens), max_keepalive_connections=None)
        async with httpx.AsyncClient(verify=self.context, timeout=60, limits=limits) as http:
            started = time.monotonic()
            stop = started + seconds
            loops = [
                asyncio.create_task(self._loop(http, i, stop)) for i in range(len(self.tokens))
            ]
            await asyncio.sleep(change)
            emulator.store.put(VAULT, CHANGED, f"{CHANGED}-rotated-value")
            changed = time.monotonic()
            await asyncio.gather(*loops)
        return changed

    async def _loop(self, http: httpx.AsyncClient, index: int, stop: float) -> None:
        await asyncio.sleep(random.uniform(0, self.interval))  # pods start at random times
        while time.monotonic() < stop:
            await self._refresh(http, index)
            await asyncio.sleep(self.interval * random.uniform(0.9, 1.1))

    async def _refresh(self, http: httpx.AsyncClient, index: int) -> None:
        held = self.held[index]
        body: dict[str, Any] = {
            "vault_id": VAULT,
            "secrets": [{"name": n, "version": None} for n in SECRETS],
        }
        if held:
            body["held"] = held
        try:
            r = await http.post(
                f"{self.url}/v1/secrets",
                json=body,
                headers={"Authorization": f"Bearer {self.tokens[index]}"},
            )
        except httpx.HTTPError as exc:
            self.outcomes["failed"] += 1
            self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
            return
        if r.status_code != 200:
            self.outcomes[f"HTTP {r.status_code}"] += 1
            self.first_error = self.first_error or f"HTTP {r.status_code}: {r.text[:200]}"
            return
        items = r.json()["secrets"]
        changed = [i for i in items if "value" in i]
        self.outcomes["first" if not held else "changed" if changed else "unchanged"] += 1
        for item in items:
            held[item["name"]] = item["version"]
        if held.get(CHANGED, 0) >= 2 and self.seen_change[index] is None:
            self.seen_change[index] = time.monotonic()


# ------------------------------------------------------------------ main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument(
        "--latest-ttl", type=float, default=30.0, help="the broker's --latest-ttl (30 s)"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if not os.environ.get("KUBECONFIG"):
        print('set KUBECONFIG (e.g. eval "$(e2e/cluster.sh env)")', file=sys.stderr)
        return 2
    admin = kube_api_client(os.environ["KUBECONFIG"])
    namespace = f"refresh-load-{uuid.uuid4().hex[:6]}"
    emulator = quota_emulator()
    ca = generate_ca()
    leaf = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    try:
        prepare_cluster(admin, namespace)  # the ServiceAccount and its grants
        made = time.monotonic()
        tokens = make_pods(admin, namespace, args.pods, prefix="refresher")
        made = time.monotonic() - made
        with tempfile.TemporaryDirectory() as tmp, run_in_thread(emulator) as emulator_url:
            cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert.write_bytes(leaf.cert_pem)
            key.write_bytes(leaf.key_pem)
            with broker_process(emulator_url, cert, key, latest_ttl=args.latest_ttl) as broker:
                pods = Pods(broker.url, ca.cert_pem, tokens, args.interval)
                cpu0, wall0 = broker.cpu_seconds(), time.monotonic()
                changed = asyncio.run(pods.run(args.seconds, args.seconds / 2, emulator))
                cpu, wall = broker.cpu_seconds() - cpu0, time.monotonic() - wall0
                rss = broker.peak_rss_mib()
                broker.stop()
            kube = broker.kubernetes
            sakura = {k: v for k, v in emulator.knobs.calls.items() if k != "total"}
    finally:
        with contextlib.suppress(k8s.ApiException):
            k8s.CoreV1Api(admin).delete_namespace(namespace)
    refreshes = sum(pods.outcomes.values())
    seen = [t - changed for t in pods.seen_change if t is not None]
    reached = len(seen)
    print(
        f"pods:            {args.pods} x {len(SECRETS)} secrets, each its own bound token "
        f"(pods made and tokens requested in {made:.0f} s)"
    )
    print(
        f"refreshes:       {refreshes} in {wall:.0f} s, every {args.interval:g} s +-10% "
        f"({dict(pods.outcomes)})"
    )
    ttl = args.latest_ttl
    print(
        f"sakura calls:    {sakura} (listing lifetime {ttl:g} s: goal about "
        f"{wall / ttl + 1:.0f} listings + {len(SECRETS) + 1} unveils)"
    )
    print(f"kubernetes:      {kube} (at the broker; {refreshes} refreshes)")
    print(
        f"broker CPU:      {100 * cpu / wall:.1f}% of one core ({cpu:.1f} s in {wall:.0f} s; "
        f"goal < 25%)"
    )
    print(f"broker peak RSS: {rss:.0f} MiB")
    if reached:
        print(
            f"change reached:  {reached}/{args.pods} pods, the last {max(seen):.1f} s after "
            f"the new version (median {sorted(seen)[reached // 2]:.1f} s; bound: interval "
            f"{args.interval:g} s + latest TTL {ttl:g} s)"
        )
    else:
        print(f"change reached:  0/{args.pods} pods")
    if pods.first_error:
        print(f"first error:     {pods.first_error}")
    failed = refreshes - sum(pods.outcomes[k] for k in ("first", "unchanged", "changed"))
    return 0 if failed == 0 and reached == args.pods else 1


if __name__ == "__main__":
    sys.exit(main())
