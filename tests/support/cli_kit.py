"""Shared by the CLI tests: the injector's command in a fresh interpreter, and a stand-in for
the API server's version answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_injector(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m injector ARGS` from the checkout, with a bare environment."""
    return subprocess.run(
        [sys.executable, "-m", "injector", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


class Versions:
    """Answers what the test sets, counting the reads; raises when told to."""

    def __init__(self, answer: tuple[str, str] | Exception) -> None:
        self.answer = answer
        self.reads = 0

    def __call__(self) -> tuple[str, str]:
        self.reads += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer
