"""`python -m sidecar refresh` in a fresh interpreter: it starts, refreshes, and on SIGTERM
exits 0 at once, even with a request in flight; a plan without an interval is refused."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.sidecar_harness import API_V2, make_plan, run_main, secret_file

from contract import Plan
from sidecar.__main__ import main
from sidecar.errors import EXIT_CONFIG

ROOT = Path(__file__).resolve().parents[2]
PATIENCE = 60.0
"""How long a test waits for the process: generous, the machine is shared; not a bound on speed."""


def _plan(directory: Path, interval: int | None = 10) -> Plan:
    return make_plan(directory, secret_file("api", "api"), mode="broker", refresh_interval=interval)


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "sidecar", "refresh"],
        env=full,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _until(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    give_up = time.monotonic() + PATIENCE
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < give_up, "the refresh container did not get there"
        time.sleep(0.05)


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A port that accepts connections and never answers: a request to it stays in flight."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener


def test_it_refreshes_until_sigterm_then_exits_zero(
    broker_env: dict[str, str], secrets_dir: Path
) -> None:
    record = secrets_dir / ".sakura-secrets.json"
    process = _start({**broker_env, "SAKURA_SECRETS_PLAN": _plan(secrets_dir).to_json()})
    try:
        _until(lambda: record.exists(), process)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=PATIENCE)
    assert process.returncode == 0, stderr
    assert (secrets_dir / "api").read_text() == API_V2
    assert json.loads(record.read_text())["refresh_interval"] == 10
    assert "sakura-secrets-refresh: refreshing every 10s" in stderr
    assert stderr.rstrip().endswith("sakura-secrets-refresh: SIGTERM: stopped")
    assert API_V2 not in stderr


def test_sigterm_abandons_a_request_in_flight_and_exits_zero(
    broker_env: dict[str, str], secrets_dir: Path, silent_listener: socket.socket
) -> None:
    port = silent_listener.getsockname()[1]
    env = {
        **broker_env,
        "SAKURA_SECRETS_BROKER_URL": f"https://127.0.0.1:{port}",
        "SAKURA_SECRETS_PLAN": _plan(secrets_dir, interval=3600).to_json(),
        "SAKURA_SECRETS_DEADLINE": "600",
    }
    process = _start(env)
    try:
        silent_listener.settimeout(PATIENCE)
        connection, _ = silent_listener.accept()  # the request is on its way, and stays
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=PATIENCE)
    connection.close()
    assert process.returncode == 0, stderr
    assert "SIGTERM: stopped" in stderr
    assert os.listdir(secrets_dir) == []


def test_sigterm_abandons_a_sakura_call_in_flight_in_direct_mode(
    direct_env: dict[str, str], secrets_dir: Path, silent_listener: socket.socket
) -> None:
    """Direct mode waits in an asyncio loop: SIGTERM must end that too, not be swallowed by it."""
    port = silent_listener.getsockname()[1]
    plan = make_plan(secrets_dir, secret_file("api", "api"), refresh_interval=3600)
    env = {
        **direct_env,
        "SAKURA_ENDPOINTS_SECRETMANAGER": f"http://127.0.0.1:{port}",
        "SAKURA_SECRETS_PLAN": plan.to_json(),
        "SAKURA_SECRETS_DEADLINE": "600",
    }
    process = _start(env)
    try:
        silent_listener.settimeout(PATIENCE)
        connection, _ = silent_listener.accept()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=PATIENCE)
    connection.close()
    assert process.returncode == 0, stderr
    assert stderr.rstrip().endswith("sakura-secrets-refresh: SIGTERM: stopped")
    assert "Traceback" not in stderr


def test_a_plan_without_an_interval_is_refused(
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {**broker_env, "SAKURA_SECRETS_PLAN": _plan(secrets_dir, interval=None).to_json()}
    termination_log.unlink(missing_ok=True)
    code = main(env, ["refresh"])
    assert code == EXIT_CONFIG
    assert termination_log.read_text().startswith(
        "sakura-secrets-refresh: bad plan: SAKURA_SECRETS_PLAN has no refresh_interval, so "
        "there is nothing to refresh; the refresh container runs only in pods with the "
        "sakura-secrets.io/refresh-interval annotation"
    )
    assert os.listdir(secrets_dir) == []
    capsys.readouterr()


def test_an_unknown_argument_is_refused(
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {**broker_env, "SAKURA_SECRETS_PLAN": _plan(secrets_dir).to_json()}
    code = main(env, ["refrseh"])
    assert code == EXIT_CONFIG
    assert termination_log.read_text().startswith(
        "sakura-secrets-init: bad configuration: unknown arguments 'refrseh'; run `python -m "
        "sidecar` (the init container) or `python -m sidecar refresh` (the refresh container)"
    )
    assert os.listdir(secrets_dir) == []
    capsys.readouterr()


def test_the_init_container_still_runs_without_an_argument(
    broker_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    env = {**broker_env, "SAKURA_SECRETS_PLAN": _plan(secrets_dir).to_json()}
    outcome = run_main(env, capsys, termination_log)
    assert outcome.code == 0, outcome.stderr
    assert (secrets_dir / "api").read_text() == API_V2
    assert "loaded 1 secrets (api@2)" in caplog.text


# --- the same, in this process (what mutation testing can see) ------------------------------


@pytest.mark.parametrize(("deadline", "expected"), [("600", 10.0), ("4", 4.0)])
def test_main_bounds_a_round_by_the_interval_and_then_only_sigterm_ends_it(
    broker_env: dict[str, str],
    secrets_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    deadline: str,
    expected: float,
) -> None:
    from sidecar import refresh, sources

    started: list[refresh.Refresher] = []

    class Ran(Exception):
        pass

    def run(self: refresh.Refresher) -> None:
        started.append(self)
        raise Ran

    monkeypatch.setattr(refresh.Refresher, "run", run)
    before = signal.getsignal(signal.SIGTERM)
    plan = _plan(secrets_dir)
    env = {**broker_env, "SAKURA_SECRETS_PLAN": plan.to_json(), "SAKURA_SECRETS_DEADLINE": deadline}
    try:
        with pytest.raises(Ran):
            refresh.main(env)
        assert signal.getsignal(signal.SIGTERM) is refresh._terminate
    finally:
        signal.signal(signal.SIGTERM, before)
    (refresher,) = started
    assert refresher.plan == plan and refresher.interval == 10
    assert isinstance(refresher.source, sources.BrokerSource)
    assert refresher.source.plan == plan and refresher.source.deadline == expected
    assert refresher.source.settings.url == broker_env["SAKURA_SECRETS_BROKER_URL"]


def test_the_sigterm_handler_says_so_and_exits_zero_at_once(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from sidecar import refresh

    class Exited(BaseException):
        pass

    def exit_now(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(refresh.os, "_exit", exit_now)
    with pytest.raises(Exited) as exited:
        refresh._terminate(signal.SIGTERM, None)
    assert exited.value.args == (0,)
    assert capfd.readouterr().err == "sakura-secrets-refresh: SIGTERM: stopped\n"
