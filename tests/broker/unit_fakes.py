"""Fakes shared by the broker's unit tests: a hand clock, a fake Sakura, RBAC's reviews.

Kept apart so the cache's, the inventory's, the access reviewer's and the admission check's
tests drive the same fakes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
from kubernetes import client as k8s

from injector.broker.tokens import AUDIENCE
from sakura import NotFound, SecretInfo, Unveiled

A, B = "110000000001", "110000000002"
YEAR_2100 = 4102444800


def projected_token(**claims: Any) -> str:
    """A token shaped like a pod's projected one (audience ours, expiring in 2100), signed with
    a key nobody checks: the broker only reads its claims, the API server verifies it."""
    payload = {"aud": [AUDIENCE], "exp": YEAR_2100, "sub": "system:serviceaccount:shop:api"}
    payload.update(claims)
    return jwt.encode(payload, "a-test-key-of-32-bytes-or-more..", algorithm="HS256")


class Clock:
    """A hand-driven clock: tests move `now`; nothing sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSakura:
    """Values per (vault, name): versions 1..n; `fail` makes every call raise it."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], list[str]] = {
            (A, "db"): ["a-db-1", "a-db-2"],
            (B, "db"): ["b-db-1"],
        }
        self.calls: list[tuple[str, str, int | None]] = []
        """Unveils only; listings (which pinned reads consult first) go to `listings`."""
        self.listings: list[str] = []
        self.tenants: list[tuple[str, str | None]] = []
        """("list" or "unveil", tenant) per call: whose turn at the quota each call took."""
        self.fail: Exception | None = None
        self.answer_as: Unveiled | None = None
        self.gate: asyncio.Event | None = None
        self.list_gate: asyncio.Event | None = None
        """Holds listings (not unveils) until set."""

    async def list_secrets(self, vault_id: str, *, tenant: str | None = None) -> list[SecretInfo]:
        self.listings.append(vault_id)
        self.tenants.append(("list", tenant))
        if self.list_gate is not None:
            await self.list_gate.wait()
        if self.fail is not None:
            raise self.fail
        return [SecretInfo(n, len(v)) for (v_id, n), v in self.values.items() if v_id == vault_id]

    async def unveil(
        self, vault_id: str, name: str, version: int | None = None, *, tenant: str | None = None
    ) -> Unveiled:
        self.calls.append((vault_id, name, version))
        self.tenants.append(("unveil", tenant))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        if self.answer_as is not None:
            return self.answer_as
        versions = self.values.get((vault_id, name))
        if versions is None or (version is not None and version > len(versions)):
            raise NotFound("no such secret", kind="secret", name=name)
        number = len(versions) if version is None else version
        return Unveiled(name, number, versions[number - 1])


class RecordingReviews:
    """Answers allowed for the (resource, name) pairs in `grants`; records every review."""

    def __init__(self, grants: set[tuple[str, str]]) -> None:
        self.grants = grants
        self.sent: list[dict[str, Any]] = []
        self.fail: Exception | None = None
        self.delay = 0.0
        """Seconds each review takes (a real sleep: the reviewer waits in a worker thread)."""

    def create_subject_access_review(
        self, body: k8s.V1SubjectAccessReview, **kwargs: Any
    ) -> k8s.V1SubjectAccessReview:
        spec = body.spec
        attrs = spec.resource_attributes
        self.sent.append(
            {
                "user": spec.user,
                "groups": spec.groups,
                "verb": attrs.verb,
                "group": attrs.group,
                "resource": attrs.resource,
                "name": attrs.name,
                "namespace": attrs.namespace,
                "timeout": kwargs.get("_request_timeout"),
            }
        )
        if self.delay:
            time.sleep(self.delay)  # in the reviewer's worker thread, as a slow API server
        if self.fail is not None:
            raise self.fail
        allowed = (attrs.resource, attrs.name) in self.grants
        return k8s.V1SubjectAccessReview(
            spec=spec, status=k8s.V1SubjectAccessReviewStatus(allowed=allowed)
        )
