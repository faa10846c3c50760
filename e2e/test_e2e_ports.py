"""Only the API server calls the webhook: the run's injector requires, on its webhook port, the
client certificate the cluster's API server presents (e2e/cluster.sh's admission
configuration), and still injects pods created through the API server; a direct request
without that certificate is refused at the TLS handshake. The broker port asks for none.
"""

from __future__ import annotations

import json
import socket
import ssl

import httpx
import pytest
from harness import manifests
from harness.kube import Kube
from harness.stack import Webhook
from harness.target import Target, unavailable, webhook_client_ca

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def fenced(target: Target, webhook: Webhook) -> Webhook:
    client_ca, reason = webhook_client_ca(target)
    if client_ca is None:
        unavailable(f"the webhook client-certificate scenario needs it: {reason}")
    assert webhook.injector.client_ca == client_ca  # the run's injector requires it
    return webhook


def _trusting(webhook: Webhook, *, tls12: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(webhook.pki.ca_file))
    if tls12:  # the server's verdict then arrives inside the handshake itself
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def test_a_pod_created_through_the_api_server_is_still_injected(
    kube: Kube, fenced: Webhook
) -> None:
    ns = fenced.namespace("mtls")
    kube.apply(
        manifests.service_account("reader", ns),
        *manifests.grant("read-db", ns, "reader", manifests.pairs("db-password")),
    )
    annotations = manifests.pod_annotations({"secret-db": "db-password"})
    spec = manifests.pod_spec("sleep 3600", service_account="reader")
    pod = manifests.pod("through-the-api-server", ns, spec, annotations=annotations)
    proc = kube.run(
        "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(pod), check=False
    )
    assert proc.returncode == 0, proc.stderr
    admitted = json.loads(proc.stdout)
    status = admitted["metadata"]["annotations"].get("sakura-secrets.io/status")
    print(f"[e2e] a pod created through the API server (client certificate): status={status}")
    assert admitted["metadata"]["annotations"]["sakura-secrets.io/status"] == "injected"
    assert [c["name"] for c in admitted["spec"]["initContainers"]] == ["sakura-secrets-init"]


def test_a_direct_review_without_the_client_certificate_fails_at_the_handshake(
    fenced: Webhook,
) -> None:
    host, port = fenced.injector.webhook_url.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as refused:
            with _trusting(fenced, tls12=True).wrap_socket(raw, server_hostname=host) as tls:
                tls.do_handshake()
    print(f"[e2e] direct POST /mutate without a client certificate: {refused.value}")
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}
    with httpx.Client(verify=_trusting(fenced), timeout=10) as client:
        with pytest.raises(httpx.TransportError):
            client.post(f"{fenced.injector.webhook_url}/mutate", json=review)
        # the broker port never asks for one: probes, Prometheus and init containers have none
        assert client.get(f"{fenced.injector.broker_url}/healthz").json() == {"status": "ok"}
