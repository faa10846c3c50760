"""The second webhook of the reinvocation test: it labels every pod it sees and remembers what
it saw, so a test can tell whether the injector's mutation came before it."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BUMPED_LABEL = "sakura-e2e/bumped"


class BumpWebhook:
    """A Starlette app; `seen` lists (pod name or generateName, init container names) per call."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[str]]] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/mutate", self.mutate, methods=["POST"])])

    async def mutate(self, request: Request) -> JSONResponse:
        review = await request.json()
        pod: dict[str, Any] = review["request"]["object"]
        meta = pod.get("metadata", {})
        inits = [c["name"] for c in pod.get("spec", {}).get("initContainers", []) or []]
        with self._lock:
            self.seen.append((meta.get("name") or meta.get("generateName", ""), inits))
        response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
        labels = meta.get("labels") or {}
        if BUMPED_LABEL not in labels:
            patch = [
                {"op": "add", "path": "/metadata/labels", "value": {**labels, BUMPED_LABEL: "yes"}}
            ]
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        return JSONResponse(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )
