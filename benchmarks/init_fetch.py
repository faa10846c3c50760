"""How fast and how small is the init container? A 10-secret fetch next to `import httpx`.

Runs `python -m sidecar` in direct mode against the emulator (served in this process over
HTTP, so it does not count) and `python -c "import httpx"`, each several times in a fresh
interpreter, and prints the median wall time, the peak RSS (per child, from wait4) and ratios.

    python benchmarks/init_fetch.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contract import Direct, FileSpec, Plan, SecretRef  # noqa: E402
from emulator import Emulator, EmulatorConfig, run_in_thread  # noqa: E402

VAULT = "110000000001"
TOKEN, SECRET = "bench-token", "bench-secret"
SECRETS = 10


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS in KiB of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {child.returncode}")
    return elapsed, usage.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    seed = {
        "vaults": [
            {
                "id": VAULT,
                "name": "bench",
                "secrets": {f"secret-{i}": f"value-{i}-" + "x" * 64 for i in range(SECRETS)},
            }
        ]
    }
    emulator = Emulator(EmulatorConfig(access_token=TOKEN, access_token_secret=SECRET, seed=seed))
    base_env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    results: dict[str, list[tuple[float, int]]] = {"sidecar": [], "httpx": []}
    with run_in_thread(emulator) as url, tempfile.TemporaryDirectory() as workdir:
        for run in range(args.runs):
            directory = Path(workdir) / f"run-{run}"
            directory.mkdir()
            plan = Plan(
                files=tuple(
                    FileSpec(f"file-{i}", 0o400, secret=SecretRef(f"secret-{i}"))
                    for i in range(SECRETS)
                ),
                directory=str(directory),
                mode=Direct("sakura-creds"),
                vault_id=VAULT,
                uid=os.getuid(),
                gid=os.getgid(),
            )
            env = {
                **base_env,
                "SAKURA_SECRETS_PLAN": plan.to_json(),
                "SAKURA_ACCESS_TOKEN": TOKEN,
                "SAKURA_ACCESS_TOKEN_SECRET": SECRET,
                "SAKURA_ENDPOINTS_SECRETMANAGER": url,
                "SAKURA_SECRETS_TERMINATION_LOG": str(Path(workdir) / "termination-log"),
            }
            results["sidecar"].append(measure([sys.executable, "-m", "sidecar"], env))
            written = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
            if len(written) != SECRETS:
                raise SystemExit(f"expected {SECRETS} files, found {written}")
            results["httpx"].append(measure([sys.executable, "-c", "import httpx"], base_env))
        unveils = emulator.knobs.calls["unveil"]

    def summary(name: str) -> tuple[float, int]:
        walls = [wall for wall, _ in results[name]]
        rss = [peak for _, peak in results[name]]
        return statistics.median(walls), max(rss)

    fetch_wall, fetch_rss = summary("sidecar")
    httpx_wall, httpx_rss = summary("httpx")
    print(f"{SECRETS}-secret fetch in direct mode against the emulator, {args.runs} runs")
    print(f"{'':28}{'wall (median)':>15}{'peak RSS':>12}")
    rows = [
        ("python -m sidecar", f"{fetch_wall * 1000:.0f} ms", f"{fetch_rss / 1024:.1f} MiB"),
        ('python -c "import httpx"', f"{httpx_wall * 1000:.0f} ms", f"{httpx_rss / 1024:.1f} MiB"),
        ("ratio", f"{fetch_wall / httpx_wall:.2f} x", f"{fetch_rss / httpx_rss:.2f} x"),
    ]
    for label, wall, rss in rows:
        print(f"{label:28}{wall:>15}{rss:>12}")
    print(f"Sakura calls: {unveils} ({unveils // args.runs} per fetch)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
