"""A pod that leaves its user to the image: no runAsUser anywhere, the image's USER is 1000.

The webhook cannot see an image's USER, so it cannot make the files that user's; they must
still be readable by it (docs/annotations.md, "Owner of the files"), and the pod must carry
the warning where a Deployment's user sees it (`sakura-secrets.io/status-warnings`).
The app image is the harness's busybox with `USER 1000:1000` added, built here in the node's
docker (the local cluster's kubelet uses it; imagePullPolicy Never).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from harness import manifests
from harness.kube import Kube
from harness.stack import Sakura, Webhook

SERVICE_ACCOUNT = "imageuser"


@pytest.fixture(scope="module")
def app_image(run_id: str) -> Iterator[str]:
    """busybox whose processes run as uid 1000, gid 1000 unless the pod says otherwise."""
    tag = f"local/busybox-user1000:{run_id}"
    env = dict(os.environ)
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode != 0:
        env["DOCKER_BUILDKIT"] = "0"
    built = subprocess.run(
        ["docker", "build", "-q", "-t", tag, "-"],
        input=f"FROM {manifests.APP_IMAGE}\nUSER 1000:1000\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


@pytest.fixture(scope="module")
def ns(kube: Kube, webhook: Webhook, node: str) -> str:
    ns = webhook.namespace("imageuser")
    kube.apply(
        manifests.service_account(SERVICE_ACCOUNT, ns),
        *manifests.grant("read", ns, SERVICE_ACCOUNT, manifests.pairs("db-password")),
    )
    return ns


def _run(kube: Kube, ns: str, name: str, image: str, **pod_level: Any) -> dict[str, Any]:
    spec = manifests.pod_spec(
        "id; ls -ln /sakura/secrets; cat /sakura/secrets/db && echo && echo DONE",
        service_account=SERVICE_ACCOUNT,
        restart="Never",
    )
    assert "securityContext" not in spec["containers"][0]
    spec["containers"][0]["image"] = image
    if pod_level:
        spec["securityContext"] = pod_level  # fsGroup only: still no runAsUser anywhere
    annotations = manifests.pod_annotations({"secret-db": "db-password"})
    kube.apply(manifests.pod(name, ns, spec, annotations=annotations))

    def finished() -> dict[str, Any] | None:
        pod: dict[str, Any] = kube.get("pod", name, ns)
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    result: dict[str, Any] = kube.wait_for(f"pod {name} to finish", finished, timeout=180)
    return result


@pytest.mark.parametrize(
    ("name", "pod_level", "mode", "readers"),
    [
        ("anyone", {}, "0444", "any user of the containers that mount them"),
        ("fsgroup", {"fsGroup": 2000}, "0440", "group 2000, which the app runs with"),
    ],
)
def test_an_app_whose_image_decides_its_user_reads_its_files(
    kube: Kube,
    ns: str,
    sakura: Sakura,
    app_image: str,
    name: str,
    pod_level: dict[str, Any],
    mode: str,
    readers: str,
) -> None:
    pod = _run(kube, ns, name, app_image, **pod_level)
    logs = kube.logs(ns, name, "app")
    assert pod["status"]["phase"] == "Succeeded", logs + kube.describe("pod", name, ns)
    assert "uid=1000" in logs  # the image's USER, not one the pod states
    assert sakura.values["db-password"] in logs and "DONE" in logs
    warning = pod["metadata"]["annotations"]["sakura-secrets.io/status-warnings"]
    assert warning == (
        "sakura-secrets: no run-as-user or runAsUser (the image's USER decides the app's uid): "
        f"files without file-mode get uid 65532, mode {mode}, readable by {readers}; "
        "set sakura-secrets.io/run-as-user to limit them to the app"
    )
