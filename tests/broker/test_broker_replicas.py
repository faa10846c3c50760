"""Each replica's share of the installation's Sakura budget.

The division is driven by hand through a fake count of ready replicas; the count itself is
read from a real API server's Endpoints (a selector-less Service with hand-written Endpoints).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from injector.broker.replicas import BudgetShare, EndpointsReplicas
from sakura import RateLimiter


class FakeReplicas:
    """Answers what the test sets; raises when told to, like an API server that is away."""

    def __init__(self) -> None:
        self.ready: int | Exception = 1

    def count(self) -> int:
        if isinstance(self.ready, Exception):
            raise self.ready
        return self.ready


def test_each_replica_paces_itself_at_its_share_of_the_budget() -> None:
    limiter = RateLimiter(90, 5)
    source = FakeReplicas()
    share = BudgetShare(limiter, source, per_minute=90, burst=5)
    assert (limiter.per_minute, limiter.burst) == (90, 5)
    source.ready = 2
    assert share.refresh() == 2
    assert (limiter.per_minute, limiter.burst) == (45, 2)  # two replicas: 90 + 10 at most
    source.ready = 3
    share.refresh()
    assert (limiter.per_minute, limiter.burst) == (30, 1)


def test_a_failed_read_keeps_the_last_count_and_the_count_is_never_below_one() -> None:
    limiter = RateLimiter(90, 5)
    source = FakeReplicas()
    share = BudgetShare(limiter, source, per_minute=90, burst=5)
    source.ready = 3
    share.refresh()
    source.ready = TimeoutError("the API server did not answer")
    assert share.refresh() == 3
    assert limiter.per_minute == 30
    source.ready = 0  # no replica ready (this one is starting): it still may call Sakura
    assert share.refresh() == 1
    assert (limiter.per_minute, limiter.burst) == (90, 5)


@pytest.fixture
def service(kube: k8s.ApiClient) -> Iterator[tuple[str, str]]:
    core = k8s.CoreV1Api(kube)
    namespace = f"replicas-{uuid.uuid4().hex[:6]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    try:
        core.create_namespaced_service(
            namespace,
            k8s.V1Service(
                metadata=k8s.V1ObjectMeta(name="injector"),
                spec=k8s.V1ServiceSpec(ports=[k8s.V1ServicePort(port=443)]),
            ),
        )
        yield namespace, "injector"
    finally:
        with contextlib.suppress(ApiException):
            core.delete_namespace(namespace)


def test_ready_replicas_are_read_from_the_services_endpoints(
    kube: k8s.ApiClient, service: tuple[str, str]
) -> None:
    namespace, name = service
    source = EndpointsReplicas(kube, namespace, name)
    with pytest.raises(ApiException):
        source.count()  # no Endpoints yet: BudgetShare keeps its last count
    address = k8s.V1EndpointAddress
    k8s.CoreV1Api(kube).create_namespaced_endpoints(
        namespace,
        k8s.V1Endpoints(
            metadata=k8s.V1ObjectMeta(name=name),
            subsets=[
                k8s.V1EndpointSubset(
                    addresses=[address(ip="10.0.0.1"), address(ip="10.0.0.2")],
                    not_ready_addresses=[address(ip="10.0.0.3")],
                    ports=[k8s.CoreV1EndpointPort(port=8443, name="webhook")],
                ),
                k8s.V1EndpointSubset(  # a second port: the same pods count once
                    addresses=[address(ip="10.0.0.1"), address(ip="10.0.0.2")],
                    ports=[k8s.CoreV1EndpointPort(port=9443, name="broker")],
                ),
            ],
        ),
    )
    assert source.count() == 2
    limiter = RateLimiter(90, 5)
    BudgetShare(limiter, source, per_minute=90, burst=5).refresh()
    assert limiter.per_minute == 45
