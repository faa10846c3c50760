"""A recording stand-in for the events.k8s.io/v1 calls, for what the cluster cannot be made
to do on demand (refuse every write, answer 404 for an expired Event); the e2e writes real
Events (e2e/test_e2e_events.py)."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException


class RecordingEventsApi:
    """Records each create and patch; `fail` (an exception) makes every call raise it."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, str, dict[str, Any]]] = []
        self.fail: Exception | None = None

    def create_namespaced_event(self, namespace: str, body: Any, **kwargs: Any) -> Any:
        if self.fail is not None:
            raise self.fail
        assert body["metadata"]["namespace"] == namespace
        self.created.append(body)
        return body

    def patch_namespaced_event(self, name: str, namespace: str, body: Any, **kwargs: Any) -> Any:
        if self.fail is not None:
            raise self.fail
        assert kwargs["_content_type"] == "application/merge-patch+json"
        self.patched.append((namespace, name, body))
        return body


def forbidden() -> ApiException:
    return ApiException(status=403, reason="Forbidden")
