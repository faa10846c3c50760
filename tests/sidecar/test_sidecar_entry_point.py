"""The real entry point in a fresh interpreter: `python -m sidecar` with the webhook's env."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from support.sidecar_harness import (
    ALL_VALUES,
    DB,
    PLAIN,
    make_plan,
    secret_file,
    snapshot,
)

from sidecar.errors import EXIT_CONFIG, EXIT_NOT_FOUND

ROOT = Path(__file__).resolve().parents[2]


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "sidecar"],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_python_m_sidecar_fetches_and_exits_zero(
    direct_env: dict[str, str], secrets_dir: Path, termination_log: Path
) -> None:
    plan = make_plan(secrets_dir, secret_file("plain", "plain"), secret_file("pw", "db#pass"))
    done = _run({**direct_env, "SAKURA_SECRETS_PLAN": plan.to_json()})
    assert done.returncode == 0, done.stderr
    assert (secrets_dir / "plain").read_text() == PLAIN
    assert (secrets_dir / "pw").read_text() == DB["pass"]
    assert "loaded 2 secrets (db@1, plain@1)" in done.stderr
    assert not termination_log.exists()
    for value in ALL_VALUES:
        assert value not in done.stdout + done.stderr


def test_python_m_sidecar_reports_a_failure_in_one_line(
    direct_env: dict[str, str], secrets_dir: Path, termination_log: Path
) -> None:
    (secrets_dir / "plain").write_text("kept")
    before = snapshot(secrets_dir)
    plan = make_plan(secrets_dir, secret_file("plain", "plain"), secret_file("x", "nope@2"))
    done = _run({**direct_env, "SAKURA_SECRETS_PLAN": plan.to_json()})
    assert done.returncode == EXIT_NOT_FOUND
    lines = termination_log.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "sakura-secrets-init: not found: reading secret 'nope@2' from vault 110000000001"
    )
    assert lines[0] in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(secrets_dir) == before


def test_python_m_sidecar_without_a_plan_says_so(termination_log: Path) -> None:
    done = _run({"SAKURA_SECRETS_TERMINATION_LOG": str(termination_log)})
    assert done.returncode == EXIT_CONFIG
    assert termination_log.read_text().startswith(
        "sakura-secrets-init: bad plan: SAKURA_SECRETS_PLAN is not set"
    )


def test_the_init_fetcher_never_imports_kubernetes_or_starlette() -> None:
    probe = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("kubernetes", "starlette", "uvicorn"):
                    raise ImportError("blocked import of " + name)
                return None

        sys.meta_path.insert(0, Block())
        import sidecar.__main__, sidecar.direct, sidecar.broker_client, sidecar.writer
        import sidecar.refresh, sidecar.sources
        loaded = sorted({m.split(".")[0] for m in sys.modules})
        assert not {"kubernetes", "starlette", "uvicorn"} & set(loaded), loaded
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
