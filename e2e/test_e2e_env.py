"""Issue 22 on the local 1.20 cluster: the denial path of `env-VAR` variables. The API server
is older than 1.35, so the injector (`--env-files=auto`, which reads its version) refuses a pod
asking for them at creation, naming the annotation, the version needed and the file form that
works here; nothing is created, and a server-side dry run shows the same answer. (The kubelet
side, `fileKeyRef`, needs 1.35: tests/unit/test_env_file_unit.py checks the file it reads.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from harness import manifests
from harness.kube import Kube
from harness.stack import Sakura, Webhook

pytestmark = pytest.mark.cluster

NEEDED = (
    "annotation sakura-secrets.io/env-DB_PASSWORD: environment variables from the injector "
    "need Kubernetes 1.35 or later"
)
FILE_FORM = (
    "the file form works on every Kubernetes version: sakura-secrets.io/secret-FILE with the "
    "same value, read by the app from the mounted file"
)


def _strings(values: Any) -> list[str]:
    if isinstance(values, dict):
        values = list(values.values())
    if isinstance(values, list):
        return [s for v in values for s in _strings(v)]
    return [str(values)]


def _flat(text: str) -> str:
    return " ".join(text.split())  # kubectl may wrap a long message


def test_env_variables_are_denied_on_a_cluster_older_than_1_35(
    kube: Kube, webhook: Webhook, sakura: Sakura
) -> None:
    ns = webhook.namespace("env")
    kube.apply(
        manifests.service_account("reader", ns),
        *manifests.grant("read-db", ns, "reader", manifests.pairs("db-password")),
    )
    annotations = manifests.pod_annotations(
        {"env-DB_PASSWORD": "db-password", "secret-db": "db-password"}
    )
    spec = manifests.pod_spec("sleep 3600", service_account="reader")
    pod: dict[str, Any] = manifests.pod("env-app", ns, spec, annotations=annotations)

    dry = kube.run(
        "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(pod), check=False
    )  # fmt: skip
    assert dry.returncode != 0 and NEEDED in _flat(dry.stderr), dry.stderr
    created = kube.create(pod)
    assert created.returncode != 0, created.stdout
    message = _flat(created.stderr)
    assert "denied the request" in message and NEEDED in message and FILE_FORM in message
    assert kube.run("get", "pod", "env-app", "-n", ns, check=False).returncode != 0
    for value in _strings(sakura.values):
        assert value not in created.stderr + dry.stderr

    # the same pod with the file form only is admitted (server-side dry run: nothing runs)
    del pod["metadata"]["annotations"]["sakura-secrets.io/env-DB_PASSWORD"]
    admitted = kube.run(
        "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(pod), check=False
    )  # fmt: skip
    assert admitted.returncode == 0, admitted.stderr
    injected = json.loads(admitted.stdout)
    assert [c["name"] for c in injected["spec"]["initContainers"]] == ["sakura-secrets-init"]
