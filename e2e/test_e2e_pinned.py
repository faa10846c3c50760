"""Issue 15, case 7 on the local cluster: a deleted secret's pinned version is refused after
the listing lifetime.

A pod pinning `NAME@1` is injected and its init container writes the file (the broker now
holds that version). A second pod, admitted while the secret exists, is held unscheduled
(a scheduler nobody runs). The secret is deleted in the emulator; once the vault's listing
lifetime (30 s, `BrokerTuning.listing_ttl`, no flag) has passed, the held pod is bound to
the node: its init container asks the broker for the same pinned version and is refused,
exiting EXIT_NOT_FOUND with a termination message naming `NAME@1` and saying it does not
exist, without the value. A third pod pinning it, created then, is denied at admission
naming the secret. (On c3268bb the held pod's init container was served the deleted value.)
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from harness import manifests
from harness.kube import Kube
from harness.manifests import VAULT_ID
from harness.stack import Sakura, Webhook

from sidecar.errors import EXIT_NOT_FOUND
from sidecar.termination import PREFIX

pytestmark = pytest.mark.cluster

NAME = "doomed"
"""Made for this test alone: the other scenarios' secrets are never deleted."""
LISTING_TTL = 30.0  # BrokerTuning.listing_ttl
NEGATIVE_TTL = 10.0  # BrokerTuning.negative_ttl
SERVICE_ACCOUNT = "pinner"
HELD_SCHEDULER = "sakura-e2e-nobody"
"""A scheduler that does not run: the pod stays Pending until the test binds it."""


def _pod(name: str, ns: str, *, held: bool = False) -> dict[str, Any]:
    spec = manifests.pod_spec(
        "cat /sakura/secrets/pinned; echo; echo DONE",
        service_account=SERVICE_ACCOUNT,
        restart="Never",
        run_as=(65532, 65532),
    )
    if held:
        spec["schedulerName"] = HELD_SCHEDULER
    annotations = manifests.pod_annotations({"secret-pinned": f"{NAME}@1"})
    return manifests.pod(name, ns, spec, annotations=annotations)


def _finished(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        pod: dict[str, Any] = kube.get("pod", name, ns)
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    result: dict[str, Any] = kube.wait_for(f"pod {name} to finish", probe, timeout=60)
    return result


def test_a_deleted_secrets_pinned_version_is_refused_after_the_listing_lifetime(
    kube: Kube, webhook: Webhook, node: str, sakura: Sakura
) -> None:
    value = f"doomed-v1-{secrets.token_hex(8)}"
    sakura.emulator.store.put(VAULT_ID, NAME, value)
    # a listing of the vault made by an earlier test, younger than the negative lifetime, would
    # still be believed to lack the new secret (admission and broker alike); wait it out
    time.sleep(NEGATIVE_TTL + 1)
    ns = webhook.namespace("pinned")
    kube.apply(
        manifests.service_account(SERVICE_ACCOUNT, ns),
        *manifests.grant("read-doomed", ns, SERVICE_ACCOUNT, manifests.pairs(NAME)),
    )
    kube.apply(_pod("first", ns))
    first = _finished(kube, ns, "first")
    assert first["status"]["phase"] == "Succeeded", kube.describe("pod", "first", ns)
    assert value in kube.logs(ns, "first", "app")

    kube.apply(_pod("held", ns, held=True))  # admitted: the secret still exists
    held = kube.get("pod", "held", ns)
    assert [c["name"] for c in held["spec"]["initContainers"]] == ["sakura-secrets-init"]
    assert held["status"]["phase"] == "Pending" and not held["spec"].get("nodeName")

    sakura.emulator.store.delete(VAULT_ID, NAME)
    time.sleep(LISTING_TTL + 1)  # every listing that still showed it is now too old
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "held", "namespace": ns},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    bound = kube.create(binding)
    assert bound.returncode == 0, bound.stderr
    pod = _finished(kube, ns, "held")
    assert pod["status"]["phase"] == "Failed", kube.describe("pod", "held", ns)
    (init,) = pod["status"]["initContainerStatuses"]
    terminated = init["state"]["terminated"]
    print(f"[e2e] the held pod's init container: {terminated}")
    assert terminated["exitCode"] == EXIT_NOT_FOUND, terminated
    assert terminated.get("message") == (
        f"{PREFIX}not found: secret '{NAME}@1' does not exist in vault {VAULT_ID}; create it "
        "in Sakura's Secret Manager or fix the annotation\n"
    ), terminated
    assert value not in kube.logs(ns, "held", "sakura-secrets-init")
    assert pod["status"]["containerStatuses"][0]["state"].get("running") is None

    denied = kube.create(_pod("late", ns))
    print(f"[e2e] a new pod pinning it: {denied.stderr.strip()}")
    assert denied.returncode != 0 and "denied the request" in denied.stderr, denied.stderr
    assert (
        f"asks for secret '{NAME}', which does not exist in vault {VAULT_ID}; create it in "
        "Sakura's Secret Manager or fix the name" in denied.stderr
    ), denied.stderr
