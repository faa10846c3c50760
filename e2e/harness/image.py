"""The project's image, built the way a user builds it: wheels on the host, then the Dockerfile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_STAGE_LABEL = "io.sakura-secrets.stage=build"
"""Set on the Dockerfile's build stage."""


def docker_has_image(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def build_wheels(wheels: Path) -> None:
    """The project and its [injector] dependencies as wheels (pip's cache makes reruns fast).

    The image's Python is Debian bookworm's 3.11, so the wheels come from a 3.11 interpreter.
    """
    if sys.version_info[:2] != (3, 11):
        raise RuntimeError(
            f"the image runs Python 3.11 but the tests run {sys.version.split()[0]}: "
            "compiled wheels would not fit; run the e2e tests with Python 3.11"
        )
    wheels.mkdir(exist_ok=True)
    for stale in wheels.glob("sakura_secrets_injector-*.whl"):
        stale.unlink()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--find-links",
            str(wheels),
            "--wheel-dir",
            str(wheels),
            f"{REPO}[injector]",
        ],
        check=True,
        cwd=REPO,
        timeout=900,  # a hung download must fail the run, not eat CI's 90 minutes
    )


def build_image(tag: str, base: str) -> None:
    """`docker build` the Dockerfile on `base`; the legacy builder when buildx is absent."""
    build_wheels(REPO / "wheels")
    env = dict(os.environ)
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode != 0:
        env["DOCKER_BUILDKIT"] = "0"
    proc = subprocess.run(
        ["docker", "build", "-q", "--build-arg", f"BASE={base}", "-t", tag, str(REPO)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"docker build of {tag} failed:\n{proc.stdout}\n{proc.stderr}")
    # the legacy builder keeps the untagged build stage; drop ours (and only ours)
    subprocess.run(
        ["docker", "image", "prune", "-f", "--filter", f"label={BUILD_STAGE_LABEL}"],
        capture_output=True,
    )
