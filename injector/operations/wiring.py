"""Building the broker's parts once per process: the one Sakura client, limiter and cache,
and the one pool of Kubernetes API calls the token and access reviewers share.

`serve` calls `build_broker` and mounts `parts.routes` on the broker port and passes
`parts.check` as the admission check; `can-i` needs only an AccessReviewer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes import client as k8s
from prometheus_client import CollectorRegistry
from starlette.routing import Route

from injector.broker.access import AccessReviewer
from injector.broker.admission_check import BrokerAdmissionCheck
from injector.broker.cache import CacheSettings, SecretCache
from injector.broker.credentials import CredentialWatch
from injector.broker.inventory import NEGATIVE_TTL, VaultInventory
from injector.broker.replicas import BudgetShare, EndpointsReplicas
from injector.broker.service import Broker
from injector.broker.tokens import TokenReviewer
from injector.kube import KUBE_TIMEOUT, kubernetes_calls
from injector.serving.broker_routes import broker_routes
from sakura import RateLimiter, SakuraClient, SakuraConfig


@dataclass(frozen=True)
class BrokerSettings:
    """Every knob of the broker with its default; docs/broker.md explains each."""

    cache: CacheSettings = field(default_factory=CacheSettings)
    review_ttl: float = 10.0
    """Seconds an accepted token's review is reused (keyed by the token's SHA-256)."""
    reject_ttl: float = 30.0
    """Seconds a token the API server rejected is refused without another TokenReview."""
    pod_ttl: float = 5.0
    """Seconds the bound pod's existence is reused."""
    allow_ttl: float = 30.0
    """Seconds an RBAC allow is reused (how long a revoked grant may still work)."""
    deny_ttl: float = 5.0
    """Seconds an RBAC deny is reused (how long a new grant may take to work)."""
    kube_timeout: float = KUBE_TIMEOUT
    """Seconds one TokenReview, SubjectAccessReview or pod read may take before a 503."""
    listing_ttl: float = 30.0
    """Seconds a vault's listing (names, latest versions) is reused at admission."""
    negative_ttl: float = NEGATIVE_TTL
    """Seconds a missing vault, secret or version is believed missing without asking again."""
    rate_per_minute: float = 90.0
    """Sakura calls per minute for the whole installation (Sakura allows about 100 per
    account): each replica takes its share when `replicas_of` is set, else all of it."""
    rate_burst: int = 5
    waiting_per_namespace: int = 10
    """Reads of one namespace that may wait for the rate limiter; more get HTTP 429."""
    replicas_of: tuple[str, str] | None = None
    """(namespace, Service) whose ready Endpoints count the replicas sharing the budget."""
    sakura_deadline: float = 10.0
    """Seconds one Sakura read may take, retries included, before the stale copy is used."""
    sakura_timeout: float = 5.0
    sakura_retries: int = 3
    admission_timeout: float = 4.0
    """Seconds the admission checks (RBAC, then existence) wait in all before admitting with a
    warning; keep it well under the webhook's timeoutSeconds (10)."""


@dataclass
class BrokerParts:
    """What `serve` mounts; `aclose` at shutdown releases the Sakura connections."""

    broker: Broker
    check: BrokerAdmissionCheck
    access: AccessReviewer
    sakura: SakuraClient
    routes: list[Route]
    share: BudgetShare | None = None
    credentials: CredentialWatch | None = None
    """Remembers whether Sakura rejected the key; its readiness goes into /readyz."""

    async def aclose(self) -> None:
        if self.share is not None:
            self.share.stop()
        await self.sakura.aclose()


def build_broker(
    sakura_config: SakuraConfig,
    *,
    kube_api_client: k8s.ApiClient,
    settings: BrokerSettings | None = None,
    registry: CollectorRegistry | None = None,
    sakura_verify: bool | str = True,
    cache_clock: Callable[[], float] = time.monotonic,
) -> BrokerParts:
    """One Sakura client, limiter, cache and reviewers shared by the broker and admission.

    `registry` None registers the metrics in prometheus_client's default registry.
    `cache_clock` is what the secret cache measures its lifetimes with (a test's hand clock).
    """
    s = settings if settings is not None else BrokerSettings()
    limiter = RateLimiter(s.rate_per_minute, s.rate_burst, max_waiting=s.waiting_per_namespace)
    share = None
    if s.replicas_of is not None:
        source = EndpointsReplicas(kube_api_client, *s.replicas_of, timeout=s.kube_timeout)
        share = BudgetShare(limiter, source, per_minute=s.rate_per_minute, burst=s.rate_burst)
        share.start()
    sakura = SakuraClient(
        sakura_config,
        limiter=limiter,
        deadline=s.sakura_deadline,
        timeout=s.sakura_timeout,
        max_retries=s.sakura_retries,
        verify=sakura_verify,
    )
    calls = kubernetes_calls()
    access = AccessReviewer(
        kube_api_client,
        allow_ttl=s.allow_ttl,
        deny_ttl=s.deny_ttl,
        request_timeout=s.kube_timeout,
        calls=calls,
    )
    tokens = TokenReviewer(
        kube_api_client,
        review_ttl=s.review_ttl,
        reject_ttl=s.reject_ttl,
        pod_ttl=s.pod_ttl,
        request_timeout=s.kube_timeout,
        calls=calls,
    )
    watched = CredentialWatch(sakura)
    inventory = VaultInventory(
        watched, ttl=s.listing_ttl, negative_ttl=s.negative_ttl, clock=cache_clock
    )
    cache = SecretCache(
        watched, settings=s.cache, registry=registry, inventory=inventory, clock=cache_clock
    )
    broker = Broker(tokens, access, cache)
    check = BrokerAdmissionCheck(access, inventory, timeout=s.admission_timeout)
    return BrokerParts(broker, check, access, sakura, broker_routes(broker), share, watched)
