"""Prometheus metrics of the admission path, and the `/metrics` endpoint of the injector.

Labels carry outcomes only: never a pod, namespace, secret name or value, so cardinality
stays fixed and nothing sensitive can reach a scrape.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from injector.webhook.decision import Decision, Injected, Skipped

OUTCOMES = ("injected", "skipped", "denied", "shed", "malformed", "error")
SHED_CODE = 429
"""The status code of a review's denial when the injector was too busy to review it."""


class AdmissionMetrics:
    """Counts reviews by outcome and times them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reviews = Counter(
            "sakura_secrets_admission_reviews",
            "AdmissionReviews answered, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "sakura_secrets_admission_seconds",
            "Time to answer an AdmissionReview",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        for outcome in OUTCOMES:
            self.reviews.labels(outcome)

    def observe(self, outcome: str, seconds: float) -> None:
        self.reviews.labels(outcome).inc()
        self.seconds.observe(seconds)


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
