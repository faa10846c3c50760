"""The API server's side of an admission call, for the paths that play it: render, demo, tests.

Building the request the way kube-apiserver does and applying the answer's JSON patch are
kept here once, so every offline caller exercises exactly what a cluster would.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch


def pod_create_review(
    pod: dict[str, Any],
    *,
    namespace: str,
    uid: str,
    dry_run: bool = False,
    username: str = "system:serviceaccount:kube-system:replicaset-controller",
) -> dict[str, Any]:
    """An `admission.k8s.io/v1` AdmissionReview for creating `pod` in `namespace`."""
    metadata = pod.get("metadata")
    name = metadata.get("name", "") if isinstance(metadata, dict) else ""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": username},
            "object": pod,
            "oldObject": None,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def patched(pod: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """The pod as the API server stores it after an allowing response (unchanged: no patch)."""
    if "patch" not in response:
        return pod
    operations = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(pod, operations)
    return result
