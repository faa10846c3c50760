"""Scenarios 4 and 5: a Job with injected secrets completes, and pinned versions, JSON keys and
templates render as asked (the files are read back from the Job's own log)."""

from __future__ import annotations

from typing import Any

import pytest
from harness import manifests
from harness.kube import Kube
from harness.stack import Sakura, Webhook

pytestmark = pytest.mark.cluster

SERVICE_ACCOUNT = "batch"
NONROOT = 65532
TEMPLATE = (
    "postgres://{{ secret('db-config', key='user') }}:{{ secret('db-config#password') }}"
    "@db.internal/app?tag={{ secret('rotated', version=2) }}"
)
LIST_FILES = 'for f in /sakura/secrets/*; do echo "FILE ${f##*/}=$(cat "$f")"; done; echo DONE'


@pytest.fixture(scope="module")
def job_files(kube: Kube, webhook: Webhook, node: str) -> dict[str, str]:
    ns = webhook.namespace("batch")
    kube.apply(
        manifests.service_account(SERVICE_ACCOUNT, ns),
        *manifests.grant(
            "read-batch", ns, SERVICE_ACCOUNT, manifests.pairs("job-token", "rotated", "db-config")
        ),
    )
    annotations = manifests.pod_annotations(
        {
            "secret-token": "job-token",
            "secret-pinned": "rotated@1",
            "secret-latest": "rotated",
            "secret-db-user": "db-config#user",
            "template-dsn": TEMPLATE,
        }
    )
    spec = manifests.pod_spec(
        LIST_FILES, service_account=SERVICE_ACCOUNT, restart="Never", run_as=(NONROOT, NONROOT)
    )
    kube.apply(manifests.job("report", ns, spec, annotations))

    def finished() -> dict[str, Any] | None:
        status = kube.get("job", "report", ns).get("status", {})
        return status if status.get("succeeded") or status.get("failed") else None

    status = kube.wait_for("the Job to finish", finished, timeout=180)
    pods = kube.pods(ns, "job-name=report")
    assert pods, "the Job made no pod"
    pod = pods[0]["metadata"]["name"]
    assert status.get("succeeded") == 1, (
        f"Job failed: {status}\n{kube.describe('pod', pod, ns)}\n"
        + webhook.injector.log.read_text(errors="replace")[-3000:]
    )
    logs = kube.logs(ns, pod, "app")
    assert "DONE" in logs, logs
    return dict(
        line[len("FILE ") :].split("=", 1) for line in logs.splitlines() if line.startswith("FILE ")
    )


def test_a_job_with_injected_secrets_completes(job_files: dict[str, str], sakura: Sakura) -> None:
    assert sorted(job_files) == ["db-user", "dsn", "latest", "pinned", "token"]
    assert job_files["token"] == sakura.values["job-token"]


def test_a_pinned_version_reads_that_version(job_files: dict[str, str], sakura: Sakura) -> None:
    v1, v2 = sakura.values["rotated"]
    assert job_files["pinned"] == v1
    assert job_files["latest"] == v2


def test_a_json_key_reads_one_field(job_files: dict[str, str], sakura: Sakura) -> None:
    assert job_files["db-user"] == sakura.values["db-config"]["user"]


def test_a_template_renders_with_keys_and_versions(
    job_files: dict[str, str], sakura: Sakura
) -> None:
    config = sakura.values["db-config"]
    expected = (
        f"postgres://{config['user']}:{config['password']}@db.internal/app"
        f"?tag={sakura.values['rotated'][1]}"
    )
    assert job_files["dsn"] == expected
