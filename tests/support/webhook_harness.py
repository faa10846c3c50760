"""What the webhook's integration tests share: a recording admission check, a sample pod and
its review, TLS files replaced like kubelet does, and an injector served on both its ports."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import Plan
from injector.operations.certs import KeyPair, issue_serving_cert
from injector.operations.reviews import pod_create_review
from injector.serving.app import InjectorApps
from injector.serving.server import Listener, serving_in_thread
from injector.serving.tls import ReloadingTLS
from injector.webhook.checks import CheckOutcome
from injector.webhook.settings import WebhookSettings


class RecordingCheck:
    """The admission-check seam: denies the secrets named in `denied`, records every call."""

    def __init__(self, denied: frozenset[str] = frozenset(), explode: bool = False) -> None:
        self.denied = denied
        self.explode = explode
        self.calls: list[tuple[str, str, Plan]] = []

    async def __call__(self, namespace: str, service_account: str, plan: Plan) -> CheckOutcome:
        self.calls.append((namespace, service_account, plan))
        if self.explode:
            raise RuntimeError("kaboom-internal-detail")
        names = sorted({ref.name for ref in plan.secrets()} & self.denied)
        if names:
            return CheckOutcome(denial=f"serviceaccount may not get {', '.join(names)}")
        return CheckOutcome()


def pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "annotations": {
                "sakura-secrets.io/inject": "true",
                "sakura-secrets.io/secret-db": "db-password@3",
                "sakura-secrets.io/secret-api.json": "api-keys#token",
                **(annotations or {}),
            },
        },
        "spec": {
            "serviceAccountName": "shop-api",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "containers": [
                {"name": "app", "image": "shop/api:1.0", "ports": [{"containerPort": 8080}]},
                {"name": "proxy", "image": "envoy:1.30"},
            ],
        },
    }


def admission_review(
    obj: dict[str, Any], uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002"
) -> bytes:
    return json.dumps(pod_create_review(obj, namespace="shop", uid=uid)).encode()


def write_pair(directory: Path, pair: KeyPair) -> None:
    """Replace both files the way kubelet updates a Secret volume: each atomically."""
    for name, data in (("tls.crt", pair.cert_pem), ("tls.key", pair.key_pem)):
        staging = directory / f".{name}.new"
        staging.write_bytes(data)
        os.replace(staging, directory / name)


def loopback_injector(tmp_path: Path, ca: KeyPair) -> tuple[WebhookSettings, ReloadingTLS]:
    """Settings for an injector on loopback, and its serving pair (for 127.0.0.1) in `tmp_path`."""
    write_pair(tmp_path, issue_serving_cert(ca, ["localhost"], ["127.0.0.1"]))
    settings = WebhookSettings(
        image="sakura-secrets-injector:test",
        broker_url="https://sakura-secrets-injector.sakura-secrets.svc",
        broker_ca_pem=ca.cert_pem.decode(),
        default_vault_id="123456789012",
    )
    return settings, ReloadingTLS(tmp_path / "tls.crt", tmp_path / "tls.key")


@dataclass(frozen=True)
class Ports:
    """The two ports of one injector: `webhook` (POST /mutate) and `broker` (the rest)."""

    webhook: str
    broker: str


@contextlib.contextmanager
def serving(apps: InjectorApps, tls: ReloadingTLS) -> Iterator[Ports]:
    listeners = [Listener("webhook", apps.webhook, tls, 0), Listener("broker", apps.broker, tls, 0)]
    with serving_in_thread(listeners) as [webhook, broker]:
        yield Ports(webhook, broker)
