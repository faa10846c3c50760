"""Reading the local cluster's etcd directly, to prove what the API server never stored."""

from __future__ import annotations

import os
import shutil
import subprocess

LOCAL_ETCD = "http://127.0.0.1:2379"


def etcd_dump(endpoint: str = LOCAL_ETCD) -> bytes:
    """Every key and value etcd holds right now (raw bytes, protobuf and JSON alike)."""
    if shutil.which("etcdctl") is None:
        raise RuntimeError("etcdctl is missing: apt-get install etcd-client (e2e/cluster.sh does)")
    proc = subprocess.run(
        ["etcdctl", "--endpoints", endpoint, "get", "/", "--prefix"],
        capture_output=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"etcdctl get / --prefix failed: {proc.stderr.decode(errors='replace')}")
    if b"/registry/" not in proc.stdout:
        raise RuntimeError(
            "etcd answered but holds no /registry/ keys: is this the cluster's etcd?"
        )
    return proc.stdout
