"""MutatingWebhookConfigurations the harness registers by URL (no Service: the injector runs on
the host's loopback, which is what the local cluster's API server can reach)."""

from __future__ import annotations

import base64
from typing import Any

INJECTION_LABEL = "sakura-secrets-injection"
RUN_LABEL = "sakura-e2e/run"
"""Every object the harness makes carries it, so concurrent runs never see each other's pods."""
BUMP_LABEL = "sakura-e2e/bump"
"""Pods with this label also go through the harness's second webhook (reinvocation test)."""


def _webhook(name: str, url: str, ca_pem: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 15,
        **extra,
    }


def injector_webhook(config_name: str, url: str, ca_pem: bytes, run_id: str) -> dict[str, Any]:
    """The product's registration, as the install manifests make it, scoped to this run."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": config_name, "labels": {RUN_LABEL: run_id}},
        "webhooks": [
            _webhook(
                f"inject.{run_id}.sakura-secrets.io",
                url,
                ca_pem,
                namespaceSelector={"matchLabels": {INJECTION_LABEL: "enabled", RUN_LABEL: run_id}},
                reinvocationPolicy="IfNeeded",
            )
        ],
    }


def bump_webhook(config_name: str, url: str, ca_pem: bytes, run_id: str) -> dict[str, Any]:
    """A second webhook, ordered after the injector's (configuration names sort after it), that
    changes the pod and so makes the API server reinvoke the injector (IfNeeded)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": config_name, "labels": {RUN_LABEL: run_id}},
        "webhooks": [
            _webhook(
                f"bump.{run_id}.sakura-e2e.test",
                url,
                ca_pem,
                namespaceSelector={"matchLabels": {RUN_LABEL: run_id}},
                objectSelector={"matchLabels": {BUMP_LABEL: "yes"}},
                reinvocationPolicy="Never",
            )
        ],
    }
