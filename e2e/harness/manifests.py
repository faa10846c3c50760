"""Kubernetes objects the scenarios create: namespaces, grants, pods, Deployments, Jobs.

Pods use hostNetwork (the local cluster has no pod network, and the init container must reach
the injector on the host's 127.0.0.1) and local images only (imagePullPolicy: Never).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.webhooks import INJECTION_LABEL, RUN_LABEL

APP_IMAGE = "local/busybox:1"
PREFIX = "sakura-secrets.io/"
VAULT_ID = "120000000042"
"""The e2e emulator's vault, the injector's default; every grant opens it unless told."""
OTHER_VAULT_ID = "120000000043"
"""A second vault the injector's key can see, which no grant opens."""


def namespace(name: str, run_id: str, *, injection: bool) -> dict[str, Any]:
    labels = {RUN_LABEL: run_id, **({INJECTION_LABEL: "enabled"} if injection else {})}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def service_account(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": ns},
    }


def pairs(*names: str, vault: str = VAULT_ID) -> list[str]:
    """The resourceNames that grant secrets: `VAULT_ID/NAME`, the pair the contract reviews."""
    return [f"{vault}/{name}" for name in names]


def grant(
    name: str,
    ns: str,
    service_account: str,
    secrets: Sequence[str],
    *,
    vaults: Sequence[str] = (VAULT_ID,),
) -> list[dict[str, Any]]:
    """The Role and RoleBinding of the contract: get on sakura-secrets.io vaults and secrets.

    `secrets` are pairs `VAULT_ID/NAME` (see `pairs`); a bare name, last round's grant, opens
    nothing now, so it is refused here rather than left to fail as a puzzling denial. An empty
    `secrets` or `vaults` leaves that rule out (an empty resourceNames grants all).
    """
    bare = [s for s in secrets if "/" not in s]
    if bare:
        raise ValueError(f"grant secrets as pairs VAULT_ID/NAME (manifests.pairs), not {bare}")
    rules = [
        {"apiGroups": ["sakura-secrets.io"], "resources": [resource], "resourceNames": list(names),
         "verbs": ["get"]}
        for resource, names in (("vaults", vaults), ("secrets", secrets))
        if names
    ]  # fmt: skip
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": ns},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": ns}],
        },
    ]


def pod_annotations(entries: Mapping[str, str], *, inject: bool = True) -> dict[str, str]:
    """{"secret-db": "db-password"} -> the pod annotations with the product's prefix."""
    out = {PREFIX + "inject": "true"} if inject else {}
    out.update({PREFIX + key: value for key, value in entries.items()})
    return out


def pod_spec(
    command: str,
    *,
    service_account: str = "default",
    restart: str = "Always",
    run_as: tuple[int, int] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "hostNetwork": True,
        "serviceAccountName": service_account,
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "app",
                "image": APP_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", command],
            }
        ],
    }
    if run_as is not None:
        spec["securityContext"] = {"runAsUser": run_as[0], "runAsGroup": run_as[1]}
    return spec


def pod(
    name: str,
    ns: str,
    spec: Mapping[str, Any],
    *,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "annotations": dict(annotations or {}),
            "labels": dict(labels or {}),
        },
        "spec": dict(spec),
    }


def deployment(
    name: str, ns: str, spec: Mapping[str, Any], annotations: Mapping[str, str], replicas: int = 1
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": dict(annotations)},
                "spec": dict(spec),
            },
        },
    }


def job(
    name: str, ns: str, spec: Mapping[str, Any], annotations: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"job": name}, "annotations": dict(annotations)},
                "spec": {**spec, "restartPolicy": "Never"},
            },
        },
    }
