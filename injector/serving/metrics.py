"""Prometheus metrics of the admission path, and the `/metrics` endpoint of the injector.

Reviews are counted by outcome, reason code (a fixed vocabulary) and the pod's namespace:
never a pod's name, a secret's name or a value. The namespace is the review's word; the
webhook port may be reachable by tenants who post made-up reviews, so its values are bounded
(`injector.namespace_labels`).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from injector.namespace_labels import NamespaceLabels
from injector.webhook.decision import Decision, Injected, ReasonCode, Skipped

MALFORMED = "malformed"
"""The reason of a body that is no AdmissionReview (no decision, no reason code)."""
SHED_CODE = 429
"""The status code of a review's denial when the injector was too busy to review it."""


class AdmissionMetrics:
    """Counts reviews by outcome, reason and namespace, times them, and shows the queue."""

    def __init__(
        self, registry: CollectorRegistry, *, waiting: Callable[[], int] | None = None
    ) -> None:
        """`waiting`: how many reviews wait for the admission thread now (read at scrape)."""
        self.namespace = NamespaceLabels()
        self.reviews = Counter(
            "sakura_secrets_admission_reviews",
            "AdmissionReviews answered, by outcome, reason code and the pod's namespace",
            ["outcome", "reason", "namespace"],
            registry=registry,
        )
        self.seconds = Histogram(
            "sakura_secrets_admission_seconds",
            "Time to answer an AdmissionReview",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        if waiting is not None:
            queue = Gauge(
                "sakura_secrets_admission_queue_waiting",
                "AdmissionReviews waiting for the admission thread",
                registry=registry,
            )
            queue.set_function(waiting)

    def observe(self, decision: Decision, seconds: float) -> None:
        """A review answered with `decision`."""
        namespace = self.namespace(decision.pod.namespace)
        self._count(outcome_of(decision), decision.reason_code.value, namespace, seconds)

    def malformed(self, seconds: float) -> None:
        """A body that is no review (HTTP 400, or 413 for one too large)."""
        self._count(MALFORMED, MALFORMED, "", seconds)

    def failed(self, namespace: str, seconds: float) -> None:
        """A review the injector failed on unexpectedly (denied); `namespace`: as claimed."""
        self._count("error", ReasonCode.INTERNAL.value, self.namespace(namespace), seconds)

    def _count(self, outcome: str, reason: str, label: str, seconds: float) -> None:
        """`label`: the namespace's label, already bounded."""
        self.reviews.labels(outcome, reason, label).inc()
        self.seconds.observe(seconds)


def readiness_gauge(registry: CollectorRegistry) -> Gauge:
    """1 while the last /readyz answered ready, else 0: what the kubelet last heard, so an
    alert sees a replica that is up but not ready (set by the /readyz handler)."""
    return Gauge(
        "sakura_secrets_ready",
        "1 when the last readiness check (/readyz) passed, 0 when it failed or none has run",
        registry=registry,
    )


def outcome_of(decision: Decision) -> str:
    """The metric's label for a review's decision (a shed review is a 429 refusal)."""
    if isinstance(decision, Injected):
        return "injected"
    if isinstance(decision, Skipped):
        return "skipped"
    return "shed" if decision.code == SHED_CODE else "denied"


def metrics_route(registry: CollectorRegistry) -> Route:
    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics, methods=["GET"])
