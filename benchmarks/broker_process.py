"""The broker in a process of its own, and pods that have bound tokens for it.

Shared by benchmarks.broker_load (a rollout) and benchmarks.refresh_load (pods refreshing):
the broker is the production wiring (`build_broker` on uvicorn over TLS), alone in its
process so its CPU time and peak RSS can be read from /proc; its Kubernetes API calls are
counted inside it by kind and written to a file when it stops. The API server's own request
counters (`apiserver_request_total` on /metrics) are read beside them, from outside.

Run as `python -m benchmarks.broker_process ...` it is that broker (the benchmarks start it).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from contract.pod import TOKEN_AUDIENCE
from injector.kube import api_client as kube_api_client

TICK = os.sysconf("SC_CLK_TCK")
NO_SCHEDULER = "sakura-secrets-benchmark-no-scheduler"
"""A `schedulerName` nothing serves: the pods stay Pending, so the node never runs them."""


# ------------------------------------------------------------------ the cluster side


def make_pods(
    api: k8s.ApiClient, namespace: str, count: int, *, prefix: str = "pod", workers: int = 16
) -> list[str]:
    """`count` Pending pods of ServiceAccount `app` and a token bound to each, in parallel."""
    core = k8s.CoreV1Api(api)

    def one(index: int) -> str:
        body = k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=f"{prefix}-{index}"),
            spec=k8s.V1PodSpec(
                service_account_name="app",
                automount_service_account_token=False,
                scheduler_name=NO_SCHEDULER,
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
                    audiences=[TOKEN_AUDIENCE],
                    expiration_seconds=3600,
                    bound_object_ref=k8s.V1BoundObjectReference(
                        kind="Pod", api_version="v1", name=pod.metadata.name, uid=pod.metadata.uid
                    ),
                )
            ),
        )
        assert token.status is not None
        return str(token.status.token)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(count)))


APISERVER_KINDS = {
    ("tokenreviews", "POST"): "TokenReview",
    ("subjectaccessreviews", "POST"): "SubjectAccessReview",
    ("pods", "GET"): "pod read",
}
_REQUEST = re.compile(r"^apiserver_request_total\{(.*)\} ([0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def apiserver_requests(api: k8s.ApiClient) -> collections.Counter[str]:
    """The API server's own count of the requests the broker makes, by kind, since it started
    (every client's: on a shared cluster others add to it). Needs get on /metrics."""
    request = api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    answer = api.call_api(*request, _request_timeout=30)
    answer.read()  # type: ignore[no-untyped-call]
    counts: collections.Counter[str] = collections.Counter()
    for line in (answer.data or b"").decode().splitlines():
        found = _REQUEST.match(line)
        if found is None:
            continue
        labels = dict(_LABEL.findall(found.group(1)))
        kind = APISERVER_KINDS.get((labels.get("resource", ""), labels.get("verb", "")))
        if kind is not None and not labels.get("subresource"):
            counts[kind] += int(float(found.group(2)))
    return counts


# ------------------------------------------------------------------ the broker's process


@dataclass
class BrokerProcess:
    """The running broker: its address, its /proc figures and, once stopped, its counts."""

    url: str
    child: subprocess.Popen[bytes]
    counts_file: Path
    log_file: Path
    kubernetes: dict[str, int] = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.child.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        """SIGTERM, then read the Kubernetes calls it counted."""
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            self.child.wait(30)
        if self.counts_file.exists():
            self.kubernetes = json.loads(self.counts_file.read_text())

    def log_lines(self) -> list[str]:
        """What the broker logged (warnings and worse: each refusal is one line)."""
        return self.log_file.read_text(errors="replace").splitlines()


@contextlib.contextmanager
def broker_process(
    sakura_url: str, cert: Path, key: Path, *, latest_ttl: float = 30.0
) -> Iterator[BrokerProcess]:
    """Start the broker (KUBECONFIG's cluster, Sakura at `sakura_url`) and wait until it
    listens; killed on the way out if `stop` was not called."""
    port = free_port()
    counts, log = cert.with_name("kubernetes-calls.json"), cert.with_name("broker.log")
    with log.open("wb") as log_output:
        child = subprocess.Popen(
            [
                *(sys.executable, "-m", "benchmarks.broker_process", "--sakura-url", sakura_url),
                *("--port", str(port), "--cert", str(cert), "--key", str(key)),
                *("--counts", str(counts), "--latest-ttl", str(latest_ttl)),
            ],
            stdout=log_output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(port, child)
        yield BrokerProcess(f"https://127.0.0.1:{port}", child, counts, log)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"the broker exited with {child.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise SystemExit("the broker did not listen within 60 s")


def kind_of(path: str) -> str:
    """What a Kubernetes API call is, by its path."""
    if path.endswith("/tokenreviews"):
        return "TokenReview"
    if path.endswith("/subjectaccessreviews"):
        return "SubjectAccessReview"
    return "pod read" if "/pods/" in path else path


def serve(args: argparse.Namespace) -> int:
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
        counts[kind_of(path)] += 1
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
        port=int(args.port),
        ssl_certfile=args.cert,
        ssl_keyfile=args.key,
        log_level="warning",
        access_log=False,
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("--sakura-url", "--port", "--cert", "--key", "--counts", "--latest-ttl"):
        parser.add_argument(name, required=True)
    return serve(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
