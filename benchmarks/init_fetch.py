"""How fast and how small is the init container? A 10-secret fetch next to `import httpx`.

Runs `python -m sidecar` (the init container, exactly as rendered: its env, no arguments) in
broker mode (the default) against a broker stand-in over TLS, and in direct mode against the
emulator over HTTP, `python -c "import httpx"` and the floors below, each several times in a
fresh interpreter (all interleaved, so a busy machine slows them alike), and prints the median
wall time with its spread, the median CPU time (user + system: on a busy machine the wall time
also counts waiting for a core), the peak RSS (per child, from wait4) and the ratios to
`import httpx` next to the goals.

The servers run in a process of their own (`--serve`, started by this one), so the benchmark's
bookkeeping never delays their answers, and their memory is not the child's: wall time includes
waiting for their answers, RSS does not. The broker stand-in speaks the real wire protocol
(contract.broker) on uvicorn over TLS, but does not verify the token with the API server or
read Sakura: the real broker needs a cluster for TokenReview, and what is measured here is the
init container's own cost. The files go to a tmpfs (`--files-in`, default /dev/shm), as in a
pod, whose volume is a memory emptyDir. `--python` runs the children in another interpreter,
e.g. a venv made from requirements.txt alone, as in the image: httpx imports its command line
(click, rich, pygments) when those are installed, so a development venv inflates the baseline.

The floors are what any httpx-based fetch pays beyond `import httpx`: making a client (httpx
loads httpcore and h11 then, and the default TLS context reads certifi's CA bundle); one request
to the same broker stand-in over TLS, trusting only its CA, as broker mode does; and the
plan's reads one after the other with a bare httpx.Client (default TLS context, Basic auth),
what direct mode sends, with nothing of this project.
`--checkout DIR` runs another source tree in the children (e.g. an export of another commit).

    python benchmarks/init_fetch.py [--runs 5] [--python /path/to/python] [--files-in /dev/shm]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contract import Broker, Direct, FileSpec, Mode, Plan, SecretRef  # noqa: E402
from contract.broker import (  # noqa: E402
    SECRETS_PATH,
    FetchedSecret,
    SecretRequest,
    encode_answer,
    parse_request,
)
from emulator import Emulator, EmulatorConfig, run_in_thread  # noqa: E402
from injector.operations.certs import generate_ca, issue_serving_cert  # noqa: E402

VAULT = "110000000001"
TOKEN, SECRET = "bench-token", "bench-secret"
POD_TOKEN = "bench-pod-token"
SECRETS = 10
VALUES = {f"secret-{i}": f"value-{i}-" + "x" * 64 for i in range(SECRETS)}
WALL_GOAL, RSS_GOAL = 1.5, 1.2
MODES = ("broker", "direct")
CHILDREN = (*MODES, "httpx", "client", "request", "reads")
FLOORS = {
    "httpx": "import httpx",
    "client": "import httpx; httpx.Client()",
    "request": (  # nothing of this project: its modules are what the floor leaves out
        "import httpx, os, ssl; tls = ssl.create_default_context(cadata=os.environ['BENCH_CA']);"
        " headers = {'Authorization': 'Bearer ' + os.environ['BENCH_TOKEN']};"
        " httpx.post(os.environ['BENCH_URL'], content=os.environ['BENCH_BODY'], headers=headers,"
        " verify=tls).raise_for_status()"
    ),
    "reads": (  # what direct mode sends, one after the other, with nothing of this project
        "import httpx, os\n"
        "auth = (os.environ['SAKURA_ACCESS_TOKEN'], os.environ['SAKURA_ACCESS_TOKEN_SECRET'])\n"
        "with httpx.Client(auth=auth) as client:\n"
        f"    for i in range({SECRETS}):\n"
        "        body = {'Secret': {'Name': f'secret-{i}'}}\n"
        "        client.post(os.environ['BENCH_UNVEIL'], json=body).raise_for_status()\n"
    ),
}
"""The baseline and the floor rows: what each child runs with `python -c`."""
LABELS = {
    "broker": "python -m sidecar (broker)",
    "direct": "python -m sidecar (direct)",
    "httpx": 'python -c "import httpx"',
    "client": "floor: + httpx.Client()",
    "request": "floor: + one request (broker)",
    "reads": f"floor: + {SECRETS} reads (direct)",
}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Scope]]
Send = Callable[[Scope], Awaitable[None]]


async def broker_stand_in(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /v1/secrets with the pod's bearer token: every asked secret at version 1."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = dict(scope["headers"])
    if headers.get(b"authorization") != f"Bearer {POD_TOKEN}".encode():
        await _respond(send, 401, [b'{"error":"bad token"}'])
        return
    request = parse_request(body)
    items = tuple(FetchedSecret(s.name, s.version, 1, VALUES[s.name]) for s in request.secrets)
    await _respond(send, 200, encode_answer(items))


async def _respond(send: Send, status: int, pieces: list[bytes]) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"".join(pieces)})


LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
elapsed = time.perf_counter() - started
cpu = usage.ru_utime + usage.ru_stime
print(json.dumps([os.waitstatus_to_exitcode(status), elapsed, usage.ru_maxrss, cpu]))
"""
"""Starts one child and reports it. A child's peak RSS counts the memory of the process it was
forked from (until exec), so the children are forked from this small interpreter, not from the
benchmark, whose servers are larger than the init container."""


class Sample(NamedTuple):
    """One child: wall and CPU seconds (user + system; on a busy machine the wall time also
    counts waiting for a core, the CPU time does not) and its peak RSS in KiB."""

    wall: float
    cpu: float
    rss: int


def measure(argv: list[str], env: dict[str, str]) -> Sample:
    """One child process, run in the checkout it imports (`python -m` puts the working
    directory first on sys.path)."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCHER, *argv],
        env=env,
        cwd=env["PYTHONPATH"],
        capture_output=True,
        text=True,
        check=True,
    )
    code, elapsed, peak, cpu = json.loads(done.stdout)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} exited {code}")
    return Sample(float(elapsed), float(cpu), int(peak))


def plan_for(directory: Path, mode: Mode) -> Plan:
    return Plan(
        files=tuple(
            FileSpec(f"file-{i}", 0o400, secret=SecretRef(f"secret-{i}")) for i in range(SECRETS)
        ),
        directory=str(directory),
        mode=mode,
        vault_id=VAULT,
        uid=os.getuid(),
        gid=os.getgid(),
    )


def serve(work: Path) -> None:
    """`--serve WORK`: the servers' own process. Prints their URLs as one JSON line, serves
    until its stdin closes, then prints how many secrets the emulator unveiled."""
    seed = {"vaults": [{"id": VAULT, "name": "bench", "secrets": VALUES}]}
    emulator = Emulator(EmulatorConfig(access_token=TOKEN, access_token_secret=SECRET, seed=seed))
    served_tls = run_in_thread(
        broker_stand_in, ssl_certfile=str(work / "tls.crt"), ssl_keyfile=str(work / "tls.key")
    )
    with run_in_thread(emulator) as sakura_url, served_tls as url:
        print(json.dumps({"broker": url, "sakura": sakura_url}), flush=True)
        sys.stdin.read()
    print(json.dumps(emulator.knobs.calls["unveil"]), flush=True)


def file_system(path: Path) -> str:
    """The type of the file system `path` is on (the longest mount point above it)."""
    resolved, best, kind = str(path.resolve()), "", "unknown"
    with contextlib.suppress(OSError), open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[1]
            inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best, kind = point, fields[2]
    return kind


def httpx_cli(python: str, env: dict[str, str]) -> str:
    """Whether `import httpx` in the children also imports its command line (click, rich)."""
    probe = "import httpx, sys, json; print(json.dumps('httpx._main' in sys.modules))"
    out = subprocess.run([python, "-c", probe], env=env, capture_output=True, text=True)
    loaded = json.loads(out.stdout) if out.returncode == 0 else None
    return "with its CLI (click, rich)" if loaded else "without its CLI (as in the image)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="the children's interpreter")
    parser.add_argument(
        "--files-in", type=Path, default=Path("/dev/shm"), help="where the files go (a tmpfs)"
    )
    parser.add_argument(
        "--checkout",
        type=Path,
        default=ROOT,
        help="the source tree the children run (PYTHONPATH), e.g. another commit's worktree",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0

    base_env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(args.checkout.resolve())}
    results: dict[str, list[Sample]] = {name: [] for name in CHILDREN}
    ca = generate_ca()
    served = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    files_in = args.files_in if args.files_in.is_dir() else Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory(dir=files_in) as workdir:
        work = Path(workdir)
        (work / "tls.crt").write_bytes(served.cert_pem)
        (work / "tls.key").write_bytes(served.key_pem)
        (work / "token").write_text(POD_TOKEN + "\n")
        with _servers(work) as (url, sakura_url, unveiled):
            common = {**base_env, "SAKURA_SECRETS_TERMINATION_LOG": str(work / "termination")}
            envs = {
                "broker": {
                    **common,
                    "SAKURA_SECRETS_BROKER_URL": url,
                    "SAKURA_SECRETS_BROKER_CA": ca.cert_pem.decode(),
                    "SAKURA_SECRETS_TOKEN_FILE": str(work / "token"),
                },
                "direct": {
                    **common,
                    "SAKURA_ACCESS_TOKEN": TOKEN,
                    "SAKURA_ACCESS_TOKEN_SECRET": SECRET,
                    "SAKURA_ENDPOINTS_SECRETMANAGER": sakura_url,
                },
            }
            request = SecretRequest(VAULT, plan_for(work, Broker()).secrets())
            floor_env = {
                **envs["broker"],
                **envs["direct"],
                "BENCH_UNVEIL": f"{sakura_url}/secretmanager/vaults/{VAULT}/secrets/unveil",
                "BENCH_URL": url + SECRETS_PATH,
                "BENCH_CA": ca.cert_pem.decode(),
                "BENCH_TOKEN": POD_TOKEN,
                "BENCH_BODY": request.to_json().decode(),
            }
            modes: dict[str, Mode] = {"broker": Broker(), "direct": Direct("sakura-creds")}
            for run in range(args.runs):
                for name in CHILDREN:
                    if name in FLOORS:
                        argv = [args.python, "-c", FLOORS[name]]
                        results[name].append(measure(argv, floor_env))
                        continue
                    directory = work / f"{name}-{run}"
                    directory.mkdir()
                    plan = plan_for(directory, modes[name])
                    env = {**envs[name], "SAKURA_SECRETS_PLAN": plan.to_json()}
                    results[name].append(measure([args.python, "-m", "sidecar"], env))
                    written = sorted(p.name for p in directory.iterdir() if p.name[0] != ".")
                    if len(written) != SECRETS:
                        raise SystemExit(f"{name}: expected {SECRETS} files, found {written}")
        unveils = unveiled[0]
        baseline = httpx_cli(args.python, base_env)

    def summary(name: str) -> tuple[float, float, float, float, int]:
        walls = [sample.wall * 1000 for sample in results[name]]
        cpu = statistics.median(sample.cpu * 1000 for sample in results[name])
        peak = max(sample.rss for sample in results[name])
        return statistics.median(walls), min(walls), max(walls), cpu, peak

    print(f"{SECRETS}-secret fetch, {args.runs} runs each, interleaved; interpreter {args.python}")
    print(f"the children run {base_env['PYTHONPATH']}")
    print(f"baseline: httpx {baseline}")
    print(f"files written to {files_in} ({file_system(files_in)}; a pod's volume is a tmpfs)")
    print(f"{'':30}{'wall (median)':>14}{'spread':>14}{'CPU (median)':>14}{'peak RSS':>11}")
    httpx_wall, _, _, httpx_cpu, httpx_rss = summary("httpx")
    for name in CHILDREN:
        wall, low, high, cpu, rss = summary(name)
        spread = f"{low:.0f}-{high:.0f} ms"
        print(f"{LABELS[name]:30}{wall:>11.0f} ms{spread:>14}{cpu:>11.0f} ms{rss / 1024:>7.1f} MiB")

    def ratios(name: str) -> tuple[float, float, str]:
        wall, _, _, cpu, rss = summary(name)
        wall_ratio, cpu_ratio, rss_ratio = wall / httpx_wall, cpu / httpx_cpu, rss / httpx_rss
        label = f"ratio ({name})" if name in MODES else f"ratio (floor: {name})"
        text = f"{label:30}{wall_ratio:>12.2f} x{'':14}{cpu_ratio:>12.2f} x{rss_ratio:>9.2f} x"
        return wall_ratio, rss_ratio, text

    for name in CHILDREN:
        if name == "httpx":
            continue
        wall_ratio, rss_ratio, text = ratios(name)
        goals = (
            f"   goal <= {WALL_GOAL} x wall ({_verdict(wall_ratio, WALL_GOAL)}),"
            f" <= {RSS_GOAL} x RSS ({_verdict(rss_ratio, RSS_GOAL)})"
        )
        print(text + (goals if name in MODES else ""))
    # the direct runs and the reads floor's both unveil SECRETS values each
    per_fetch = unveils // args.runs - SECRETS
    print(f"Sakura calls (direct): {per_fetch} per fetch (the reads floor's {SECRETS} apart)")
    return 0


@contextlib.contextmanager
def _servers(work: Path) -> Iterator[tuple[str, str, list[int]]]:
    """The broker stand-in's and the emulator's URLs, served by `--serve` in its own process;
    the list gets the emulator's unveil count once they stop."""
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(work)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdin is not None and process.stdout is not None
    unveiled: list[int] = []
    try:
        urls = json.loads(process.stdout.readline() or "null")
        if not isinstance(urls, dict):
            raise SystemExit("the servers' process did not start")
        yield urls["broker"], urls["sakura"], unveiled
        process.stdin.close()
        unveiled.append(json.loads(process.stdout.readline()))
    finally:
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.stdin.close()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _verdict(ratio: float, goal: float) -> str:
    return "met" if ratio <= goal else "not met"


if __name__ == "__main__":
    raise SystemExit(main())
