"""Admission reviews counted by outcome, reason code and the pod's namespace (bounded), timed,
and the admission queue's depth read when scraped."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette

from injector.namespace_labels import OTHER
from injector.serving.metrics import MALFORMED, AdmissionMetrics, metrics_route, readiness_gauge
from injector.webhook.decision import Injected, PodRef, ReasonCode, Refused, Skipped

REVIEWS = "sakura_secrets_admission_reviews_total"


def counted(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    """(outcome, reason, namespace) -> reviews counted."""
    return {
        (s.labels["outcome"], s.labels["reason"], s.labels["namespace"]): s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == REVIEWS
    }


def test_each_review_is_counted_by_outcome_reason_and_namespace_and_timed() -> None:
    registry = CollectorRegistry()
    metrics = AdmissionMetrics(registry)
    shop, web = PodRef("shop", "api-1"), PodRef("web", generate_name="web-")
    metrics.observe(Injected("u", (), pod=shop), 0.002)
    metrics.observe(Injected("u", (), pod=shop), 0.002)
    metrics.observe(Skipped("u", "why", ReasonCode.OPTED_OUT, web), 0.0005)
    metrics.observe(Refused("u", 403, "no", reason_code=ReasonCode.UNAUTHORIZED, pod=shop), 0.3)
    metrics.observe(Refused("u", 429, "busy", reason_code=ReasonCode.OVERLOADED, pod=web), 7)
    metrics.malformed(0.001)
    metrics.failed("web", 0.004)
    assert counted(registry) == {
        ("injected", "injected", "shop"): 2,
        ("skipped", "opted-out", "web"): 1,
        ("denied", "unauthorized", "shop"): 1,
        ("shed", "overloaded", "web"): 1,
        ("malformed", "malformed", ""): 1,
        ("error", "internal", "web"): 1,
    }
    assert MALFORMED == "malformed"
    seconds = "sakura_secrets_admission_seconds"
    assert registry.get_sample_value(f"{seconds}_count") == 7
    assert registry.get_sample_value(f"{seconds}_sum") == pytest.approx(7.3095)
    assert registry.get_sample_value(f"{seconds}_bucket", {"le": "0.001"}) == 2
    assert registry.get_sample_value(f"{seconds}_bucket", {"le": "0.25"}) == 5
    assert registry.get_sample_value(f"{seconds}_bucket", {"le": "5.0"}) == 6
    assert registry.get_sample_value(f"{seconds}_bucket", {"le": "10.0"}) == 7
    text = generate_latest(registry).decode()
    assert (
        f"# HELP {REVIEWS} AdmissionReviews answered, by outcome, reason code and the pod's "
        "namespace\n"
    ) in text
    assert "# HELP sakura_secrets_admission_seconds Time to answer an AdmissionReview\n" in text


def test_made_up_namespaces_cannot_grow_the_series_without_bound() -> None:
    registry = CollectorRegistry()
    metrics = AdmissionMetrics(registry)
    for n in range(1010):
        metrics.observe(Skipped("u", "why", pod=PodRef(f"fake-{n}")), 0.001)
    metrics.observe(Skipped("u", "why", pod=PodRef("Not.A_Namespace")), 0.001)
    metrics.failed("x" * 64, 0.001)
    found = counted(registry)
    assert len(found) == 1002
    assert found[("skipped", "not-opted-in", OTHER)] == 11
    assert found[("error", "internal", OTHER)] == 1


def test_the_queue_depth_is_read_when_scraped() -> None:
    registry = CollectorRegistry()
    depth = [3]
    AdmissionMetrics(registry, waiting=lambda: depth[0])
    gauge = "sakura_secrets_admission_queue_waiting"
    assert registry.get_sample_value(gauge) == 3
    depth[0] = 0
    assert registry.get_sample_value(gauge) == 0
    text = generate_latest(registry).decode()
    assert f"# HELP {gauge} AdmissionReviews waiting for the admission thread\n" in text
    assert registry.get_sample_value(gauge) is not None
    assert CollectorRegistry().get_sample_value(gauge) is None


def test_without_a_queue_there_is_no_depth() -> None:
    registry = CollectorRegistry()
    AdmissionMetrics(registry)
    assert "queue_waiting" not in generate_latest(registry).decode()


def test_the_latency_buckets_reach_past_the_webhooks_timeout() -> None:
    registry = CollectorRegistry()
    AdmissionMetrics(registry).malformed(0.0)
    bounds = [
        s.labels["le"]
        for m in registry.collect()
        for s in m.samples
        if s.name == "sakura_secrets_admission_seconds_bucket"
    ]
    assert bounds == [
        *("0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5"),
        *("1.0", "2.5", "5.0", "10.0", "+Inf"),
    ]


def test_a_malformed_body_has_no_namespace() -> None:
    registry = CollectorRegistry()
    AdmissionMetrics(registry).malformed(0.0)
    [(labels, value)] = [
        (s.labels, s.value) for m in registry.collect() for s in m.samples if s.name == REVIEWS
    ]
    assert (labels, value) == ({"outcome": "malformed", "reason": "malformed", "namespace": ""}, 1)


def test_the_ready_gauge_is_named_and_explained_and_starts_at_0() -> None:
    registry = CollectorRegistry()
    gauge = readiness_gauge(registry)
    assert registry.get_sample_value("sakura_secrets_ready") == 0
    gauge.set(1)
    assert registry.get_sample_value("sakura_secrets_ready") == 1
    assert (
        "# HELP sakura_secrets_ready 1 when the last readiness check (/readyz) passed, 0 when it "
        "failed or none has run\n"
    ) in generate_latest(registry).decode()


async def test_metrics_are_served_as_prometheus_text_on_get_only() -> None:
    registry = CollectorRegistry()
    AdmissionMetrics(registry).malformed(0.0)
    app = Starlette(routes=[metrics_route(registry)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probes") as client:
        scrape = await client.get("/metrics")
        posted = await client.post("/metrics")
        other = await client.get("/METRICS")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"] == CONTENT_TYPE_LATEST
    assert scrape.content == generate_latest(registry)
    assert f'{REVIEWS}{{namespace="",outcome="malformed",reason="malformed"}} 1.0' in scrape.text
    assert (posted.status_code, other.status_code) == (405, 404)
