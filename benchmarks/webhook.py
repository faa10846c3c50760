"""Benchmark: POST /mutate for a typical pod next to a bare endpoint that only parses and echoes
the review, both on uvicorn over the same reloading TLS setup, in one run.

    python benchmarks/webhook.py [--seconds 3] [--requests 3000] [--concurrency 4]

Each server runs in its own process (the client would otherwise share the GIL with it), with
keep-alive connections as the API server uses. The admission check admits without a network
call: this measures the webhook's own work (decode, parse annotations, build the pod, compute
the JSON patch), not the cached RBAC/existence checks of the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import ssl
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from injector.operations.certs import KeyPair, generate_ca, issue_serving_cert
from injector.operations.reviews import pod_create_review

TYPICAL_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "generateName": "shop-api-7c9d8f6b5-",
        "namespace": "shop",
        "labels": {"app": "shop-api", "pod-template-hash": "7c9d8f6b5"},
        "annotations": {
            "sakura-secrets.io/inject": "true",
            "sakura-secrets.io/vault-id": "123456789012",
            "sakura-secrets.io/secret-db-password": "db-password",
            "sakura-secrets.io/secret-api-token": "api-keys@3#token",
            "sakura-secrets.io/template-config.ini": (
                '[db]\npassword = {{ secret("db-password") }}\n'
                'token = {{ secret("api-keys", key="token") }}\n'
            ),
            "sakura-secrets.io/containers": "app",
        },
    },
    "spec": {
        "serviceAccountName": "shop-api",
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
        "containers": [
            {
                "name": "app",
                "image": "registry.example/shop/api:1.4.2",
                "ports": [{"containerPort": 8080, "name": "http"}],
                "env": [{"name": "LOG_LEVEL", "value": "info"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "volumeMounts": [
                    {
                        "name": "kube-api-access-x1",
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        "readOnly": True,
                    }
                ],
            },
            {"name": "metrics", "image": "registry.example/exporter:0.9"},
        ],
        "volumes": [{"name": "kube-api-access-x1", "projected": {"sources": []}}],
    },
}


def review_body(uid: str) -> bytes:
    return json.dumps(pod_create_review(TYPICAL_POD, namespace="shop", uid=uid)).encode()


def _serve(kind: str, cert_dir: str, ca_pem: str, conn: Connection) -> None:
    """Child process: serve one app over the reloading TLS context until told to stop."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from contract import Plan
    from injector.serving.app import create_apps
    from injector.serving.server import Listener, serving_in_thread
    from injector.serving.tls import ReloadingTLS
    from injector.webhook.checks import CheckOutcome
    from injector.webhook.settings import WebhookSettings

    class Admit:
        async def __call__(self, namespace: str, service_account: str, plan: Plan) -> CheckOutcome:
            return CheckOutcome()

    async def echo(request: Request) -> JSONResponse:
        uid = json.loads(await request.body())["request"]["uid"]
        return JSONResponse(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": uid, "allowed": True},
            }
        )

    directory = Path(cert_dir)
    tls = ReloadingTLS(directory / "tls.crt", directory / "tls.key")
    if kind == "mutate":
        settings = WebhookSettings(
            image="sakura-secrets-injector:bench",
            broker_url="https://sakura-secrets-injector.sakura-secrets.svc",
            broker_ca_pem=ca_pem,
        )
        app: Any = create_apps(settings, check=Admit()).webhook
    else:
        app = Starlette(routes=[Route("/mutate", echo, methods=["POST"])])
    with serving_in_thread([Listener("webhook", app, tls, 0)]) as [url]:
        conn.send(url)
        conn.recv()  # stop


async def _drive(
    url: str, ca: KeyPair, *, seconds: float, limit: int, concurrency: int
) -> tuple[list[float], float]:
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    latencies: list[float] = []
    bodies = [review_body(f"bench-{i}") for i in range(64)]
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        for body in bodies[:20]:  # warm-up: handshakes, imports, caches
            (await client.post(f"{url}/mutate", content=body)).raise_for_status()
        started = time.perf_counter()
        deadline = started + seconds
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while sent < limit and time.perf_counter() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                t0 = time.perf_counter()
                response = await client.post(f"{url}/mutate", content=body)
                latencies.append(time.perf_counter() - t0)
                response.raise_for_status()
                if not response.json()["response"]["allowed"]:
                    raise RuntimeError(f"denied: {response.text}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, elapsed


def measure(
    kind: str, cert_dir: Path, ca: KeyPair, *, seconds: float, limit: int, concurrency: int
) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(kind, str(cert_dir), ca.cert_pem.decode(), child))
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError(f"the {kind} server did not start")
        url = parent.recv()
        latencies, elapsed = asyncio.run(
            _drive(url, ca, seconds=seconds, limit=limit, concurrency=concurrency)
        )
    finally:
        parent.send("stop")
        process.join(15)
        if process.is_alive():
            process.terminate()
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per target (bound)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per target (bound)")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    ca = generate_ca()
    serving = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="sakura-bench-") as directory:
        cert_dir = Path(directory)
        (cert_dir / "tls.crt").write_bytes(serving.cert_pem)
        (cert_dir / "tls.key").write_bytes(serving.key_pem)
        print(
            f"POST /mutate over TLS, keep-alive, concurrency {args.concurrency}, "
            f"up to {args.requests} requests or {args.seconds:g} s per target"
        )
        print(f"{'target':<34}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
        for kind, label in (
            ("echo", "bare Starlette: parse + echo"),
            ("mutate", "injector /mutate (typical pod)"),
        ):
            r = measure(
                kind,
                cert_dir,
                ca,
                seconds=args.seconds,
                limit=args.requests,
                concurrency=args.concurrency,
            )
            print(
                f"{label:<34}{r['requests']:>9.0f}{r['rps']:>9.0f}"
                f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            )


if __name__ == "__main__":
    main()
