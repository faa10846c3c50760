"""`serve` raises the process's open-files limit, and refuses to start below what its ports
may hold. Each case runs in a child process: limits are per process and cannot be raised back."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from injector.serving.connections import ConnectionLimits
from injector.serving.server import (
    BACKLOG,
    PROBE_BACKLOG,
    SPARE_DESCRIPTORS,
    Listener,
    descriptors_needed,
)

CHILD = """
import logging, resource, sys
from injector.serving.errors import DescriptorLimitError
from injector.serving.server import raise_descriptor_limit
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
soft, hard = {soft}, {hard}
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
try:
    print("soft", raise_descriptor_limit({needed}))
except DescriptorLimitError as error:
    print("error", error)
print("now", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def run_child(soft: int, hard: int, needed: int) -> list[str]:
    code = CHILD.format(soft=soft, hard=hard, needed=needed)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard < 1024:
        pytest.skip(f"needs a finite hard nofile limit of at least 1024, not {hard}")
    return hard


def test_the_soft_limit_is_raised_to_the_hard_limit_and_logged() -> None:
    hard = hard_limit()
    out = run_child(soft=64, hard=hard, needed=600)
    assert out == [
        f"raised the open-files limit (nofile) from 64 to {hard}",
        f"soft {hard}",
        f"now {hard}",
    ]


def test_a_hard_limit_below_what_the_ports_may_hold_is_refused_naming_the_fix() -> None:
    hard_limit()
    out = run_child(soft=64, hard=512, needed=600)
    assert out[0] == "raised the open-files limit (nofile) from 64 to 512"
    assert out[1] == (
        "error the open-files limit (nofile) is 512, but the ports may hold 600 descriptors "
        "with --max-connections connections each: lower --max-connections or raise the "
        "container's nofile limit"
    )


def test_a_soft_limit_already_at_the_hard_limit_is_left_alone() -> None:
    hard = hard_limit()
    assert run_child(soft=hard, hard=hard, needed=hard) == [f"soft {hard}", f"now {hard}"]


def test_the_descriptors_needed_count_every_port_its_backlog_and_a_spare() -> None:
    def listener(tls: bool) -> Listener:
        return Listener("x", app=None, tls=object() if tls else None, port=0)  # type: ignore[arg-type]

    limits = ConnectionLimits(max_connections=100)
    ports = [listener(True), listener(True), listener(False)]
    accepted_at_once = 2 * BACKLOG + PROBE_BACKLOG  # a flood's queue, accepted, then refused
    assert descriptors_needed(ports, limits) == 100 + 100 + 16 + 3 + accepted_at_once + (
        SPARE_DESCRIPTORS
    )
