"""Soak: admissions and broker fetches at a steady rate for N minutes against one injector.

    KUBECONFIG=... python -m benchmarks.soak [--minutes 30] [--admissions 10] [--fetches 10]

The injector runs as `python -m injector serve` in its own process (pinned to CPU 0 when
there are two; the load generators and this script run on CPU 1), over real TLS on 127.0.0.1,
with real TokenReview/SubjectAccessReview against the cluster in $KUBECONFIG (a namespace with
a ServiceAccount granted the vault and its 5 secrets, and a pod the tokens are bound
to, as benchmarks/broker_load.py and hostile.py set up) and the emulator playing Sakura at its
real quota (100 calls per 60 s).

The load comes from wrk (Debian's `wrk`; not Python, so the client never competes with the
server for a GIL), one wrk per kind and per minute, each with a Lua script:
- admissions: POST /mutate with an opted-in pod's AdmissionReview (a new uid each time), on
  kept-alive connections as the API server sends them; an answer counts as good only when it
  is allowed and carries a patch.
- fetches: POST /v1/secrets for the 5 secrets, each on a new connection (`Connection: close`)
  as each pod's init container makes one, with bound tokens requested fresh every minute
  (`--tokens`, default 10: new pods keep arriving, so the broker's token cache keeps turning
  over); an answer counts as good only when it is HTTP 200 with the 5 secrets.
wrk negotiates TLS in full but does not check the certificate (all on 127.0.0.1).
The pace is steady but open to back-pressure: each connection waits `connections / rate`
seconds after an answer before its next request (wrk's `delay()`), so a slow server gets
fewer requests, never a pile-up; the achieved rate is printed.

At the end of each minute it prints the injector's RSS (/proc/PID/status VmRSS), its open
file descriptors (/proc/PID/fd), each kind's count, failures and p99 latency in that minute
(wrk's, measured from the request's first byte to the answer's last: a fetch's TCP and TLS
handshake are not in it), and the Sakura calls made; then the last minute over the first
(goal: flat, and no failure). The exit status is 1 when any request failed.

Figures on a shared machine are noisy: other work on the same cores shows up as p99 spikes in
a minute; a leak shows up as RSS or descriptors that keep growing minute after minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import ssl
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client as k8s

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# broker_load and hostile sit beside this file (as refresh_load imports broker_load)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_load import SECRETS, VAULT, quota_emulator
from hostile import (
    Injector,
    Setup,
    Tenant,
    bound_token,
    make_tenant,
    serve_flags,
    start_injector,
    victim_review,
    wait_ready,
)
from hostile_attacks import fetch_body
from wrk_load import Load, delay_ms, lua_script, report, require_wrk, wrk

from emulator.server import run_in_thread
from injector.kube import api_client as kube_api_client
from injector.operations.certs import generate_ca, issue_serving_cert

UID_MARK = "soakuidmark"
"""Stands for the review's uid in the admission body (no Lua pattern character in it): the
Lua script puts `soak-ROW-N` there for the row's Nth request, unique in the run."""

LUA_ADMISSION = """
wrk.method = "POST"
body = [==[@BODY@]==]
function request()
  sent = sent + 1
  return wrk.format(nil, "/mutate", {["Content-Type"] = "application/json"},
    (body:gsub("@UID_MARK@", "soak-@ROW@-" .. sent)))
end
function response(status, headers, answer)
  if status ~= 200 or not answer:find('"allowed":%s*true') or not answer:find('"patch"') then
    failed = failed + 1
  end
end
"""

LUA_FETCH = """
wrk.method = "POST"
tokens = @TOKENS@
body = [==[@BODY@]==]
function request()
  sent = sent + 1
  return wrk.format(nil, "/v1/secrets", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[(sent % #tokens) + 1],
    ["Connection"] = "close"}, body)
end
function response(status, headers, answer)
  local _, served = answer:gsub('"value":', "")
  if status ~= 200 or served ~= @SECRETS@ then failed = failed + 1 end
end
"""


@dataclass(frozen=True)
class Minute:
    index: int
    admissions: Load
    fetches: Load
    rss_mib: float
    fds: int
    sakura_calls: int


def admission_script(namespace: str, row: int, delay_ms: int) -> str:
    body = victim_review(namespace, SECRETS[0], UID_MARK).decode()
    return lua_script(LUA_ADMISSION, delay_ms, BODY=body, UID_MARK=UID_MARK, ROW=row)


def fetch_script(tokens: list[str], delay_ms: int) -> str:
    body = json.dumps(fetch_body(VAULT, list(SECRETS)))
    listed = "{" + ", ".join(f'"{t}"' for t in tokens) + "}"
    return lua_script(LUA_FETCH, delay_ms, TOKENS=listed, BODY=body, SECRETS=len(SECRETS))


# -- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    minutes: int
    interval: int
    admissions: float
    fetches: float
    connections: int
    tokens: int


def soak(
    plan: Plan,
    injector: Injector,
    workdir: Path,
    namespace: str,
    next_tokens: Iterator[list[str]],
    sakura_calls: Mapping[str, int],
) -> Iterator[Minute]:
    """One `Minute` per interval, the two wrk runs side by side."""
    admission, fetch = workdir / "admission.lua", workdir / "fetch.lua"
    for index in range(1, plan.minutes + 1):
        admission.write_text(
            admission_script(namespace, index, delay_ms(plan.connections, plan.admissions))
        )
        fetch.write_text(fetch_script(next(next_tokens), delay_ms(plan.connections, plan.fetches)))
        calls_before = sakura_calls.get("total", 0)
        admitting = wrk(injector.webhook, admission, plan.interval, plan.connections)
        fetching = wrk(injector.broker, fetch, plan.interval, plan.connections)
        admissions, fetches = report(admitting, "admissions"), report(fetching, "fetches")
        if injector.process.poll() is not None:
            raise SystemExit(f"the injector exited:\n{injector.log.read_text()[-3000:]}")
        yield Minute(
            index,
            admissions,
            fetches,
            injector.status("VmRSS") / 1024,
            injector.descriptors(),
            sakura_calls.get("total", 0) - calls_before,
        )


def fresh_tokens(
    pool: ThreadPoolExecutor, api: k8s.ApiClient, tenant: Tenant, count: int
) -> Iterator[list[str]]:
    """Each row's fresh tokens (new pods), the next row's requested while this one runs."""

    def batch() -> Future[list[str]]:
        return pool.submit(lambda: [bound_token(api, tenant) for _ in range(count)])

    coming = batch()
    while True:
        ready = coming.result()
        coming = batch()
        yield ready


# -- the table ----------------------------------------------------------------------------------


HEADER = (
    f"{'min':>4} {'adm/s':>6} {'adm p99':>8} {'adm fail':>8} {'fetch/s':>7} {'fetch p99':>9} "
    f"{'fetch fail':>10} {'RSS MiB':>8} {'fds':>5} {'sakura':>6}"
)


def row(minute: Minute, interval: int) -> str:
    a, f = minute.admissions, minute.fetches
    return (
        f"{minute.index:>4} {a.requests / interval:>6.1f} {a.p99_ms:>6.1f}ms {a.failed:>8} "
        f"{f.requests / interval:>7.1f} {f.p99_ms:>7.1f}ms {f.failed:>10} "
        f"{minute.rss_mib:>8.1f} {minute.fds:>5} {minute.sakura_calls:>6}"
    )


def ratio(last: float, first: float) -> str:
    return f"{last / first:.2f}x" if first else "n/a"


def summary(minutes: list[Minute]) -> list[str]:
    first, last = minutes[0], minutes[-1]
    failed = sum(m.admissions.failed + m.fetches.failed for m in minutes)
    total = sum(m.admissions.requests + m.fetches.requests for m in minutes)
    return [
        f"last/first minute: RSS {ratio(last.rss_mib, first.rss_mib)} "
        f"({first.rss_mib:.1f} -> {last.rss_mib:.1f} MiB), "
        f"fds {ratio(last.fds, first.fds)} ({first.fds} -> {last.fds}), "
        f"admission p99 {ratio(last.admissions.p99_ms, first.admissions.p99_ms)}, "
        f"fetch p99 {ratio(last.fetches.p99_ms, first.fetches.p99_ms)} (goal: flat)",
        f"peak: RSS {max(m.rss_mib for m in minutes):.1f} MiB, fds {max(m.fds for m in minutes)}",
        f"failed: {failed} of {total} requests (goal 0)",
    ]


# -- main -----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=30, help="how many rows (minutes)")
    parser.add_argument("--admissions", type=float, default=10.0, help="admissions a second")
    parser.add_argument("--fetches", type=float, default=10.0, help="fetches a second")
    parser.add_argument("--connections", type=int, default=2, help="wrk connections per kind")
    parser.add_argument("--tokens", type=int, default=10, help="fresh tokens a minute")
    parser.add_argument(
        "--interval", type=int, default=60, help="seconds per row (shorter only for tests)"
    )
    args = parser.parse_args()
    for name in ("minutes", "admissions", "fetches", "connections", "tokens", "interval"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name} must be above 0")
    return args


def main() -> int:
    args = parse_args()
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        print('set KUBECONFIG (e.g. eval "$(e2e/cluster.sh env)")', file=sys.stderr)
        return 2
    missing = require_wrk()
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
    plan = Plan(
        args.minutes, args.interval, args.admissions, args.fetches, args.connections, args.tokens
    )
    pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if pin:
        os.sched_setaffinity(0, {1})  # this script, the emulator and wrk; the injector on 0
    api = kube_api_client(kubeconfig)
    run_id = uuid.uuid4().hex[:6]
    namespace = f"soak-{run_id}"
    emulator = quota_emulator()
    ca = generate_ca()
    leaf = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    minutes: list[Minute] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_in_thread(emulator) as emulator_url,
        ThreadPoolExecutor(4) as pool,
    ):
        workdir = Path(tmp)
        (workdir / "tls.crt").write_bytes(leaf.cert_pem)
        (workdir / "tls.key").write_bytes(leaf.key_pem)
        injector: Injector | None = None
        try:
            tenant = make_tenant(api, namespace, [(VAULT, name) for name in SECRETS])
            setup = Setup(
                kubeconfig, workdir, emulator_url, ca.cert_pem, frozenset(serve_flags()),
                f"soak-{run_id}-injector", namespace, pin,
            )  # fmt: skip
            injector = start_injector(setup)
            asyncio.run(
                wait_ready(injector, ssl.create_default_context(cadata=ca.cert_pem.decode()))
            )
            print(
                f"injector: {sys.executable} -m injector serve, pid {injector.process.pid} "
                f"(pinned to CPU 0, wrk on CPU 1: {pin}); load: {plan.admissions:g} admissions/s "
                f"(kept-alive) and {plan.fetches:g} fetches/s x {len(SECRETS)} secrets (a new "
                f"connection each, {plan.tokens} fresh tokens a row), {plan.connections} wrk "
                f"connections each; {plan.minutes} rows of {plan.interval} s",
                flush=True,
            )
            print(HEADER, flush=True)
            rows = soak(
                plan, injector, workdir, namespace,
                fresh_tokens(pool, api, tenant, plan.tokens), emulator.knobs.calls,
            )  # fmt: skip
            for minute in rows:
                minutes.append(minute)
                print(row(minute, plan.interval), flush=True)
        finally:
            if injector is not None:
                injector.stop()
            with contextlib.suppress(k8s.ApiException):
                k8s.CoreV1Api(api).delete_namespace(namespace)
    for line in summary(minutes):
        print(line)
    return 1 if any(m.admissions.failed or m.fetches.failed for m in minutes) else 0


if __name__ == "__main__":
    sys.exit(main())
