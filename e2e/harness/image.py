"""The project's image, built the way a user builds it: `docker build` of the Dockerfile.

Only the Dockerfile's two build args are given: BASE, and EXTRA_CA_CERTS when this machine trusts
CAs of its own (a network that intercepts TLS, as pip on the host sees it): the PEM file named by
$SAKURA_E2E_EXTRA_CA, or else the CAs added to the system trust store in
/usr/local/share/ca-certificates (Debian's update-ca-certificates, which /etc/ssl/certs'
bundle that pip uses here includes). No package index address is passed: the Dockerfile's pip
uses its default index, like the host's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_STAGE_LABEL = "io.sakura-secrets.stage=build"
"""Set on the Dockerfile's build stage."""
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
MAX_BUILD_ARG = 100_000
"""One argv string may hold at most 128 KiB on Linux; a few CA certificates are a few KiB."""


def docker_has_image(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def extra_ca_certs(env: dict[str, str], local_ca_dir: Path = LOCAL_CA_DIR) -> str:
    """The PEM text of the CAs this machine adds to the public ones ("" when it adds none)."""
    named = env.get("SAKURA_E2E_EXTRA_CA")
    if named:
        files = [Path(named)]
    else:
        files = sorted(local_ca_dir.rglob("*.crt")) if local_ca_dir.is_dir() else []
    pem = "".join(f.read_text() for f in files)
    if len(pem) > MAX_BUILD_ARG:
        raise RuntimeError(
            f"{len(pem)} bytes of extra CA certificates ({', '.join(map(str, files))}) do not fit "
            f"in one build arg (at most {MAX_BUILD_ARG}): name only the CAs the network adds in "
            "$SAKURA_E2E_EXTRA_CA"
        )
    return pem


def network_args() -> list[str]:
    """`--network host` when the daemon has no bridge network (the local cluster's dockerd)."""
    bridge = subprocess.run(["docker", "network", "inspect", "bridge"], capture_output=True)
    return [] if bridge.returncode == 0 else ["--network", "host"]


def build_image(tag: str, base: str) -> None:
    """`docker build` the Dockerfile on `base`; the legacy builder when buildx is absent."""
    env = dict(os.environ)
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode != 0:
        env["DOCKER_BUILDKIT"] = "0"
    command = ["docker", "build", "-q", *network_args(), "--build-arg", f"BASE={base}"]
    ca = extra_ca_certs(env)
    if ca:
        command += ["--build-arg", f"EXTRA_CA_CERTS={ca}"]
    proc = subprocess.run(
        [*command, "-t", tag, str(REPO)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,  # a hung download must fail the run, not eat CI's 90 minutes
    )
    if proc.returncode != 0:
        raise RuntimeError(f"docker build of {tag} failed:\n{proc.stdout}\n{proc.stderr}")
    # the legacy builder keeps the untagged build stage; drop ours (and only ours)
    subprocess.run(
        ["docker", "image", "prune", "-f", "--filter", f"label={BUILD_STAGE_LABEL}"],
        capture_output=True,
    )
