"""How the broker is tuned: lifetimes, Sakura's quota, timeouts; checked when built.

Every knob has its default here; `injector.operations.wiring` builds the broker from one
`BrokerTuning`, and the `serve` command's flags set the few operators change (docs/broker.md
explains each).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from injector.broker.cache import CacheSettings
from injector.broker.inventory import NEGATIVE_TTL
from injector.kube import KUBE_TIMEOUT
from injector.setting import OutOfRange

SAKURA_QUOTA = 100.0
"""Calls per minute Sakura allows one account: more would only be refused."""
WEBHOOK_TIMEOUT = 10.0
"""The webhook configuration's timeoutSeconds the admission checks must finish well within."""


@dataclass(frozen=True)
class BrokerTuning:
    """Every knob of the broker with its default; a value that cannot work is refused."""

    cache: CacheSettings = field(default_factory=CacheSettings)
    review_ttl: float = 300.0
    """Seconds an accepted token's review is reused (keyed by the token's SHA-256), never
    past the token's own expiry: what it alone catches (a deleted ServiceAccount) takes
    this long; a deleted pod is caught by `pod_ttl`."""
    reject_ttl: float = 30.0
    """Seconds a token the API server rejected is refused without another TokenReview."""
    pod_ttl: float = 30.0
    """Seconds the bound pod's existence is reused: a deleted pod's token works this long
    at most (as a revoked grant works `allow_ttl`)."""
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

    def __post_init__(self) -> None:
        for name in ("review_ttl", "reject_ttl", "pod_ttl", "allow_ttl", "deny_ttl"):
            if not getattr(self, name) >= 0:
                raise OutOfRange(name, "must be 0 seconds or more")
        for name in ("kube_timeout", "listing_ttl", "sakura_deadline", "sakura_timeout"):
            if not getattr(self, name) > 0:
                raise OutOfRange(name, "must be above 0 seconds")
        if not 0 < self.rate_per_minute <= SAKURA_QUOTA:
            raise OutOfRange(
                "rate_per_minute", f"must be above 0 and at most {SAKURA_QUOTA:g}, Sakura's quota"
            )
        if not 0 < self.admission_timeout < WEBHOOK_TIMEOUT:
            raise OutOfRange(
                "admission_timeout",
                f"must be above 0 and under the webhook's timeoutSeconds ({WEBHOOK_TIMEOUT:g})",
            )
        if not 0 < self.negative_ttl <= self.listing_ttl:
            raise OutOfRange(
                "negative_ttl",
                f"must be above 0 and at most {self.listing_ttl:g}s (how long a vault's "
                "listing is reused)",
            )
        for name in ("rate_burst", "waiting_per_namespace"):
            if getattr(self, name) < 1:
                raise OutOfRange(name, "must be at least 1")
        if self.sakura_retries < 0:
            raise OutOfRange("sakura_retries", "must be 0 or more")
