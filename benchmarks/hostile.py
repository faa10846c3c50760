"""Benchmark: issue 15's attacks, each for a bounded time, against a real injector.

    KUBECONFIG=... python -m benchmarks.hostile [--seconds 30]

The injector runs as `python -m injector serve` in its own process (pinned to CPU 0 when there
are two), over real TLS on 127.0.0.1, with real TokenReview/SubjectAccessReview against the
cluster in $KUBECONFIG and the emulator playing Sakura. Every row starts a fresh injector, so
one attack's leftovers (memory, half-open sockets) never count against the next. The injector
starts with the usual container soft limit of 1024 descriptors (its hard limit is kept, so a
process that raises its own soft limit may).

While an attack runs (from another process, source address 127.0.0.2, niced so that its own
client work does not slow the victim's client on the CPU they share: see `--attacker-cpu`), a
well-behaved client (127.0.0.1) keeps fetching two secrets through the broker with a fresh
bound token each time (one TokenReview each, like a new pod's init container), keeps sending a
normal AdmissionReview to /mutate and probes /healthz and /readyz the way the kubelet does (a
new connection each time, 1 s timeout), on the probe port when `serve --help` offers one, else
on the broker port. Rows 6-8 are checks of what the attacker learns or reads; 9-10 are about the
manifests and templates and are not run here.

Where the attacker runs. On a two-core machine it shares a CPU with the victim's client (the
default) or, with `--attacker-cpu injector`, with the injector. Neither is clean: niced on the
victim client's CPU, its own client work (thousands of connects a second in rows 1 and 2, TLS
for 3 MiB bodies in row 4, requests in row 5) raised the victim's p50 fetch four- to
sixteen-fold in runs on a busy machine where the same attack from the injector's CPU left it
at its unattacked figure; on the injector's CPU it takes the injector's CPU time instead, and
in a quiet run row 2's reconnect loop (reset at once, so it retries at once) then cost more.
Compare both placements before blaming the injector for a row.

Goals per row: probes 100% answered within 1 s; the victim's p99 fetch and review within 2x
the unattacked row's; no failed victim fetch; the injector's peak RSS within 256 MiB (its
container limit); rows 6-8: nothing read or learned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # support.client_certs
# hostile_attacks sits beside this file; spawned children get the same path
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_attacks import (
    ATTACKER_ADDRESS,
    AUDIENCE,
    BLOB,
    VAULT_A,
    VAULT_B,
    Spec,
    attacker_main,
    fetch_body,
)
from support.client_certs import issue_client_cert

from emulator.app import Emulator, EmulatorConfig
from emulator.server import run_in_thread
from injector.kube import api_client as kube_api_client
from injector.operations.certs import generate_ca, issue_serving_cert
from injector.operations.reviews import pod_create_review

VICTIM_SECRETS = ("db", "api")
GONE = "gone"
"""Deleted in row 7 after its version 1 was fetched."""
GHOST = "ghost"
"""Granted to the victim but absent from Sakura: what a forged review may reveal."""
SEED: dict[str, Any] = {
    "vaults": [
        {
            "id": VAULT_A,
            "secrets": {
                "db": "db-value",
                "api": "api-value",
                BLOB: "\x01" * 65536,
                GONE: "gone-value-1",
                "db-password": "a-db-password",
                "stripe-key": "a-stripe-key",
            },
        },
        {"id": VAULT_B, "secrets": {"db-password": "b-db-password", "stripe-key": "b-stripe"}},
    ]
}
RSS_LIMIT_MIB = 256
PROBE_TIMEOUT = 1.0
FETCH_TIMEOUT = 15.0
FETCH_EVERY = 0.1
REVIEW_EVERY = 0.2
PROBE_EVERY = 0.25
MAX_IN_FLIGHT = 20
"""Victim fetches (and reviews) waiting at once; past it the victim skips a beat."""
INJECTOR_NOFILE = 1024


@dataclass(frozen=True)
class Attack:
    key: str
    label: str
    remote: bool
    """Run in the attacker process (load) rather than in this one (a check)."""
    client_ca: bool = False
    """Serve the webhook port with `--webhook-client-ca-file`: the victim's reviews carry the
    API server's client certificate, the attacker has none."""
    judged: bool = True
    """Whether the row's finding counts toward its verdict (row 8 shows what a tenant learns
    where nothing keeps it off the webhook port; the default install's NetworkPolicy does,
    which loopback cannot run)."""


ATTACKS = (
    Attack("baseline", "0 unattacked", remote=False),
    Attack("idle-tls", "1 idle TLS conns", remote=True),
    Attack("silent", "2 silent sockets", remote=True),
    Attack("huge-answer", "3 huge answers, unread", remote=True),
    Attack("mutate-bombs", "4 3 MiB lists to /mutate", remote=True),
    Attack("kube-flood", "5 TokenReview/SAR flood", remote=True),
    Attack("cross-pair", "6 cross-pair read", remote=False),
    Attack("pinned-deleted", "7 deleted pinned version", remote=False),
    Attack("forged-review", "8 forged review, no policy", remote=False, judged=False),
    Attack("forged-review", "8b forged review, client CA", remote=False, client_ca=True),
)
AGAIN = Attack("baseline", "0 unattacked, again", remote=False)
"""The baseline once more at the end: the reference is the slower of the two (shared CPUs)."""
OFFLINE = (
    ("9 PriorityClass", "n/a (manifest)"),
    ("10 template errors", "n/a (template)"),
)


# -- the cluster: three tenants, each a namespace with a ServiceAccount and a Pending pod ----


@dataclass(frozen=True)
class Tenant:
    namespace: str
    pod_uid: str


def grant_rules(pairs: list[tuple[str, str]]) -> list[k8s.V1PolicyRule]:
    """`vaults` VAULT and `secrets` both NAME (grants before issue 15) and VAULT/NAME (after)."""
    vaults = sorted({vault for vault, _ in pairs})
    names = sorted({name for _, name in pairs} | {f"{vault}/{name}" for vault, name in pairs})
    return [
        k8s.V1PolicyRule(
            api_groups=["sakura-secrets.io"],
            resources=[resource],
            resource_names=items,
            verbs=["get"],
        )
        for resource, items in (("vaults", vaults), ("secrets", names))
    ]


def make_tenant(api: k8s.ApiClient, namespace: str, pairs: list[tuple[str, str]]) -> Tenant:
    core = k8s.CoreV1Api(api)
    rbac = k8s.RbacAuthorizationV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    core.create_namespaced_service_account(
        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="app"))
    )
    if pairs:
        rbac.create_namespaced_role(
            namespace, k8s.V1Role(metadata=k8s.V1ObjectMeta(name="read"), rules=grant_rules(pairs))
        )
        rbac.create_namespaced_role_binding(
            namespace,
            k8s.V1RoleBinding(
                metadata=k8s.V1ObjectMeta(name="read"),
                role_ref=k8s.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="read"
                ),
                subjects=[
                    k8s.RbacV1Subject(kind="ServiceAccount", name="app", namespace=namespace)
                ],
            ),
        )
    body = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="app"),
        spec=k8s.V1PodSpec(
            service_account_name="app",
            automount_service_account_token=False,
            containers=[k8s.V1Container(name="app", image="local/busybox:1")],
        ),
    )
    for _ in range(100):
        try:
            pod = core.create_namespaced_pod(namespace, body)
            break
        except k8s.ApiException as exc:
            if exc.status != 403:  # the ServiceAccount is not there yet
                raise
            time.sleep(0.2)
    else:
        raise SystemExit(f"the pod in {namespace} could not be created")
    assert pod.metadata is not None
    return Tenant(namespace, str(pod.metadata.uid))


def bound_token(api: k8s.ApiClient, tenant: Tenant) -> str:
    """A fresh token bound to the tenant's pod: each one costs the broker a TokenReview."""
    answer = k8s.CoreV1Api(api).create_namespaced_service_account_token(
        "app",
        tenant.namespace,
        k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=[AUDIENCE],
                expiration_seconds=600,
                bound_object_ref=k8s.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name="app", uid=tenant.pod_uid
                ),
            )
        ),
    )
    assert answer.status is not None
    return str(answer.status.token)


# -- the injector under test ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_flags() -> set[str]:
    """The `serve` flags this checkout has (the probe port and timeouts are new in issue 15)."""
    done = subprocess.run(
        [sys.executable, "-m", "injector", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(re.findall(r"(--[a-z][a-z-]+)", done.stdout))


def _container_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = INJECTOR_NOFILE if hard == resource.RLIM_INFINITY else min(INJECTOR_NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@dataclass
class Injector:
    process: subprocess.Popen[bytes]
    webhook: str
    broker: str
    probes: str
    log: Path

    def status(self, field_name: str) -> int:
        """A /proc/PID/status figure in KiB (VmRSS, VmHWM); 0 once the process is gone."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User and system CPU time the process has used so far (0 once it is gone)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def descriptors(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.process.pid}/fd"))
        except OSError:
            return 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass(frozen=True)
class Setup:
    kubeconfig: str
    workdir: Path
    emulator_url: str
    ca_pem: bytes
    flags: frozenset[str]
    injector_namespace: str
    victim_namespace: str
    pin: bool
    client_ca_file: Path | None = None
    client_cert: tuple[Path, Path] | None = None
    """The API server's client certificate and key (signed by `client_ca_file`), for row 8b."""


def start_injector(setup: Setup, *, client_ca: bool = False) -> Injector:
    webhook_port, broker_port = free_port(), free_port()
    args = [
        "serve", "--host", "127.0.0.1", "--port", str(webhook_port),
        "--broker-port", str(broker_port),
        "--tls-cert-file", str(setup.workdir / "tls.crt"),
        "--tls-key-file", str(setup.workdir / "tls.key"),
        "--init-image", "local/init:bench", "--namespace", setup.injector_namespace,
        "--log-level", "warning",
    ]  # fmt: skip
    probes = f"https://127.0.0.1:{broker_port}"
    if "--probe-port" in setup.flags:
        probe_port = free_port()
        args += ["--probe-port", str(probe_port)]
        probes = f"http://127.0.0.1:{probe_port}"
    if client_ca:
        assert setup.client_ca_file is not None, "a client CA row needs Setup.client_ca_file"
        args += ["--webhook-client-ca-file", str(setup.client_ca_file)]
    command = [sys.executable, "-m", "injector", *args]
    if setup.pin:
        command = ["taskset", "-c", "0", *command]
    env = dict(os.environ)
    env.update(
        KUBECONFIG=setup.kubeconfig,
        SAKURA_ACCESS_TOKEN="bench",
        SAKURA_ACCESS_TOKEN_SECRET="bench-secret",
        SAKURA_ENDPOINTS_SECRETMANAGER=setup.emulator_url,
    )
    log = setup.workdir / f"injector-{webhook_port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, preexec_fn=_container_nofile
        )
    return Injector(
        process, f"https://127.0.0.1:{webhook_port}", f"https://127.0.0.1:{broker_port}",
        probes, log,
    )  # fmt: skip


# -- the well-behaved client ----------------------------------------------------------------


def victim_review(namespace: str, secret: str, uid: str) -> bytes:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "app-",
            "namespace": namespace,
            "annotations": {
                "sakura-secrets.io/inject": "true",
                "sakura-secrets.io/vault-id": VAULT_A,
                "sakura-secrets.io/secret-value": secret,
            },
        },
        "spec": {
            "serviceAccountName": "app",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "containers": [{"name": "app", "image": "local/busybox:1"}],
        },
    }
    return json.dumps(pod_create_review(pod, namespace=namespace, uid=uid)).encode()


@dataclass
class Samples:
    fetches: list[float] = field(default_factory=list)
    fetch_failures: int = 0
    first_failure: str = ""
    reviews: list[float] = field(default_factory=list)
    review_failures: int = 0
    probes: int = 0
    probes_in_time: int = 0
    peak_fds: int = 0
    peak_rss_kib: int = 0
    injector_cpu: float = 0.0
    """The injector's share of one CPU while the row ran (1.0: a whole core)."""


class Victim:
    """Fetches, reviews and probes at a steady pace until `stop` is set."""

    def __init__(
        self,
        injector: Injector,
        ca_pem: bytes,
        namespace: str,
        client_cert: tuple[Path, Path] | None = None,
    ) -> None:
        self.injector = injector
        self.namespace = namespace
        self.trust = ssl.create_default_context(cadata=ca_pem.decode())
        """Trusts the injector's CA and presents no certificate: what anyone can make."""
        self.tls = ssl.create_default_context(cadata=ca_pem.decode())
        if client_cert is not None:  # the API server's, for the webhook port
            self.tls.load_cert_chain(*client_cert)
        fresh = httpx.Limits(max_keepalive_connections=0)
        self.http = httpx.AsyncClient(verify=self.tls, timeout=FETCH_TIMEOUT, limits=fresh)
        self.samples = Samples()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def fetch(self, token: str, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(
            f"{self.injector.broker}/v1/secrets",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def review(self, secret: str) -> dict[str, Any]:
        body = victim_review(self.namespace, secret, str(uuid.uuid4()))
        answer = await self.http.post(
            f"{self.injector.webhook}/mutate",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        answer.raise_for_status()
        response: dict[str, Any] = answer.json()["response"]
        return response

    async def run(self, tokens: list[str], stop: asyncio.Event) -> Samples:
        """Fetches and reviews start on a clock (new pods keep coming, whatever the answers
        take); probes go one after another, each within its timeout, as the kubelet's."""
        await asyncio.gather(
            self._paced(stop, FETCH_EVERY, lambda: self._one_fetch(tokens), overlap=True),
            self._paced(stop, REVIEW_EVERY, self._one_review, overlap=True),
            self._paced(stop, PROBE_EVERY, self._one_probe),
            self._paced(stop, 0.05, self._one_sample),
        )
        return self.samples

    async def _paced(
        self,
        stop: asyncio.Event,
        every: float,
        step: Callable[[], Coroutine[Any, Any, None]],
        *,
        overlap: bool = False,
    ) -> None:
        running: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            started = time.monotonic()
            if not overlap:
                await step()
            elif len(running) < MAX_IN_FLIGHT:
                task = asyncio.create_task(step())
                running.add(task)
                task.add_done_callback(running.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, every - (time.monotonic() - started)))
        await asyncio.gather(*running)

    async def _one_fetch(self, tokens: list[str]) -> None:
        token = tokens.pop() if len(tokens) > 1 else tokens[0]  # the last one is reused
        started = time.monotonic()
        try:
            answer = await asyncio.wait_for(
                self.fetch(token, fetch_body(VAULT_A, list(VICTIM_SECRETS))), FETCH_TIMEOUT
            )
            failure = "" if answer.status_code == 200 else f"HTTP {answer.status_code}"
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            failure = type(exc).__name__
        self.samples.fetches.append(time.monotonic() - started)
        if failure:
            self.samples.fetch_failures += 1
            self.samples.first_failure = self.samples.first_failure or failure

    async def _one_review(self) -> None:
        started = time.monotonic()
        try:
            response = await asyncio.wait_for(self.review(VICTIM_SECRETS[0]), FETCH_TIMEOUT)
            ok = bool(response.get("allowed"))
        except (httpx.HTTPError, TimeoutError, OSError, KeyError, ValueError):
            ok = False
        self.samples.reviews.append(time.monotonic() - started)
        self.samples.review_failures += not ok

    async def _one_probe(self) -> None:
        path = "/healthz" if self.samples.probes % 2 == 0 else "/readyz"
        self.samples.probes += 1
        try:
            async with httpx.AsyncClient(verify=self.tls, timeout=PROBE_TIMEOUT) as probe:
                answer = await asyncio.wait_for(
                    probe.get(self.injector.probes + path), PROBE_TIMEOUT
                )
            self.samples.probes_in_time += answer.status_code == 200
        except (httpx.HTTPError, TimeoutError, OSError):
            pass

    async def _one_sample(self) -> None:
        self.samples.peak_fds = max(self.samples.peak_fds, self.injector.descriptors())
        self.samples.peak_rss_kib = max(self.samples.peak_rss_kib, self.injector.status("VmRSS"))


# -- checks run in this process (rows 6-8) ---------------------------------------------------


@dataclass
class Context:
    """What a row's checks need: the cluster, the emulator, the victim's client."""

    api: k8s.ApiClient
    emulator: Emulator
    victim: Victim
    victim_tenant: Tenant
    attacker_tenant: Tenant
    seconds: float
    listing_ttl: float


async def check_cross_pair(ctx: Context) -> tuple[str, bool]:
    """Granted A/db-password and B/stripe-key; asks for B/db-password."""
    token = await asyncio.to_thread(bound_token, ctx.api, ctx.attacker_tenant)
    answer = await ctx.victim.fetch(token, fetch_body(VAULT_B, ["db-password"]))
    read = answer.status_code == 200 and "b-db-password" in answer.text
    return (f"B/db-password: HTTP {answer.status_code}" + (", value read" if read else "")), (
        not read
    )


async def check_pinned_deleted(ctx: Context) -> tuple[str, bool]:
    """Fetch GONE@1, delete GONE in Sakura, ask again past the listing's lifetime."""
    token = await asyncio.to_thread(bound_token, ctx.api, ctx.victim_tenant)
    before = await ctx.victim.fetch(token, fetch_body(VAULT_A, [GONE], 1))
    if before.status_code != 200:
        return f"{GONE}@1 not served before deletion (HTTP {before.status_code})", False
    ctx.emulator.store.delete(VAULT_A, GONE)
    deleted = time.monotonic()
    await asyncio.sleep(max(0.0, ctx.listing_ttl + 2 - (time.monotonic() - deleted)))
    after = await ctx.victim.fetch(token, fetch_body(VAULT_A, [GONE], 1))
    waited = time.monotonic() - deleted
    served = after.status_code == 200 and "gone-value-1" in after.text
    return (
        f"{waited:.0f}s after deletion: HTTP {after.status_code}"
        + (", old value served" if served else "")
    ), not served


async def check_forged_review(ctx: Context) -> tuple[str, bool]:
    """From the attacker's address, reviews naming the victim's namespace and ServiceAccount."""
    # the attacker has the injector's CA (it is in every pod's spec), not the API server's key
    transport = httpx.AsyncHTTPTransport(verify=ctx.victim.trust, local_address=ATTACKER_ADDRESS)
    answers: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(transport=transport, timeout=FETCH_TIMEOUT) as http:
        for secret in (VICTIM_SECRETS[0], "stripe-key", GHOST):
            body = victim_review(ctx.victim_tenant.namespace, secret, str(uuid.uuid4()))
            try:
                got = await http.post(
                    f"{ctx.victim.injector.webhook}/mutate",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
            except httpx.HTTPError as exc:
                answers[secret] = {"refused": type(exc).__name__}
                continue
            if got.status_code != 200:
                answers[secret] = {"refused": f"HTTP {got.status_code}"}
                continue
            response = got.json().get("response", {})
            message = str((response.get("status") or {}).get("message", ""))
            answers[secret] = {"allowed": bool(response.get("allowed")), "message": message}
    granted, ungranted, ghost = (answers[s] for s in (VICTIM_SECRETS[0], "stripe-key", GHOST))
    learned = []
    if "allowed" in granted and "allowed" in ungranted and granted != ungranted:
        learned.append("grants")
    if "allowed" in granted and "allowed" in ghost and granted != ghost:
        learned.append("existence")
    if any(re.search(r"version \d|@\d", a.get("message", "")) for a in answers.values()):
        learned.append("versions")
    if not learned:
        refused = sorted({str(a["refused"]) for a in answers.values() if "refused" in a})
        return "learns nothing" + (f" ({', '.join(refused)})" if refused else ""), True
    return "learns " + ", ".join(learned), False


CHECKS: dict[str, Callable[[Context], Coroutine[Any, Any, tuple[str, bool]]]] = {
    "cross-pair": check_cross_pair,
    "pinned-deleted": check_pinned_deleted,
    "forged-review": check_forged_review,
}


# -- one row ---------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    samples: Samples
    peak_rss_mib: float
    finding: str = ""
    finding_ok: bool = True
    tally: dict[str, int] = field(default_factory=dict)


async def wait_ready(injector: Injector, tls: ssl.SSLContext) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(verify=tls, timeout=2) as http:
        while time.monotonic() < deadline:
            if injector.process.poll() is not None:
                raise SystemExit(f"the injector exited:\n{injector.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(injector.probes + "/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise SystemExit(f"the injector was not ready in 60 s:\n{injector.log.read_text()[-3000:]}")


async def run_row(
    attack: Attack, setup: Setup, spec: Spec, make_context: Callable[[Victim], Context]
) -> Row:
    injector = start_injector(setup, client_ca=attack.client_ca)
    client_cert = setup.client_cert if attack.client_ca else None
    victim = Victim(injector, setup.ca_pem, setup.victim_namespace, client_cert)
    ctx = make_context(victim)
    process = None
    tally: dict[str, int] = {}
    try:
        tokens, _ = await asyncio.gather(
            asyncio.to_thread(make_tokens, ctx, math.ceil(ctx.seconds / FETCH_EVERY) + 2),
            wait_ready(injector, victim.tls),
        )
        warm = await victim.fetch(tokens.pop(), fetch_body(VAULT_A, list(VICTIM_SECRETS)))
        if warm.status_code != 200:
            raise SystemExit(f"the victim's warm-up fetch failed: {warm.status_code} {warm.text}")
        if not (await victim.review(VICTIM_SECRETS[0])).get("allowed"):
            raise SystemExit("the victim's warm-up review was denied")
        stop_attacker: Any = None
        pipe: Connection | None = None
        if attack.remote:
            spawn = multiprocessing.get_context("spawn")
            pipe, child_end = spawn.Pipe()
            stop_attacker = spawn.Event()
            process = spawn.Process(
                target=attacker_main,
                args=(
                    dataclasses.replace(
                        spec, attack=attack.key, webhook=injector.webhook, broker=injector.broker
                    ),
                    child_end,
                    stop_attacker,
                ),
                daemon=True,
            )
            process.start()
            if not await asyncio.to_thread(pipe.poll, 60):
                raise SystemExit(f"the attacker of {attack.label} did not start")
            pipe.recv()
        stop = asyncio.Event()
        cpu_before, started = injector.cpu_seconds(), time.monotonic()
        run = asyncio.create_task(victim.run(tokens, stop))
        check = CHECKS.get(attack.key)
        finding: tuple[str, bool] = ("", True)
        check_task = asyncio.create_task(check(ctx)) if check else None
        await asyncio.sleep(ctx.seconds)
        stop.set()
        samples = await run
        samples.injector_cpu = (injector.cpu_seconds() - cpu_before) / (time.monotonic() - started)
        if check_task is not None:
            finding = await check_task
        if process is not None and pipe is not None:
            stop_attacker.set()
            if await asyncio.to_thread(pipe.poll, 30):
                tally = pipe.recv()
        peak = max(injector.status("VmHWM"), samples.peak_rss_kib) / 1024
        judged = finding[1] or not attack.judged
        return Row(attack.key, attack.label, samples, peak, finding[0], judged, tally)
    finally:
        if process is not None:
            process.join(10)
            if process.is_alive():
                process.kill()
        await victim.aclose()
        injector.stop()


def make_tokens(ctx: Context, n: int) -> list[str]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: bound_token(ctx.api, ctx.victim_tenant), range(n)))


# -- the table -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def render(rows: list[Row]) -> str:
    bases = [row.samples for row in rows if row.key == "baseline"]
    base_fetch = max(percentile(b.fetches, 0.99) for b in bases)
    base_review = max(percentile(b.reviews, 0.99) for b in bases)
    header = (
        f"{'attack':<28} {'fetch p50':>9} {'p99':>7} {'n':>4} {'fail':>4} {'review p99':>10} "
        f"{'probes<=1s':>10} {'RSS MiB':>8} {'fds':>5} {'CPU':>4}  {'verdict':<7} finding"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        s = row.samples
        fetch99, review99 = percentile(s.fetches, 0.99), percentile(s.reviews, 0.99)
        probes = 100.0 * s.probes_in_time / s.probes if s.probes else 0.0
        problems = []
        if probes < 100:
            problems.append("probes")
        if not fetch99 <= 2 * base_fetch or s.fetch_failures:
            problems.append("fetch")
        if not review99 <= 2 * base_review or s.review_failures:
            problems.append("review")
        if row.peak_rss_mib > RSS_LIMIT_MIB:
            problems.append("rss")
        if not row.finding_ok:
            problems.append("finding")
        verdict = "ok" if not problems else "FAIL"
        note = row.finding or ", ".join(f"{k}: {v}" for k, v in sorted(row.tally.items()))
        if s.first_failure:
            note = f"victim: {s.first_failure}; {note}"
        lines.append(
            f"{row.label:<28} {1000 * percentile(s.fetches, 0.5):>7.0f}ms {1000 * fetch99:>5.0f}ms "
            f"{len(s.fetches):>4} {s.fetch_failures:>4} {1000 * review99:>8.0f}ms {probes:>9.0f}% "
            f"{row.peak_rss_mib:>8.0f} {s.peak_fds:>5} {100 * s.injector_cpu:>3.0f}%  "
            f"{verdict + ('(' + ','.join(problems) + ')' if problems else ''):<7} {note}"
        )
    for label, text in OFFLINE:
        lines.append(f"{label:<28} {text}")
    lines.append("")
    lines.append(
        f"goals: probes 100% answered within {PROBE_TIMEOUT:g} s; victim p99 fetch <= "
        f"{2 * 1000 * base_fetch:.0f} ms and review <= {2 * 1000 * base_review:.0f} ms (2x the "
        f"slower unattacked row) with no failure; peak RSS <= {RSS_LIMIT_MIB} MiB; rows 6, 7 "
        "and 8b: nothing read or learned; row 8's finding is not judged: it is what a tenant "
        "learns where nothing keeps it off the webhook port (the default install's "
        "NetworkPolicy does; loopback cannot run one), 8b the same with a webhook client CA"
    )
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


@contextlib.contextmanager
def cluster_tenants(api: k8s.ApiClient, run_id: str) -> Iterator[tuple[Tenant, Tenant, Tenant]]:
    names = [f"hostile-{run_id}-{who}" for who in ("victim", "tenant", "nogrant")]
    try:
        victim = make_tenant(api, names[0], [(VAULT_A, n) for n in (*VICTIM_SECRETS, GONE, GHOST)])
        tenant = make_tenant(
            api, names[1], [(VAULT_A, BLOB), (VAULT_A, "db-password"), (VAULT_B, "stripe-key")]
        )
        nogrant = make_tenant(api, names[2], [])
        yield victim, tenant, nogrant
    finally:
        for name in names:
            with contextlib.suppress(k8s.ApiException):
                k8s.CoreV1Api(api).delete_namespace(name)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=30.0,
        help="length of each attack (30: ~300 victim samples, so a p99 is not one slow call)",
    )
    parser.add_argument("--idle", type=int, default=320, help="idle TLS connections (row 1)")
    parser.add_argument("--silent", type=int, default=1100, help="silent sockets (row 2)")
    parser.add_argument("--unread", type=int, default=6, help="unread huge answers (row 3)")
    parser.add_argument("--bombs", type=int, default=8, help="concurrent 3 MiB bodies (row 4)")
    parser.add_argument("--flood", type=int, default=10, help="concurrent floods of each kind (5)")
    parser.add_argument("--only", default="", help="comma-separated attack keys (baseline always)")
    parser.add_argument(
        "--attacker-cpu",
        choices=("injector", "victim"),
        default="victim",
        help="on two CPUs, whose CPU the attacker shares (see the module's docstring)",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        print('set KUBECONFIG (e.g. eval "$(e2e/cluster.sh env)")', file=sys.stderr)
        return 2
    pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if pin:
        os.sched_setaffinity(0, {1})
    wanted = {"baseline", *filter(None, args.only.split(","))}
    unknown = wanted - {a.key for a in ATTACKS}
    if unknown:
        keys = ", ".join(a.key for a in ATTACKS[1:])
        print(f"--only: unknown attack {sorted(unknown)[0]!r}; choose from {keys}", file=sys.stderr)
        return 2
    attacks = [a for a in ATTACKS if not args.only or a.key in wanted]
    from injector.broker.tuning import BrokerTuning

    listing_ttl = float(getattr(BrokerTuning(), "listing_ttl", 30.0))
    flags = serve_flags()
    api = kube_api_client(kubeconfig)
    run_id = uuid.uuid4().hex[:6]
    emulator = Emulator(
        EmulatorConfig(access_token="bench", access_token_secret="bench-secret", seed=SEED)
    )
    ca = generate_ca()
    leaf = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    client_ca = generate_ca("webhook-client-ca")
    api_server = issue_client_cert(client_ca, "kube-apiserver-webhook-client")
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_in_thread(emulator) as emulator_url,
        cluster_tenants(api, run_id) as (victim_t, tenant_t, nogrant_t),
    ):
        workdir = Path(tmp)
        (workdir / "tls.crt").write_bytes(leaf.cert_pem)
        (workdir / "tls.key").write_bytes(leaf.key_pem)
        (workdir / "client-ca.crt").write_bytes(client_ca.cert_pem)
        (workdir / "client.crt").write_bytes(api_server.cert_pem)
        (workdir / "client.key").write_bytes(api_server.key_pem)
        setup = Setup(
            kubeconfig, workdir, emulator_url, ca.cert_pem, frozenset(flags),
            f"hostile-{run_id}-injector", victim_t.namespace, pin,
            workdir / "client-ca.crt", (workdir / "client.crt", workdir / "client.key"),
        )  # fmt: skip
        spec = Spec(
            attack="", webhook="", broker="", ca_pem=ca.cert_pem,
            tenant_token=bound_token(api, tenant_t), tenant_namespace=tenant_t.namespace,
            nogrant_token=bound_token(api, nogrant_t), idle=args.idle, silent=args.silent,
            unread=args.unread, bombs=args.bombs, flood=args.flood,
            cpu=(0 if args.attacker_cpu == "injector" else 1) if pin else None,
        )  # fmt: skip

        def context(victim: Victim) -> Context:
            return Context(api, emulator, victim, victim_t, tenant_t, args.seconds, listing_ttl)

        new = sorted(flags & {"--probe-port", "--handshake-timeout", "--send-timeout"})
        print(
            f"injector: {sys.executable} -m injector serve (pinned to CPU 0: {pin}; attacker "
            f"on the {args.attacker_cpu}'s CPU; "
            f"soft descriptor limit {INJECTOR_NOFILE}); issue-15 flags present: "
            f"{', '.join(new) or 'none'}; probes on "
            f"{'the probe port' if '--probe-port' in flags else 'the broker port'}; "
            f"{args.seconds:g} s per attack",
            flush=True,
        )
        rows = []
        for attack in [*attacks, AGAIN]:
            rows.append(asyncio.run(run_row(attack, setup, spec, context)))
            print(f"  done: {attack.label}", file=sys.stderr, flush=True)
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
