"""Issue 19: where users look. A Deployment whose pods are denied shows an Event on its
ReplicaSet (`kubectl describe rs`, `kubectl get events`), a broker refusal of a running pod
shows one on the pod, a crash loop of refusals is one Event whose series counts them, and
the injector's log has one JSON audit line per broker answer, without the value."""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx
import pytest
from harness import manifests
from harness.kube import Kube
from harness.manifests import OTHER_VAULT_ID
from harness.stack import Sakura, Webhook

pytestmark = pytest.mark.cluster

SOURCE = "sakura-secrets.io/injector"


@pytest.fixture(scope="module")
def ns(kube: Kube, webhook: Webhook) -> str:
    ns = webhook.namespace("events")
    kube.apply(
        manifests.service_account("reader", ns),
        *manifests.grant("read-db", ns, "reader", manifests.pairs("db-password")),
    )
    return ns


def events_about(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    """The Events regarding `name`, as `kubectl get events --field-selector` lists them."""
    out = kube.run(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    return [e for e in json.loads(out)["items"] if e.get("reportingComponent") == SOURCE]


def test_a_denied_deployment_shows_an_event_on_its_replicaset(kube: Kube, ns: str) -> None:
    annotations = manifests.pod_annotations({"secret-loot": "forbidden"})
    spec = manifests.pod_spec("sleep 3600", service_account="reader")
    kube.apply(manifests.deployment("denied", ns, spec, annotations))
    [rs] = kube.wait_for(
        "the Deployment's ReplicaSet",
        lambda: kube.get("replicasets", namespace=ns)["items"],
        timeout=60,
    )
    name = rs["metadata"]["name"]
    [event] = kube.wait_for(
        f"an Event on ReplicaSet {name}", lambda: events_about(kube, ns, name), timeout=60
    )
    print(f"[e2e] Event on ReplicaSet {name}: {event['reason']} {event['message']}")
    assert event["involvedObject"]["kind"] == "ReplicaSet"
    assert event["involvedObject"]["uid"] == rs["metadata"]["uid"]
    assert (event["type"], event["reason"], event["action"]) == (
        "Warning",
        "SecretsDenied",
        "Admit",
    )
    assert event["message"].startswith(
        f"unauthorized (403): pod {name}-*: serviceaccount {ns}/reader"
    )
    # the ReplicaSet retries (with back-off): the same denial stays one Event, its series counts
    series = kube.wait_for(
        "the Event's series to count a retry",
        lambda: (events_about(kube, ns, name) or [{}])[0].get("series"),
        timeout=90,
        every=3,
    )
    assert series["count"] >= 2, series
    assert len(events_about(kube, ns, name)) == 1
    assert "SecretsDenied" in kube.describe("replicaset", name, ns)


def test_a_broker_refusal_of_a_running_pod_shows_an_event_on_the_pod_and_an_audit_line(
    kube: Kube, ns: str, webhook: Webhook, sakura: Sakura
) -> None:
    pod = manifests.pod("asker", ns, manifests.pod_spec("sleep 3600", service_account="reader"))
    kube.apply(pod)
    uid = kube.get("pod", "asker", ns)["metadata"]["uid"]
    token = kube.bound_token(ns, "reader", "asker")
    context = ssl.create_default_context(cafile=str(webhook.pki.ca_file))

    def ask(vault_id: str) -> httpx.Response:
        body = {"vault_id": vault_id, "secrets": [{"name": "db-password", "version": None}]}
        return httpx.post(
            f"{webhook.injector.broker_url}/v1/secrets",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            verify=context,
            timeout=30,
        )

    assert ask(OTHER_VAULT_ID).status_code == 403
    assert ask(sakura.vault_id).status_code == 200
    [event] = kube.wait_for("an Event on the pod", lambda: events_about(kube, ns, "asker"), 60)
    print(f"[e2e] Event on pod asker: {event['reason']} {event['message']}")
    assert (event["involvedObject"]["kind"], event["involvedObject"]["uid"]) == ("Pod", uid)
    assert (event["reason"], event["action"]) == ("SecretsRefused", "Fetch")
    denial = f'serviceaccount {ns}/reader may not get sakura-secrets.io vaults "{OTHER_VAULT_ID}"'
    assert event["message"].startswith(f"access-denied: {denial}")
    log = webhook.injector.log.read_text()
    audit = [json.loads(line) for line in log.splitlines() if '"injector.audit"' in line]
    mine = [line for line in audit if line.get("pod") == "asker"]
    assert [(a["decision"], a["vault_id"]) for a in mine] == [
        ("refused", OTHER_VAULT_ID),
        ("served", sakura.vault_id),
    ]
    refused, served = mine
    assert (refused["namespace"], refused["service_account"], refused["pod_uid"]) == (
        ns,
        "reader",
        uid,
    )
    assert refused["refusal"] == "access-denied" and refused["client"]
    assert [item["name"] for item in served["served"]] == ["db-password"]
    for value in sakura.leaf_values():
        assert value not in log
