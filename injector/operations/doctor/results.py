"""What a check says: PASS, WARN or FAIL, one line, and the fix of anything not passing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    PASS = "PASS"  # noqa: S105 (a status)
    WARN = "WARN"
    """Works, but not as installed or not for long: read the fix."""
    FAIL = "FAIL"
    """Broken now: pods are refused or start without their secrets. doctor exits 1."""


@dataclass(frozen=True)
class Finding:
    """One thing a check found wrong, and how to fix it."""

    status: Status
    summary: str
    fix: str


@dataclass(frozen=True)
class Result:
    check: str
    status: Status
    summary: str
    fix: str = ""

    def line(self) -> str:
        fix = f" -- fix: {self.fix}" if self.fix else ""
        return f"{self.status.value} {self.check}: {self.summary}{fix}"


def judged(check: str, findings: Sequence[Finding], passed: str) -> Result:
    """PASS with `passed` when nothing was found, else the worst finding's status and every
    finding's summary and fix, worst first."""
    if not findings:
        return Result(check, Status.PASS, passed)
    ordered = sorted(findings, key=lambda f: f.status != Status.FAIL)
    return Result(
        check,
        ordered[0].status,
        "; ".join(f.summary for f in ordered),
        "; ".join(dict.fromkeys(f.fix for f in ordered if f.fix)),
    )


def text(results: Sequence[Result]) -> str:
    return "".join(f"{r.line()}\n" for r in results)


def as_json(results: Sequence[Result]) -> str:
    return json.dumps(
        [
            {"check": r.check, "status": r.status.value, "summary": r.summary, "fix": r.fix}
            for r in results
        ],
        indent=2,
    )


def exit_status(results: Sequence[Result]) -> int:
    """1 when any check failed, else 0 (warnings do not fail the run)."""
    return 1 if any(r.status == Status.FAIL for r in results) else 0
