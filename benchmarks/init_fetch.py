"""How fast and how small is the init container? A 10-secret fetch next to `import httpx`.

Runs `python -m sidecar` (the init container, exactly as rendered: its env, no arguments) in
broker mode (the default) against a broker stand-in over TLS, and in direct mode against the
emulator over HTTP, and `python -c "import httpx"`, each several times in a fresh interpreter
(the three interleaved, so a busy machine slows them alike), and prints the median wall time
with its spread, the peak RSS (per child, from wait4) and the ratios next to the goals.

The servers run in this process, so their cost is not the child's: wall time includes waiting
for their answers, RSS does not. The broker stand-in speaks the real wire protocol
(contract.broker) on uvicorn over TLS, but does not verify the token with the API server or
read Sakura: the real broker needs a cluster for TokenReview, and what is measured here is the
init container's own cost. `--python` runs the children in another interpreter, e.g. a venv
made from requirements.txt alone, as in the image: httpx imports its command line (click,
rich, pygments) when those are installed, so a development venv inflates the baseline.

    python benchmarks/init_fetch.py [--runs 5] [--python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contract import Broker, Direct, FileSpec, Mode, Plan, SecretRef  # noqa: E402
from contract.broker import FetchedSecret, encode_answer, parse_request  # noqa: E402
from emulator import Emulator, EmulatorConfig, run_in_thread  # noqa: E402
from injector.operations.certs import generate_ca, issue_serving_cert  # noqa: E402

VAULT = "110000000001"
TOKEN, SECRET = "bench-token", "bench-secret"
POD_TOKEN = "bench-pod-token"
SECRETS = 10
VALUES = {f"secret-{i}": f"value-{i}-" + "x" * 64 for i in range(SECRETS)}
WALL_GOAL, RSS_GOAL = 1.5, 1.2
CHILDREN = ("broker", "direct", "httpx")

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
print(json.dumps([os.waitstatus_to_exitcode(status), elapsed, usage.ru_maxrss]))
"""
"""Starts one child and reports it. A child's peak RSS counts the memory of the process it was
forked from (until exec), so the children are forked from this small interpreter, not from the
benchmark, whose servers are larger than the init container."""


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS in KiB of one child process."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCHER, *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    code, elapsed, peak = json.loads(done.stdout)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} exited {code}")
    return float(elapsed), int(peak)


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
    args = parser.parse_args()

    seed = {"vaults": [{"id": VAULT, "name": "bench", "secrets": VALUES}]}
    emulator = Emulator(EmulatorConfig(access_token=TOKEN, access_token_secret=SECRET, seed=seed))
    base_env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in CHILDREN}
    ca = generate_ca()
    served = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        (work / "tls.crt").write_bytes(served.cert_pem)
        (work / "tls.key").write_bytes(served.key_pem)
        (work / "token").write_text(POD_TOKEN + "\n")
        served_tls = run_in_thread(
            broker_stand_in, ssl_certfile=str(work / "tls.crt"), ssl_keyfile=str(work / "tls.key")
        )
        with run_in_thread(emulator) as sakura_url, served_tls as url:
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
            modes: dict[str, Mode] = {"broker": Broker(), "direct": Direct("sakura-creds")}
            for run in range(args.runs):
                for name in CHILDREN:
                    if name == "httpx":
                        results[name].append(measure([args.python, "-c", "import httpx"], base_env))
                        continue
                    directory = work / f"{name}-{run}"
                    directory.mkdir()
                    plan = plan_for(directory, modes[name])
                    env = {**envs[name], "SAKURA_SECRETS_PLAN": plan.to_json()}
                    results[name].append(measure([args.python, "-m", "sidecar"], env))
                    written = sorted(p.name for p in directory.iterdir() if p.name[0] != ".")
                    if len(written) != SECRETS:
                        raise SystemExit(f"{name}: expected {SECRETS} files, found {written}")
            unveils = emulator.knobs.calls["unveil"]
        baseline = httpx_cli(args.python, base_env)

    def summary(name: str) -> tuple[float, float, float, int]:
        walls = [wall * 1000 for wall, _ in results[name]]
        return statistics.median(walls), min(walls), max(walls), max(p for _, p in results[name])

    print(f"{SECRETS}-secret fetch, {args.runs} runs each, interleaved; interpreter {args.python}")
    print(f"baseline: httpx {baseline}")
    print(f"{'':30}{'wall (median)':>14}{'spread':>14}{'peak RSS':>11}")
    httpx_wall, _, _, httpx_rss = summary("httpx")
    labels = {
        "broker": "python -m sidecar (broker)",
        "direct": "python -m sidecar (direct)",
        "httpx": 'python -c "import httpx"',
    }
    for name in CHILDREN:
        wall, low, high, rss = summary(name)
        spread = f"{low:.0f}-{high:.0f} ms"
        print(f"{labels[name]:30}{wall:>11.0f} ms{spread:>14}{rss / 1024:>7.1f} MiB")
    for name in ("broker", "direct"):
        wall, _, _, rss = summary(name)
        wall_ratio, rss_ratio = wall / httpx_wall, rss / httpx_rss
        print(
            f"ratio ({name}){'':15}{wall_ratio:>9.2f} x{'':14}{rss_ratio:>7.2f} x"
            f"   goal <= {WALL_GOAL} x wall ({_verdict(wall_ratio, WALL_GOAL)}),"
            f" <= {RSS_GOAL} x RSS ({_verdict(rss_ratio, RSS_GOAL)})"
        )
    print(f"Sakura calls (direct): {unveils} ({unveils // args.runs} per fetch)")
    return 0


def _verdict(ratio: float, goal: float) -> str:
    return "met" if ratio <= goal else "not met"


if __name__ == "__main__":
    raise SystemExit(main())
