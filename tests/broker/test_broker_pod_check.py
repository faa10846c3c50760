"""The bound pod's check against the real API server: no pod read after a fresh review, and
still a deleted pod's token refused within `pod_ttl` of its review.

A fresh TokenReview stands for a pod read (the API server checks the bound pod exists with
that uid before it accepts the token); only a remembered review needs the broker's own read.
The pod reads are counted by wrapping the real CoreV1Api; time is a hand clock, so the
test waits for nothing but the API server.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s
from support.broker_world import World
from support.clock import HandClock

from injector.broker.errors import TokenRejected
from injector.broker.tokens import TokenReviewer

pytestmark = pytest.mark.cluster


class CountedPods:
    """The real pod reads, counted."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.core = k8s.CoreV1Api(api)
        self.reads = 0

    def read_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> k8s.V1Pod:
        self.reads += 1
        return self.core.read_namespaced_pod(name, namespace, **kwargs)


async def test_a_fresh_review_costs_no_pod_read_and_a_deleted_pod_is_refused_in_pod_ttl(
    world: World,
) -> None:
    world.pod(world.ns_a, "checked", "app")
    token = world.token(world.ns_a, "checked")
    clock, pods = HandClock(), CountedPods(world.api)
    tokens = TokenReviewer(world.api, clock=clock, pods=pods)
    identity = await tokens.verify(token)
    assert (identity.pod_name, identity.service_account) == ("checked", "app")
    assert pods.reads == 0  # the API server checked the pod for the review
    world.delete_pod(world.ns_a, "checked")
    clock.now += tokens.pod_ttl  # the documented bound, counted from the review
    with pytest.raises(TokenRejected, match="no longer exists"):
        await tokens.verify(token)  # the review is remembered (300 s); the pod read is not
    assert pods.reads == 1
