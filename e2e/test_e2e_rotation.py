"""Issue 18 on the local cluster: `refresh-interval` keeps a running pod's files current.

A Deployment with `refresh-interval: 10s` reads version 1 of a secret as a plain file and
through a template. Its app reads both in a loop the way docs/init-container.md tells app
authors to (resolve `..data` once, read both files of that set) and counts reads where they
disagree. A new version written to the emulator reaches the running pod within the interval
plus the broker's latest-TTL, with no container restarted and no torn read. A revoked grant
stops the refresh: the files stay, the record says why. The refresh survives an injector
restart with a renewed serving certificate (same CA). (A pod that must terminate is refused
on this 1.20 cluster: test_e2e_admission.py.)
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import pytest
from harness import manifests
from harness.kube import Kube
from harness.manifests import VAULT_ID
from harness.stack import Pki, Sakura, Webhook

from injector.operations.certs import issue_serving_cert

pytestmark = pytest.mark.cluster

NAME = "rotating"
"""Made for this module alone: its versions change here."""
SERVICE_ACCOUNT = "rotator"
GRANT = "read-rotating"
MOUNT = "/etc/rotating"
INTERVAL = 10
LATEST_TTL = 30.0  # CacheSettings.latest_ttl (the broker's, --latest-ttl)
JITTER = 0.1
REACH = INTERVAL * (1 + JITTER) + LATEST_TTL
"""A new version is in the pod within this many seconds (interval, jitter, broker cache)."""
RECORD = ".sakura-secrets.json"
APP_SCRIPT = f"""
mixed=0; reads=0; last=
while true; do
  set_dir=$(readlink {MOUNT}/..data)
  plain=$(cat {MOUNT}/$set_dir/plain 2>/dev/null) || continue
  rendered=$(cat {MOUNT}/$set_dir/rendered 2>/dev/null) || continue
  reads=$((reads+1))
  if [ "tpl:$plain" != "$rendered" ]; then mixed=$((mixed+1)); echo "MIXED $reads"; fi
  if [ "$plain" != "$last" ]; then echo "SEEN $plain reads=$reads mixed=$mixed"; last=$plain; fi
  echo "reads=$reads mixed=$mixed" > /dev/shm/counts
  sleep 0.05
done
"""


@dataclass(frozen=True)
class Rotating:
    namespace: str
    pod: str


def _put(sakura: Sakura, value: str) -> None:
    sakura.emulator.store.put(VAULT_ID, NAME, value)
    sakura.values.setdefault(NAME, []).append(value)  # the leak checks look for it too


def _value(tag: str, version: int) -> str:
    return f"rotating-v{version}-{tag}"


@pytest.fixture(scope="module")
def tag() -> str:
    return secrets.token_hex(6)


@pytest.fixture(scope="module")
def rotating(kube: Kube, webhook: Webhook, node: str, sakura: Sakura, tag: str) -> Rotating:
    _put(sakura, _value(tag, 1))
    ns = webhook.namespace("rotate")
    kube.apply(
        manifests.service_account(SERVICE_ACCOUNT, ns),
        *manifests.grant(GRANT, ns, SERVICE_ACCOUNT, manifests.pairs(NAME)),
    )
    annotations = manifests.pod_annotations(
        {
            "secret-plain": NAME,
            "template-rendered": f"tpl:{{{{ secret('{NAME}') }}}}",
            "mount-path": MOUNT,
            "refresh-interval": f"{INTERVAL}s",
        }
    )
    spec = manifests.pod_spec(APP_SCRIPT, service_account=SERVICE_ACCOUNT, run_as=(1000, 1000))
    kube.apply(manifests.deployment("rotating", ns, spec, annotations))

    def seen_v1() -> str | None:
        for pod in kube.pods(ns, "app=rotating"):
            if pod["status"].get("phase") != "Running":
                continue
            name = str(pod["metadata"]["name"])
            if f"SEEN {_value(tag, 1)}" in kube.logs(ns, name, "app"):
                return name
        return None

    try:
        pod = kube.wait_for("the rotating pod to read version 1", seen_v1, timeout=180)
    except TimeoutError as error:
        described = [kube.describe("pod", p["metadata"]["name"], ns) for p in kube.pods(ns, "")]
        log = webhook.injector.log.read_text(errors="replace")[-3000:]
        raise AssertionError(f"{error}\n{''.join(described)}\ninjector log:\n{log}") from None
    return Rotating(ns, pod)


def _file(kube: Kube, where: Rotating, name: str) -> str:
    return kube.exec(where.namespace, where.pod, "cat", f"{MOUNT}/{name}", container="app")


def _record(kube: Kube, where: Rotating) -> dict[str, Any]:
    return dict(json.loads(_file(kube, where, RECORD)))


def _held_version(record: dict[str, Any]) -> int | None:
    for entry in record.get("secrets", []):
        if entry.get("name") == NAME:
            return int(entry["version"])
    return None


def _restarts(kube: Kube, where: Rotating) -> dict[str, int]:
    pod = kube.get("pod", where.pod, where.namespace)
    statuses = pod["status"].get("containerStatuses", [])
    statuses += pod["status"].get("initContainerStatuses", [])
    return {s["name"]: int(s.get("restartCount", 0)) for s in statuses}


def _wait_for_value(kube: Kube, where: Rotating, value: str, timeout: float) -> float:
    start = time.monotonic()
    kube.wait_for(
        f"the file to hold {value!r}",
        lambda: _file(kube, where, "plain") == value,
        timeout=timeout,
        every=0.5,
    )
    return time.monotonic() - start


def test_a_new_version_reaches_the_running_pod_whole(
    rotating: Rotating, kube: Kube, sakura: Sakura, tag: str
) -> None:
    pod = kube.get("pod", rotating.pod, rotating.namespace)
    containers = [c["name"] for c in pod["spec"]["containers"]]
    assert "sakura-secrets-refresh" in containers  # classic shape: 1.20 has no native sidecars
    before = _restarts(kube, rotating)
    assert _held_version(_record(kube, rotating)) == 1

    _put(sakura, _value(tag, 2))
    took = _wait_for_value(kube, rotating, _value(tag, 2), timeout=REACH + 30)
    print(f"\n[e2e] a new version reached the running pod in {took:.1f} s (bound {REACH:.0f} s)")
    assert _file(kube, rotating, "rendered") == f"tpl:{_value(tag, 2)}"
    record = _record(kube, rotating)
    assert _held_version(record) == 2
    assert record.get("last_error") in (None, ""), record
    assert _restarts(kube, rotating) == before  # nothing restarted
    time.sleep(2)  # the app's loop sees the new set
    logs = kube.logs(rotating.namespace, rotating.pod)  # kubectl's default container: the app
    assert f"SEEN {_value(tag, 2)}" in logs, logs
    assert "MIXED" not in logs, logs
    counts = kube.exec(rotating.namespace, rotating.pod, "cat", "/dev/shm/counts", container="app")
    assert counts.strip().endswith("mixed=0"), counts
    assert int(counts.split()[0].split("=")[1]) > 100, counts  # it did read, many times


def test_a_revoked_grant_keeps_the_files_and_says_why(
    rotating: Rotating, kube: Kube, sakura: Sakura, webhook: Webhook, tag: str
) -> None:
    current = _file(kube, rotating, "plain")
    kube.delete("rolebinding", GRANT, rotating.namespace)
    try:
        _put(sakura, _value(tag, 3))

        def refused() -> dict[str, Any] | None:
            record = _record(kube, rotating)
            return record if record.get("last_error") else None

        record = kube.wait_for("the refresh to be refused", refused, timeout=REACH + 60)
        assert "grant" in record["last_error"] or "forbidden" in record["last_error"].lower()
        assert _value(tag, 3) not in json.dumps(record)
        assert _file(kube, rotating, "plain") == current  # the files stay as they were
        assert _file(kube, rotating, "rendered") == f"tpl:{current}"
        logs = kube.logs(rotating.namespace, rotating.pod, "sakura-secrets-refresh")
        assert _value(tag, 3) not in logs and current not in logs
    finally:
        kube.apply(
            *manifests.grant(GRANT, rotating.namespace, SERVICE_ACCOUNT, manifests.pairs(NAME))
        )


def test_the_refresh_survives_an_injector_restart_with_a_renewed_certificate(
    rotating: Rotating, kube: Kube, sakura: Sakura, webhook: Webhook, pki: Pki, tag: str
) -> None:
    renewed = issue_serving_cert(pki.ca, ["localhost"], ["127.0.0.1"])
    assert renewed.cert_pem != pki.cert_file.read_bytes()
    pki.cert_file.write_bytes(renewed.cert_pem)
    pki.key_file.write_bytes(renewed.key_pem)
    webhook.injector.restart()
    _put(sakura, _value(tag, 4))
    took = _wait_for_value(kube, rotating, _value(tag, 4), timeout=REACH + 60)
    print(f"\n[e2e] after the injector's restart a new version reached the pod in {took:.1f} s")
    assert _restarts(kube, rotating).get("sakura-secrets-refresh") == 0
