"""Beyond the six scenarios: direct mode (the init container calls Sakura itself with the
user's credentials Secret) and an init failure that `kubectl describe` explains."""

from __future__ import annotations

from typing import Any

import pytest
from harness import manifests
from harness.kube import Kube
from harness.stack import Sakura, Webhook

pytestmark = pytest.mark.cluster

SERVICE_ACCOUNT = "worker"


@pytest.fixture(scope="module")
def ns(kube: Kube, webhook: Webhook, node: str) -> str:
    ns = webhook.namespace("init")
    kube.apply(
        manifests.service_account(SERVICE_ACCOUNT, ns),
        *manifests.grant("read", ns, SERVICE_ACCOUNT, manifests.pairs("db-password", "db-config")),
    )
    return ns


def _finished_pod(kube: Kube, ns: str, name: str, entries: dict[str, str]) -> dict[str, Any]:
    spec = manifests.pod_spec(
        "cat /sakura/secrets/*; echo; echo DONE",
        service_account=SERVICE_ACCOUNT,
        restart="Never",
        run_as=(65532, 65532),
    )
    kube.apply(manifests.pod(name, ns, spec, annotations=manifests.pod_annotations(entries)))

    def finished() -> dict[str, Any] | None:
        pod: dict[str, Any] = kube.get("pod", name, ns)
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    result: dict[str, Any] = kube.wait_for(f"pod {name} to finish", finished, timeout=180)
    return result


def test_direct_mode_reads_sakura_with_the_users_credentials(
    kube: Kube, ns: str, sakura: Sakura
) -> None:
    kube.run(
        "create", "secret", "generic", "sakura-api", "-n", ns,
        f"--from-literal=SAKURA_ACCESS_TOKEN={sakura.token}",
        f"--from-literal=SAKURA_ACCESS_TOKEN_SECRET={sakura.token_secret}",
    )  # fmt: skip
    pod = _finished_pod(
        kube, ns, "direct", {"credentials-secret": "sakura-api", "secret-db": "db-password"}
    )
    assert pod["status"]["phase"] == "Succeeded", kube.describe("pod", "direct", ns)
    assert sakura.values["db-password"] in kube.logs(ns, "direct", "app")
    volumes = {v["name"] for v in pod["spec"]["volumes"]}
    assert "sakura-secrets-token" not in volumes, "direct mode needs no ServiceAccount token"


def test_a_failed_fetch_stops_the_pod_with_a_reason_naming_the_secret(
    kube: Kube, ns: str, sakura: Sakura
) -> None:
    # the webhook cannot know a JSON value's keys (it never reads values), so this is admitted
    pod = _finished_pod(kube, ns, "missing-key", {"secret-user": "db-config#no-such-key"})
    assert pod["status"]["phase"] == "Failed"
    (init,) = pod["status"]["initContainerStatuses"]
    terminated = init["state"]["terminated"]
    assert terminated["exitCode"] != 0
    message = terminated.get("message", "")
    assert "db-config" in message and "no-such-key" in message, message
    assert not [v for v in sakura.leaf_values() if v in message], "the reason leaks a value"
    assert "no-such-key" in kube.describe("pod", "missing-key", ns)
    assert pod["status"]["containerStatuses"][0]["state"].get("running") is None
