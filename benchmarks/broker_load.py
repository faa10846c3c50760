"""A rollout through the broker: N pods, each its own bound token, fetching 5 secrets.

Honest about the Kubernetes side: every pod is a real Pod object (never run: its
`schedulerName` names no scheduler; in a namespace not labelled for injection) with its own
TokenRequest bound to it, so the broker pays what a real rollout costs it: a TokenReview per
pod, the SubjectAccessReviews, the pod checks. Each fetch presents its own token on its own
TLS connection from its own source address on 127.0.0.0/8 (real pods have distinct
addresses, and the broker's Kubernetes-call lanes are keyed by the client's address). Pods
and tokens are made before the clock starts.

The broker runs in a process of its own (benchmarks.broker_process: `build_broker`, the
production wiring, on uvicorn over TLS) against the emulator at Sakura's real quota (100 calls
per 60 s) and the cluster in $KUBECONFIG, so its CPU time and peak RSS are its own.

    KUBECONFIG=... python -m benchmarks.broker_load [--pods 1000] [--in-flight 1000]

Prints Sakura calls (goal <= 10), Kubernetes API calls by kind as the broker counted them and
as the API server counted them (its /metrics, every client's on a shared cluster), the time to
the last fetch (goal <= 60 s for 10,000 pods), failures (goal 0), the broker's CPU seconds and
peak RSS, and this client's CPU (near 100% of a core would mean the client, not the broker,
was the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ipaddress
import os
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from kubernetes import client as k8s

# broker_process sits beside this file (as refresh_load imports this one): one module name
# for it, whether this runs as `-m benchmarks.broker_load` or is type-checked as a file
sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_process import apiserver_requests, broker_process, make_pods

from emulator.app import Emulator, EmulatorConfig
from emulator.server import run_in_thread
from injector.kube import api_client as kube_api_client
from injector.operations.certs import generate_ca, issue_serving_cert

VAULT = "110000000001"
SECRETS = ["db", "api", "cache", "smtp", "tls"]
FIRST_SOURCE = ipaddress.IPv4Address("127.1.0.1")
"""Pod i fetches from FIRST_SOURCE + i (all of 127.0.0.0/8 is the loopback)."""


def prepare_cluster(api: k8s.ApiClient, namespace: str) -> str:
    """A namespace, a ServiceAccount granted the vault and its 5 pairs, a Pending pod, a token."""
    core = k8s.CoreV1Api(api)
    rbac = k8s.RbacAuthorizationV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    core.create_namespaced_service_account(
        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="app"))
    )
    rbac.create_namespaced_role(
        namespace,
        k8s.V1Role(
            metadata=k8s.V1ObjectMeta(name="read"),
            rules=[
                k8s.V1PolicyRule(
                    api_groups=["sakura-secrets.io"],
                    resources=[resource],
                    resource_names=names,
                    verbs=["get"],
                )
                for resource, names in (
                    ("vaults", [VAULT]),
                    ("secrets", [f"{VAULT}/{name}" for name in SECRETS]),  # the pairs
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        k8s.V1RoleBinding(
            metadata=k8s.V1ObjectMeta(name="read"),
            role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read"),
            subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name="app", namespace=namespace)],
        ),
    )
    pod_body = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="app"),
        spec=k8s.V1PodSpec(
            service_account_name="app",
            automount_service_account_token=False,
            containers=[k8s.V1Container(name="app", image="local/busybox:1")],
        ),
    )
    for _ in range(100):
        try:
            pod = core.create_namespaced_pod(namespace, pod_body)
            break
        except k8s.ApiException as exc:
            if exc.status != 403:
                raise
            time.sleep(0.2)
    else:
        raise SystemExit("the benchmark's pod could not be created")
    assert pod.metadata is not None
    token = core.create_namespaced_service_account_token(
        "app",
        namespace,
        k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=["sakura-secrets-injector"],
                expiration_seconds=600,
                bound_object_ref=k8s.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name="app", uid=pod.metadata.uid
                ),
            )
        ),
    )
    assert token.status is not None
    return str(token.status.token)


async def rollout(
    url: str, ca_pem: bytes, tokens: list[str], in_flight: int
) -> tuple[float, collections.Counter[str], str]:
    """Every token fetches once, at most `in_flight` at a time, each on its own TLS
    connection from its own address; the seconds until the last answered, the outcomes."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    body = {"vault_id": VAULT, "secrets": [{"name": n, "version": None} for n in SECRETS]}
    gate = asyncio.Semaphore(in_flight)
    outcomes: collections.Counter[str] = collections.Counter()
    first_error = ""

    async def one(index: int, token: str) -> None:
        nonlocal first_error
        source = str(FIRST_SOURCE + index)
        transport = httpx.AsyncHTTPTransport(verify=context, local_address=source)
        async with gate, httpx.AsyncClient(transport=transport, timeout=120) as http:
            try:
                r = await http.post(
                    f"{url}/v1/secrets", json=body, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                return
        if r.status_code != 200 or len(r.json()["secrets"]) != len(SECRETS):
            outcomes[f"HTTP {r.status_code}"] += 1
            first_error = first_error or f"HTTP {r.status_code}: {r.text[:200]}"
            return
        outcomes["ok"] += 1

    started = time.monotonic()
    await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens)))
    return time.monotonic() - started, outcomes, first_error


def quota_emulator() -> Emulator:
    """Sakura at its real quota (100 calls a minute), holding `SECRETS` in `VAULT`."""
    return Emulator(
        EmulatorConfig(
            access_token="bench",
            access_token_secret="bench-secret",
            rate_limit=100,
            rate_limit_window=60,
            seed={"vaults": [{"id": VAULT, "secrets": {n: f"{n}-value" for n in SECRETS}}]},
        )
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=1000, help="pods in the rollout (1000)")
    parser.add_argument(
        "--in-flight", type=int, default=1000, help="fetches under way at once (1000)"
    )
    args = parser.parse_args()
    if args.pods < 1 or args.in_flight < 1:
        parser.error("--pods and --in-flight must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        print('set KUBECONFIG (e.g. eval "$(e2e/cluster.sh env)")', file=sys.stderr)
        return 2
    admin = kube_api_client(kubeconfig)
    namespace = f"broker-load-{uuid.uuid4().hex[:6]}"
    emulator = quota_emulator()
    ca = generate_ca()
    leaf = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    try:
        prepare_cluster(admin, namespace)  # the ServiceAccount and its grants
        made = time.monotonic()
        tokens = make_pods(admin, namespace, args.pods, prefix="rollout")
        made = time.monotonic() - made
        with tempfile.TemporaryDirectory() as tmp, run_in_thread(emulator) as emulator_url:
            cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert.write_bytes(leaf.cert_pem)
            key.write_bytes(leaf.key_pem)
            with broker_process(emulator_url, cert, key) as broker:
                seen_before = apiserver_requests(admin)
                cpu0, own0 = broker.cpu_seconds(), time.process_time()
                elapsed, outcomes, first_error = asyncio.run(
                    rollout(broker.url, ca.cert_pem, tokens, args.in_flight)
                )
                cpu, own = broker.cpu_seconds() - cpu0, time.process_time() - own0
                seen = apiserver_requests(admin) - seen_before
                rss = broker.peak_rss_mib()
                broker.stop()
                logged = broker.log_lines()
            sakura_calls = emulator.knobs.calls["total"]
    finally:
        with contextlib.suppress(k8s.ApiException):
            k8s.CoreV1Api(admin).delete_namespace(namespace)
    failed = args.pods - outcomes["ok"]
    kinds = ("TokenReview", "SubjectAccessReview", "pod read")
    counted = broker.kubernetes
    others = {k: v for k, v in counted.items() if k not in kinds}
    print(
        f"pods:            {args.pods} x {len(SECRETS)} secrets, {args.in_flight} in flight, "
        f"each its own bound token, TLS connection and address "
        f"(pods and tokens made in {made:.0f} s, not timed)"
    )
    print(f"sakura calls:    {sakura_calls} (goal <= 10; quota 100 per 60 s)")
    print(
        "kubernetes:      "
        + ", ".join(f"{k} {counted.get(k, 0)}" for k in kinds)
        + f", others {others or 0} (counted by the broker)"
    )
    print(
        "api server saw:  "
        + ", ".join(f"{k} {seen.get(k, 0)}" for k in kinds)
        + " (its /metrics, every client's)"
    )
    goal = " (goal <= 60 s for 10,000 pods)" if args.pods >= 10_000 else ""
    print(
        f"last fetch:      {elapsed:.1f} s after the first began{goal}; "
        f"{args.pods / elapsed:.0f} pods/s"
    )
    print(
        f"failed:          {failed} (goal 0)"
        + (f"; {dict(outcomes)}; first: {first_error}" if failed else "")
    )
    print(
        f"broker:          {cpu:.1f} CPU s ({1000 * cpu / args.pods:.1f} ms a pod; "
        f"{100 * cpu / elapsed:.0f}% of one core), peak RSS {rss:.0f} MiB"
    )
    if logged:
        print(f"broker log:      {len(logged)} lines; first: {logged[0][:200]}")
    print(
        f"client:          {100 * own / elapsed:.0f}% of one core "
        "(near 100%: the client was the limit)"
    )
    return 0 if failed == 0 and sakura_calls <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
