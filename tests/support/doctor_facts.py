"""A healthy installation as doctor's facts: the objects of manifests/base as applied, with the
status a running cluster adds, two replicas presenting a certificate the caBundle verifies.
Tests break one fact at a time (`dataclasses.replace`)."""

from __future__ import annotations

import base64
import copy
import functools
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from injector.operations.certs import KeyPair, generate_ca, issue_serving_cert, service_dns_names
from injector.operations.doctor.facts import Facts, Install, Presented, Readiness

BASE = Path(__file__).resolve().parents[2] / "manifests" / "base"
NOW = 1_800_000_000.0
"""2027-01-15: the facts' clock (the certificates below are issued at the real now)."""
APP = "shop"
API_SERVER = "10.0.0.10"


@functools.cache
def base_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> object, from manifests/base/*.yaml as written."""
    found = {}
    for path in sorted(BASE.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj.get("kind") != "Kustomization":
                found[(obj["kind"], obj["metadata"]["name"])] = obj
    return found


def obj(kind: str, name: str = "sakura-secrets-injector") -> dict[str, Any]:
    return copy.deepcopy(base_objects()[(kind, name)])


@functools.cache
def pki() -> tuple[KeyPair, KeyPair]:
    """The CA and the serving pair for sakura-secrets-injector.sakura-secrets.svc."""
    ca = generate_ca()
    return ca, issue_serving_cert(
        ca, service_dns_names("sakura-secrets-injector", "sakura-secrets")
    )


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def webhook(ca_pem: bytes | None = None) -> dict[str, Any]:
    configuration = obj("MutatingWebhookConfiguration")
    bundle = ca_pem if ca_pem is not None else pki()[0].cert_pem
    configuration["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(bundle).decode()
    return configuration


def ready(deployment: dict[str, Any], count: int) -> dict[str, Any]:
    deployment["status"] = {"readyReplicas": count} if count else {}
    return deployment


def endpoints(addresses: list[str]) -> dict[str, Any]:
    return {
        "subsets": [
            {
                "addresses": [{"ip": a} for a in addresses],
                "ports": [{"name": "broker", "port": 9443}, {"name": "webhook", "port": 8443}],
            }
        ]
        if addresses
        else []
    }


def network_policy(api_server_cidr: str = f"{API_SERVER}/32") -> dict[str, Any]:
    policy = obj("NetworkPolicy")
    policy["spec"]["ingress"][0]["from"][1] = {"ipBlock": {"cidr": api_server_cidr}}
    return policy


def namespace(labels: dict[str, str] | None = None) -> dict[str, Any]:
    shown = {"sakura-secrets-injection": "enabled"} if labels is None else labels
    return {"kind": "Namespace", "metadata": {"name": APP, "labels": shown}}


def healthy(**changes: Any) -> Facts:
    serving = pki()[1]
    facts = Facts(
        install=Install(),
        now=NOW,
        server_version=("1", "30"),
        webhook=webhook(),
        deployment=ready(obj("Deployment"), 2),
        certs_deployment=ready(obj("Deployment", "sakura-secrets-certs"), 1),
        pdb=obj("PodDisruptionBudget"),
        service=obj("Service"),
        endpoints=endpoints(["10.1.0.4", "10.1.0.5"]),
        network_policy=network_policy(),
        presented=(
            Presented("10.1.0.4:8443", der(serving.cert_pem)),
            Presented("10.1.0.5:8443", der(serving.cert_pem)),
        ),
        readiness=(
            Readiness("injector-a", 200, {"status": "ready"}),
            Readiness("injector-b", 200, {"status": "ready"}),
        ),
        api_server_addresses=(API_SERVER,),
        injector_namespace_labels={"kubernetes.io/metadata.name": "sakura-secrets"},
        namespace=APP,
        namespace_object=namespace(),
    )
    return replace(facts, **changes)
