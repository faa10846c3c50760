"""Fakes shared by the broker's unit tests: a fake Sakura, RBAC's reviews, a fake API.

Kept apart so the cache's, the inventory's, the access reviewer's, the token reviewer's, the
service's and the admission check's tests drive the same fakes (the clock: support.clock).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from injector.broker.cache import CacheSettings, SecretCache
from injector.broker.tokens import AUDIENCE, POD_NAME_EXTRA, POD_UID_EXTRA
from injector.fair_queue import FairQueue
from sakura import NotFound, SecretInfo, Unveiled, VaultInfo
from support.clock import HandClock
from support.values import OTHER_VAULT, VAULT

A, B = VAULT, OTHER_VAULT
YEAR_2100 = 4102444800


def projected_token(**claims: Any) -> str:
    """A token shaped like a pod's projected one (audience ours, expiring in 2100), signed with
    a key nobody checks: the broker only reads its claims, the API server verifies it."""
    payload = {"aud": [AUDIENCE], "exp": YEAR_2100, "sub": "system:serviceaccount:shop:api"}
    payload.update(claims)
    return jwt.encode(payload, "a-test-key-of-32-bytes-or-more..", algorithm="HS256")


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
        self.unveil_fail: Exception | None = None
        """Makes unveils (not listings) raise it: a listing that works, an unveil that fails."""
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

    async def list_vaults(self) -> list[VaultInfo]:
        """The vaults that hold values (the readiness recheck's call)."""
        if self.fail is not None:
            raise self.fail
        return [VaultInfo(v, f"vault {v}") for v in sorted({v for v, _ in self.values})]

    async def unveil(
        self, vault_id: str, name: str, version: int | None = None, *, tenant: str | None = None
    ) -> Unveiled:
        self.calls.append((vault_id, name, version))
        self.tenants.append(("unveil", tenant))
        if self.gate is not None:
            await self.gate.wait()
        failure = self.fail if self.fail is not None else self.unveil_fail
        if failure is not None:
            raise failure
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


TOKEN = projected_token()
UID = "0c5f6a0e-1111-4b7e-9a51-2f1d3c4b5a69"


def status(
    *,
    authenticated: bool = True,
    audiences: list[str] | None = None,
    username: str = "system:serviceaccount:shop:api",
    extra: dict[str, Any] | None = None,
    groups: list[str] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """A TokenReview status as `V1TokenReviewStatus.to_dict()` gives it."""
    return {
        "authenticated": authenticated,
        "audiences": [AUDIENCE] if audiences is None else audiences,
        "error": error,
        "user": {
            "username": username,
            "uid": "sa-uid",
            "groups": ["system:serviceaccounts", "system:authenticated"]
            if groups is None
            else groups,
            "extra": {POD_NAME_EXTRA: ["api-7d9"], POD_UID_EXTRA: [UID]}
            if extra is None
            else extra,
        },
    }


class FakeApi:
    """Answers TokenReviews with `answer` and pod reads from `pods`; records every call."""

    def __init__(self) -> None:
        self.answer: k8s.V1TokenReviewStatus | None = review_status(status())
        self.pods: dict[tuple[str, str], k8s.V1Pod] = {("shop", "api-7d9"): pod(UID, "api")}
        self.reviews: list[dict[str, Any]] = []
        self.reads: list[dict[str, Any]] = []
        self.review_fails: Exception | None = None
        self.read_fails: Exception | None = None

    def create_token_review(self, body: k8s.V1TokenReview, **kwargs: Any) -> k8s.V1TokenReview:
        self.reviews.append(
            {
                "token": body.spec.token,
                "audiences": body.spec.audiences,
                "timeout": kwargs.get("_request_timeout"),
            }
        )
        if self.review_fails is not None:
            raise self.review_fails
        return k8s.V1TokenReview(spec=body.spec, status=self.answer)

    def read_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> k8s.V1Pod:
        self.reads.append(
            {"name": name, "namespace": namespace, "timeout": kwargs.get("_request_timeout")}
        )
        if self.read_fails is not None:
            raise self.read_fails
        found = self.pods.get((namespace, name))
        if found is None:
            raise ApiException(status=404, reason="Not Found")
        return found


def review_status(fields: dict[str, Any]) -> k8s.V1TokenReviewStatus:
    user = fields["user"]
    return k8s.V1TokenReviewStatus(
        authenticated=fields["authenticated"],
        audiences=fields["audiences"],
        error=fields["error"],
        user=k8s.V1UserInfo(
            username=user["username"], uid=user["uid"], groups=user["groups"], extra=user["extra"]
        ),
    )


def pod(uid: str | None, service_account: str | None) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="api-7d9", namespace="shop", uid=uid),
        spec=k8s.V1PodSpec(containers=[], service_account_name=service_account),
    )


class RecordingCalls(FairQueue):
    """The real pool, remembering the lane of each call."""

    def __init__(self) -> None:
        super().__init__("kubernetes", workers=2, per_key=1, waiting_per_key=4, max_waiting=8)
        self.lanes: list[Any] = []

    async def run(self, key: Any, work: Any, *, deadline: float | None = None) -> Any:
        self.lanes.append(key)
        return await super().run(key, work, deadline=deadline)


def cache(
    sakura: FakeSakura,
    clock: HandClock,
    registry: CollectorRegistry | None = None,
    **settings: float,
) -> SecretCache:
    defaults = {"latest_ttl": 30.0, "stale_for": 300.0, "retry_after": 10.0}
    return SecretCache(
        sakura,
        settings=CacheSettings(**{**defaults, **settings}),  # type: ignore[arg-type]
        registry=CollectorRegistry() if registry is None else registry,
        clock=clock,
    )
