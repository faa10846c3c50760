"""Each replica's share of the installation's Sakura budget.

The division is driven by hand through a fake count of ready replicas; the count itself is
read from a real API server's EndpointSlices or Endpoints (a selector-less Service with
hand-written ones). The local cluster (1.20) serves EndpointSlices as discovery.k8s.io/v1beta1
only, whose fields the count reads are v1's: the slice tests read the version it serves.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from injector.broker.replicas import SERVICE_LABEL, BudgetShare, EndpointsReplicas
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


def _slice_versions(kube: k8s.ApiClient) -> set[str]:
    groups = k8s.ApisApi(kube).get_api_versions().groups
    return {v.version for g in groups if g.name == "discovery.k8s.io" for v in g.versions}


def _create_slice(kube: k8s.ApiClient, namespace: str, version: str, body: dict[str, Any]) -> None:
    method, url, headers, payload, _ = kube.param_serialize(
        method="POST",
        resource_path=f"/apis/discovery.k8s.io/{version}/namespaces/{namespace}/endpointslices",
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body={"apiVersion": f"discovery.k8s.io/{version}", "kind": "EndpointSlice", **body},
        auth_settings=["BearerToken"],
    )
    response = kube.call_api(method, url, header_params=headers, body=payload)
    response.read()
    assert response.status == 201, response.data


def _endpoint(ip: str, pod: str | None, ready: bool | None) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"addresses": [ip]}
    if pod is not None:
        endpoint["targetRef"] = {"kind": "Pod", "name": pod, "uid": f"uid-{pod}"}
    if ready is not None:
        endpoint["conditions"] = {"ready": ready}
    return endpoint


@pytest.mark.cluster
def test_ready_replicas_are_read_from_the_services_endpointslices(
    kube: k8s.ApiClient, service: tuple[str, str]
) -> None:
    namespace, name = service
    versions = _slice_versions(kube)
    version = "v1" if "v1" in versions else "v1beta1"
    assert version in versions, f"the cluster serves no EndpointSlices: {versions}"
    source = EndpointsReplicas(kube, namespace, name, slice_version=version)
    assert source.count() == 0  # no slice yet: none ready (BudgetShare then counts 1)
    webhook = [
        _endpoint("10.0.0.1", "a", True),
        _endpoint("10.0.0.2", "b", None),  # no condition: ready, as the API says
        _endpoint("10.0.0.3", "c", False),  # not ready (or terminating)
        _endpoint("10.0.0.4", None, True),  # no pod: counted by its address
    ]
    broker = [_endpoint("10.0.0.1", "a", True), _endpoint("10.0.0.2", "b", True)]
    for suffix, endpoints, port in (("w", webhook, 8443), ("b", broker, 9443)):
        _create_slice(
            kube,
            namespace,
            version,
            {
                "metadata": {"name": f"{name}-{suffix}", "labels": {SERVICE_LABEL: name}},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"name": f"p{port}", "port": port, "protocol": "TCP"}],
            },
        )
    _create_slice(  # another Service's slice: not counted
        kube,
        namespace,
        version,
        {
            "metadata": {"name": "other", "labels": {SERVICE_LABEL: "other"}},
            "addressType": "IPv4",
            "endpoints": [_endpoint("10.0.0.9", "z", True)],
        },
    )
    assert source.count() == 3  # a, b and 10.0.0.4; a and b once for both port sets
    limiter = RateLimiter(90, 5)
    BudgetShare(limiter, source, per_minute=90, burst=5).refresh()
    assert limiter.per_minute == 30


@pytest.mark.cluster
def test_ready_replicas_are_read_from_the_services_endpoints_without_endpointslices(
    kube: k8s.ApiClient, service: tuple[str, str]
) -> None:
    namespace, name = service
    # a version no cluster serves: the API server answers 404, as 1.20 does for v1
    source = EndpointsReplicas(kube, namespace, name, slice_version="v0")
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
    if "v1" not in _slice_versions(kube):  # this cluster (1.20): the default falls back too
        assert EndpointsReplicas(kube, namespace, name).count() == 2
