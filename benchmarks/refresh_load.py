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
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s

# broker_load sits beside this file (as hostile_attacks does beside hostile.py): one module
# name for it, whether this runs as `-m benchmarks.refresh_load` or is type-checked as a file
sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_load import SECRETS, VAULT, prepare_cluster, quota_emulator

from emulator.app import Emulator
from emulator.server import run_in_thread
from injector.kube import api_client as kube_api_client
from injector.operations.certs import generate_ca, issue_serving_cert

CHANGED = "api"
TICK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ the cluster side


def make_pods(api: k8s.ApiClient, namespace: str, count: int) -> list[str]:
    """`count` pods bound to nothing that runs, and a bound token for each."""
    core = k8s.CoreV1Api(api)

    def one(index: int) -> str:
        body = k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=f"refresher-{index}"),
            spec=k8s.V1PodSpec(
                service_account_name="app",
                automount_service_account_token=False,
                scheduler_name="sakura-secrets-benchmark-no-scheduler",
                containers=[k8s.V1Container(name="app", image="local/busybox:1")],
            ),
        )
        pod = core.create_namespaced_pod(namespace, body)
        assert pod.metadata is not None
        token = core.create_namespaced_service_account_token(
            "app",
            namespace,
            k8s.AuthenticationV1TokenRequest(
                spec=k8s.V1TokenRequestSpec(
                    audiences=["sakura-secrets-injector"],
                    expiration_seconds=3600,
                    bound_object_ref=k8s.V1BoundObjectReference(
                        kind="Pod", api_version="v1", name=pod.metadata.name, uid=pod.metadata.uid
                    ),
                )
            ),
        )
        assert token.status is not None
        return str(token.status.token)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


# ------------------------------------------------------------------ the broker's process


def broker_child(args: argparse.Namespace) -> int:
    """The broker, alone in this process; its Kubernetes calls counted and written at exit."""
    import uvicorn
    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette

    from injector.broker.cache import CacheSettings
    from injector.broker.tuning import BrokerTuning
    from injector.operations.wiring import build_broker
    from sakura import SakuraConfig

    counts: collections.Counter[str] = collections.Counter()
    api = kube_api_client(os.environ["KUBECONFIG"])
    call_api = api.call_api

    def counted(*args: Any, **kwargs: Any) -> Any:
        path = next((a for a in args if isinstance(a, str) and "/" in a), "?")
        counts[_kind(path)] += 1
        return call_api(*args, **kwargs)

    api.call_api = counted  # type: ignore[method-assign]
    parts = build_broker(
        SakuraConfig("bench", "bench-secret", base_url=args.sakura_url),
        kube_api_client=api,
        tuning=BrokerTuning(cache=CacheSettings(latest_ttl=float(args.latest_ttl))),
        registry=CollectorRegistry(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        yield
        await parts.aclose()
        Path(args.counts).write_text(json.dumps(counts))

    app = Starlette(routes=parts.routes, lifespan=lifespan)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        ssl_certfile=args.cert,
        ssl_keyfile=args.key,
        log_level="warning",
        access_log=False,
    )
    return 0


def _kind(path: str) -> str:
    if path.endswith("/tokenreviews"):
        return "TokenReview"
    if path.endswith("/subjectaccessreviews"):
        return "SubjectAccessReview"
    return "pod read" if "/pods/" in path else path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    parser.add_argument("--broker-child", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--sakura-url", "--port", "--cert", "--key", "--counts"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.broker_child:
        return broker_child(args)
    if not os.environ.get("KUBECONFIG"):
        print('set KUBECONFIG (e.g. eval "$(e2e/cluster.sh env)")', file=sys.stderr)
        return 2
    admin = kube_api_client(os.environ["KUBECONFIG"])
    namespace = f"refresh-load-{uuid.uuid4().hex[:6]}"
    emulator = quota_emulator()
    ca = generate_ca()
    leaf = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    child: subprocess.Popen[bytes] | None = None
    try:
        prepare_cluster(admin, namespace)  # the ServiceAccount, its grants, one pod
        made = time.monotonic()
        tokens = make_pods(admin, namespace, args.pods)
        made = time.monotonic() - made
        with tempfile.TemporaryDirectory() as tmp, run_in_thread(emulator) as emulator_url:
            cert, key, counts = Path(tmp, "tls.crt"), Path(tmp, "tls.key"), Path(tmp, "k.json")
            cert.write_bytes(leaf.cert_pem)
            key.write_bytes(leaf.key_pem)
            port = free_port()
            child = subprocess.Popen(
                [
                    *(sys.executable, "-m", "benchmarks.refresh_load", "--broker-child"),
                    *("--sakura-url", emulator_url, "--port", str(port), "--cert", str(cert)),
                    *("--key", str(key), "--counts", str(counts)),
                    *("--latest-ttl", str(args.latest_ttl)),
                ]
            )
            url = f"https://127.0.0.1:{port}"
            wait_listening(port, child)
            pods = Pods(url, ca.cert_pem, tokens, args.interval)
            cpu0, wall0 = cpu_seconds(child.pid), time.monotonic()
            changed = asyncio.run(pods.run(args.seconds, args.seconds / 2, emulator))
            cpu, wall = cpu_seconds(child.pid) - cpu0, time.monotonic() - wall0
            rss = peak_rss_mib(child.pid)
            child.send_signal(signal.SIGTERM)
            child.wait(30)
            kube = json.loads(counts.read_text()) if counts.exists() else {}
            sakura = {k: v for k, v in emulator.knobs.calls.items() if k != "total"}
    finally:
        if child is not None and child.poll() is None:
            child.kill()
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


def wait_listening(port: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"the broker exited with {child.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise SystemExit("the broker did not listen within 60 s")


if __name__ == "__main__":
    sys.exit(main())
