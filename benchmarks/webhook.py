"""Benchmark: POST /mutate next to a bare endpoint that only parses and echoes the review, both
on the same uvicorn and TLS setup, in one run, for a typical pod and for the largest one.

    python benchmarks/webhook.py [--seconds 10] [--connections 16] [--rate 200] [--pods ...]

Each server runs as its own process pinned to CPU 0 (`taskset -c 0`), served by
`injector.serving.server.serve` as `sakura-secrets-injector serve` serves it (its TLS, its
connection bounds, its logging: the admission line in JSON to a file); the load comes from
wrk (benchmarks/wrk_load.py) pinned to CPU 1, over TLS with keep-alive. `/mutate` is the
injector's real app (`create_apps`, the fair admission queue and its thread included) with an
admission check that admits without a network call: this is the webhook's own work, not the
broker's cached RBAC and existence checks. The bare endpoint is a Starlette route that parses
the body with `json.loads` and answers the uid.

Per pod, both servers get a saturating run (wrk's 16 connections as fast as answers come:
requests/s, and /mutate's ratio to the bare floor) and a paced run (each connection waits
`connections / rate` seconds after an answer, wrk's `delay()`: about `--rate` requests a
second, for the latency at a real cluster's load). Goals (issue 20): /mutate >= 0.5x the bare
endpoint's requests/s, and p99 <= 5 ms at 200 requests a second.

The per-address byte budget of the TLS ports (8 MiB/s, docs/webhook.md "Bytes a second per
address") is lifted for both servers: wrk is one address, and at the budget the largest pod's
reviews would be paced by it rather than by the CPU this measures. Figures on a shared machine
are noisy: compare the ratio, measured in one run, more than the absolute figures.
Beside requests/s, the saturating rows give the server's CPU time per request (its
/proc/PID/stat): what a request costs, whatever share of CPU 0 other work took meanwhile.
To see where /mutate's time goes, run py-spy on the server (docs/webhook.md, "Performance").
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # wrk_load, beside this file

from wrk_load import Load, delay_ms, lua_script, report, require_wrk, wrk

from injector.operations.certs import generate_ca, issue_serving_cert
from injector.operations.reviews import pod_create_review

P = "sakura-secrets.io/"

TYPICAL_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "generateName": "shop-api-7c9d8f6b5-",
        "namespace": "shop",
        "labels": {"app": "shop-api", "pod-template-hash": "7c9d8f6b5"},
        "annotations": {
            f"{P}inject": "true",
            f"{P}vault-id": "123456789012",
            f"{P}secret-db-password": "db-password",
            f"{P}secret-api-token": "api-keys@3#token",
            f"{P}template-config.ini": (
                '[db]\npassword = {{ secret("db-password") }}\n'
                'token = {{ secret("api-keys", key="token") }}\n'
            ),
            f"{P}containers": "app",
        },
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "shop-api-7c9d8f6b5",
                "uid": "5c1f4a4e-3b2f-4a57-9d7e-0c6f1f1e2a10",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
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
"""A Deployment's pod as the API server sends it: 2 secrets, one template, two containers."""


def _container(index: int) -> dict[str, Any]:
    """One of the largest pod's containers: what a real sidecar-heavy spec carries."""
    probe = {
        "httpGet": {"path": "/healthz", "port": 8080 + index, "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "periodSeconds": 10,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    return {
        "name": "app" if index == 0 else f"sidecar-{index}",
        "image": f"registry.example/team/component-{index}:2.{index}.7",
        "imagePullPolicy": "IfNotPresent",
        "args": [f"--flag-{i}=value-{i}" for i in range(10)],
        "ports": [{"containerPort": 8080 + index, "name": f"http-{index}", "protocol": "TCP"}],
        "env": [
            {"name": f"COMPONENT_{index}_SETTING_{i}", "value": f"value-{i}-" + "x" * 24}
            for i in range(40)
        ]
        + [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "livenessProbe": probe,
        "readinessProbe": probe,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [
            {"name": f"config-{index}", "mountPath": f"/etc/component-{index}"},
            {"name": "cache", "mountPath": f"/var/cache/component-{index}"},
            {
                "name": "kube-api-access-x1",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
        ],
    }


def _largest_pod() -> dict[str, Any]:
    """The largest pod a real cluster sends: 20 containers (each 42 variables, 10 arguments,
    probes), 2 init containers, 22 volumes, and about 40 KiB of annotations in 170 of them
    (other tools' 100; ours 70: 60 secret-FILE, 6 templates of 6 secrets each, modes, the
    containers: 96 distinct secrets of the 100 a pod may read). Within every bound of
    docs/webhook.md "Bounds", so it is admitted; its review is about 137 KiB."""
    pod = copy.deepcopy(TYPICAL_POD)
    containers = [_container(i) for i in range(20)]
    templates = {
        f"{P}template-service-{t}.yaml": "# generated by the platform team\n"
        + "".join(
            f"credential_{s}:\n  user: {{{{ secret('svc-{t}-{s}', key='user') }}}}\n"
            f"  password: {{{{ secret('svc-{t}-{s}', key='password') }}}}\n"
            for s in range(6)
        )
        for t in range(6)
    }
    ours = {
        f"{P}inject": "true",
        f"{P}vault-id": "123456789012",
        f"{P}containers": ",".join(c["name"] for c in containers[:10]),
        f"{P}file-mode": "0440",
        **{f"{P}secret-key-{i:02}": f"key-{i:02}@{1 + i % 3}" for i in range(60)},
        **templates,
    }
    theirs = {
        **{f"checksum/config-{i}": "%064x" % (i * 7919) for i in range(40)},
        **{f"example.com/team-setting-{i}": f"value {i} " + "y" * 440 for i in range(50)},
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "kubectl.kubernetes.io/default-container": "app",
        "kubectl.kubernetes.io/restartedAt": "2026-12-01T10:00:00Z",
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
        "example.com/sidecar-status": json.dumps(
            {"initContainers": ["init-a", "init-b"], "containers": [c["name"] for c in containers]}
            | {"volumes": [f"config-{i}" for i in range(20)], "revision": "r" * 4000}
        ),
        **{f"example.com/label-copy-{i}": "z" * 60 for i in range(4)},
    }
    pod["metadata"]["annotations"] = {**theirs, **ours}
    pod["metadata"]["labels"] |= {f"example.com/label-{i}": f"v{i}" for i in range(20)}
    spec = pod["spec"]
    spec["containers"] = containers
    spec["initContainers"] = [
        {"name": name, "image": f"registry.example/{name}:1", "args": ["--prepare"]}
        for name in ("init-a", "init-b")
    ]
    spec["volumes"] = [
        *spec["volumes"],
        {"name": "cache", "emptyDir": {}},
        *({"name": f"config-{i}", "configMap": {"name": f"config-{i}"}} for i in range(20)),
    ]
    spec["tolerations"] = [
        {"key": f"example.com/taint-{i}", "operator": "Exists", "effect": "NoSchedule"}
        for i in range(8)
    ]
    return pod


LARGEST_POD = _largest_pod()
PODS = {"typical": TYPICAL_POD, "largest": LARGEST_POD}
KINDS = {"echo": "bare (parse+echo)", "mutate": "/mutate"}
RATIO_GOAL = 0.5
P99_GOAL_MS = 5.0


def review_body(pod: dict[str, Any], uid: str) -> bytes:
    return json.dumps(pod_create_review(pod, namespace="shop", uid=uid)).encode()


# -- the servers: this file run with --serve, one process each -------------------------------


def _serve(kind: str, cert_dir: Path, port: int) -> None:
    """Serve `kind` on `port` until SIGTERM, as `serve` does (its logging too)."""
    from prometheus_client import REGISTRY
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from contract import Plan
    from injector.operations.flags import configure_logging
    from injector.serving.app import create_apps
    from injector.serving.connections import ConnectionLimits
    from injector.serving.server import Listener, serve
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

    configure_logging("info", "json")
    tls = ReloadingTLS(cert_dir / "tls.crt", cert_dir / "tls.key")
    app: Any
    if kind == "mutate":
        settings = WebhookSettings(
            image="sakura-secrets-injector:bench",
            broker_url="https://sakura-secrets-injector.sakura-secrets.svc",
            broker_ca_pem=(cert_dir / "ca.crt").read_text(),
        )
        app = create_apps(settings, check=Admit(), registry=REGISTRY).webhook
    else:
        app = Starlette(routes=[Route("/mutate", echo, methods=["POST"])])
    limits = ConnectionLimits(per_address_bytes=1 << 40)  # see the module's docstring
    serve([Listener("webhook", app, tls, port)], host="127.0.0.1", limits=limits, log_level="info")


# -- the load -------------------------------------------------------------------------------------

LUA_REVIEW = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[@BODY@]==]
function response(status, headers, answer)
  if status ~= 200 or not answer:find('"allowed":%s*true') @PATCHED@ then
    failed = failed + 1
  end
end
"""


@dataclass(frozen=True)
class Figures:
    """One server's two runs, and its CPU seconds per request in the saturating one."""

    full: Load
    paced: Load
    cpu_per_request: float


@dataclass(frozen=True)
class Run:
    seconds: float
    connections: int
    rate: float
    workdir: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(kind: str, run: Run, label: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = (run.workdir / f"{label}-{kind}.log").open("wb")
    process = subprocess.Popen(
        [
            *("taskset", "-c", "0", sys.executable, __file__, "--serve", kind),
            *("--cert-dir", str(run.workdir), "--port", str(port)),
        ],
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"the {kind} server did not start; see {log.name}") from None
            time.sleep(0.05)


def measure(kind: str, pod: str, body: bytes, run: Run) -> Figures:
    """Start `kind`'s server, warm it up, then its saturating and its paced run."""
    patched = "or not answer:find('\"patch\"')" if kind == "mutate" else ""
    full, paced, warm = (run.workdir / f"{pod}-{kind}-{n}.lua" for n in ("full", "paced", "warm"))
    for path, pause in ((full, 0), (warm, 0), (paced, delay_ms(run.connections, run.rate))):
        path.write_text(lua_script(LUA_REVIEW, pause, BODY=body.decode(), PATCHED=patched))
    process, port = start_server(kind, run, pod)
    url = f"https://127.0.0.1:{port}/mutate"
    try:
        report(wrk(url, warm, 1, run.connections, cpu=1), f"{pod} {kind} warm-up")
        before = cpu_seconds(process.pid)
        saturated = report(wrk(url, full, run.seconds, run.connections, cpu=1), f"{pod} {kind}")
        spent = cpu_seconds(process.pid) - before
        paced_load = report(wrk(url, paced, run.seconds, run.connections, cpu=1), f"{pod} {kind}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    return Figures(saturated, paced_load, spent / saturated.requests if saturated.requests else 0)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process `pid` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rows(pod: str, bare: Figures, mutate: Figures, rate: float) -> list[str]:
    def row(target: str, load: Load, cpu: float | None = None, goal: str = "") -> str:
        cost = f"{cpu * 1e6:>9.0f}" if cpu is not None else f"{'':>9}"
        return (
            f"{pod:<9}{target:<26}{load.rate:>8.0f}{load.p50_ms:>8.2f}{load.p99_ms:>8.2f}"
            f"{load.failed:>7}{cost}  {goal}".rstrip()
        )

    ratio = mutate.full.rate / bare.full.rate if bare.full.rate else 0.0
    cost_ratio = bare.cpu_per_request / mutate.cpu_per_request if mutate.cpu_per_request else 0.0
    met = "met" if ratio >= RATIO_GOAL else "NOT met"
    p99_met = "met" if mutate.paced.p99_ms <= P99_GOAL_MS else "NOT met"
    return [
        row(KINDS["echo"], bare.full, bare.cpu_per_request),
        row(KINDS["mutate"], mutate.full, mutate.cpu_per_request),
        f"{pod:<9}{'ratio /mutate / bare':<26}{ratio:>7.2f}x  goal >= {RATIO_GOAL}x: {met} "
        f"(by CPU per request: {cost_ratio:.2f}x)",
        row(f"{KINDS['echo']} @{rate:g}/s", bare.paced),
        row(f"{KINDS['mutate']} @{rate:g}/s", mutate.paced, None, f"goal p99 <= "
            f"{P99_GOAL_MS:g} ms: {p99_met}"),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections")
    parser.add_argument("--rate", type=float, default=200.0, help="paced run's requests/s")
    parser.add_argument("--pods", default=",".join(PODS), help="comma-separated: typical,largest")
    parser.add_argument("--serve", choices=list(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--cert-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        _serve(args.serve, args.cert_dir, args.port)
        return 0
    pods = args.pods.split(",")
    unknown = [p for p in pods if p not in PODS]
    if unknown or not args.seconds >= 1 or args.connections < 1 or not args.rate > 0:
        parser.error(f"--pods from {', '.join(PODS)}; --seconds >= 1; --connections, --rate > 0")
    missing = require_wrk()
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2:
        print("needs two CPUs: the server on CPU 0, wrk on CPU 1", file=sys.stderr)
        return 2
    ca = generate_ca()
    serving = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="sakura-bench-") as directory:
        workdir = Path(directory)
        (workdir / "tls.crt").write_bytes(serving.cert_pem)
        (workdir / "tls.key").write_bytes(serving.key_pem)
        (workdir / "ca.crt").write_bytes(ca.cert_pem)
        run = Run(args.seconds, args.connections, args.rate, workdir)
        print(
            f"POST /mutate over TLS, keep-alive, wrk -t1 -c{run.connections} on CPU 1, each "
            f"server on CPU 0; {run.seconds:g} s a run: saturating, then paced "
            f"({delay_ms(run.connections, run.rate)} ms after each answer per connection)"
        )
        for pod in pods:
            body = review_body(PODS[pod], f"bench-{pod}")
            print(f"{pod}: review of {len(body) / 1024:.1f} KiB")
        print(
            f"{'pod':<9}{'target':<26}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'failed':>7}"
            f"{'cpu us/req':>11}"
        )
        failed = 0
        for pod in pods:
            body = review_body(PODS[pod], f"bench-{pod}")
            bare = measure("echo", pod, body, run)
            mutate = measure("mutate", pod, body, run)
            for line in rows(pod, bare, mutate, run.rate):
                print(line, flush=True)
            failed += sum(
                f.failed for figures in (bare, mutate) for f in (figures.full, figures.paced)
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
