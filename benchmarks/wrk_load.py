"""wrk (Debian's, not Python: the load never competes with the server for a GIL) driven by a
Lua script, and its report read back; shared by benchmarks/soak.py and benchmarks/webhook.py.

A script is `LUA_COMMON` plus the caller's part, with `@NAME@` placeholders filled in one pass.
`LUA_COMMON` counts the answers the caller's `response()` calls bad (`failed`), paces each
connection with `delay()` (0: as fast as answers come) and prints one `WRK ...` line at the
end, which `report` reads. wrk negotiates TLS in full but does not check the certificate
(everything here is on 127.0.0.1).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_COMMON = """
threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) sent = 0; failed = 0 end
@DELAY@
function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("failed") end
  local e = summary.errors
  io.write(string.format("WRK requests=%d failed=%d errors=%d p50_us=%d p99_us=%d us=%d\\n",
    summary.requests, bad, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""

REPORT = re.compile(
    r"^WRK requests=(\d+) failed=(\d+) errors=(\d+) p50_us=(\d+) p99_us=(\d+) us=(\d+)$", re.M
)


@dataclass(frozen=True)
class Load:
    """What one wrk run reports: `requests` and `failed` both count the socket errors
    (connect, read, write, timeout); `failed` also the answers the script's `response()`
    found bad."""

    requests: int
    failed: int
    p50_ms: float
    p99_ms: float
    seconds: float

    @property
    def rate(self) -> float:
        """Requests answered a second over the run."""
        return self.requests / self.seconds if self.seconds else 0.0


def lua_script(template: str, delay_ms: int = 0, **values: object) -> str:
    """LUA_COMMON and `template` with each @NAME@ replaced by `values[NAME]`, in one pass (a
    value is never read for placeholders); `delay_ms` > 0 paces each connection."""
    delay = f"function delay() return {delay_ms} end" if delay_ms > 0 else ""
    return re.sub(
        r"@([A-Z_]+)@",
        lambda m: delay if m.group(1) == "DELAY" else str(values[m.group(1)]),
        LUA_COMMON + template,
    )


def delay_ms(connections: int, rate: float) -> int:
    """A connection's wait after each answer, for `rate` requests a second from all of them."""
    return max(1, round(1000 * connections / rate))


def require_wrk() -> str | None:
    """None when wrk is on PATH, else what to do about it."""
    if shutil.which("wrk") is None:
        return "wrk is missing: apt-get install wrk (scripts/bootstrap does)"
    return None


def wrk(
    url: str,
    script: Path,
    seconds: float,
    connections: int,
    *,
    cpu: int | None = None,
    timeout: float = 10,
) -> subprocess.Popen[str]:
    """wrk with one thread, `connections` kept-alive connections (unless the script closes
    them), for `seconds` (whole, at least 1); pinned to `cpu` when given."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return subprocess.Popen(
        [
            *pin,
            *("wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"),
            *("--timeout", f"{timeout:g}s", "-s", str(script), url),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def report(process: subprocess.Popen[str], what: str) -> Load:
    """The run's `Load`, once wrk has exited; SystemExit with its output when it gave none."""
    out, _ = process.communicate()
    found = REPORT.search(out)
    if process.returncode != 0 or found is None:
        raise SystemExit(f"wrk ({what}) gave no report (exit {process.returncode}):\n{out}")
    requests, failed, errors, p50_us, p99_us, micros = (int(g) for g in found.groups())
    return Load(requests + errors, failed + errors, p50_us / 1000, p99_us / 1000, micros / 1e6)
