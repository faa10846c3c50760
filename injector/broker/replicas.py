"""Each replica's share of the account's Sakura budget.

Sakura's quota belongs to the API key's account, not to a process: `--sakura-rate-per-minute`
is the budget of the whole installation, and each replica paces itself at that budget divided
by the number of ready replicas, which it reads from its Service's EndpointSlices (or, where
the cluster has none, its v1 Endpoints) now and then. A failed read keeps the last known count;
the count is never below 1.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from sakura import RateLimiter

REFRESH_EVERY = 30.0
"""Seconds between two reads of the Endpoints."""
READ_TIMEOUT = 5.0
SLICE_VERSION = "v1"
"""discovery.k8s.io version of the EndpointSlices read: GA in 1.21; v1 Endpoints, read where
it is not served, are deprecated from 1.33."""
SERVICE_LABEL = "kubernetes.io/service-name"
MAX_SLICES = 100
"""Slices read at most: one per 100 pods and port set; the injector has a few replicas."""

log = logging.getLogger(__name__)


class ReadyReplicas(Protocol):
    def count(self) -> int:
        """How many replicas are ready now; blocks; raises when it cannot tell."""
        ...


class EndpointsReplicas:
    """The ready pods behind the injector's Service, each counted once.

    Read from the Service's EndpointSlices (discovery.k8s.io/`slice_version`, selected by the
    `kubernetes.io/service-name` label) where the cluster serves them; a 404 for that version
    means it does not (Kubernetes before 1.21), and the v1 Endpoints are read instead. Asked
    each time, so an upgraded API server is followed without a restart.
    """

    def __init__(
        self,
        api: k8s.ApiClient,
        namespace: str,
        service: str,
        *,
        timeout: float = READ_TIMEOUT,
        slice_version: str = SLICE_VERSION,
    ) -> None:
        self.namespace = namespace
        self.service = service
        self.timeout = timeout
        self.slice_version = slice_version
        self._api = api
        self._core = k8s.CoreV1Api(api)

    def __str__(self) -> str:
        return f"the EndpointSlices (or Endpoints) of Service {self.namespace}/{self.service}"

    def count(self) -> int:
        try:
            slices = self._slices()
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._from_endpoints()
        return _ready_in_slices(slices)

    def _slices(self) -> list[dict[str, Any]]:
        """The Service's slices as plain JSON: one code path for any served version."""
        method, url, headers, _, _ = self._api.param_serialize(
            method="GET",
            resource_path=(
                f"/apis/discovery.k8s.io/{self.slice_version}/namespaces/{self.namespace}"
                "/endpointslices"
            ),
            query_params=[
                ("labelSelector", f"{SERVICE_LABEL}={self.service}"),
                ("limit", MAX_SLICES),
            ],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(
            method, url, header_params=headers, _request_timeout=self.timeout
        )
        response.read()  # type: ignore[no-untyped-call]  # loads the body for deserializing
        answer: Any = self._api.response_deserialize(response, {"200": "object"}).data
        items: list[dict[str, Any]] = answer.get("items") or []
        return items

    def _from_endpoints(self) -> int:
        endpoints = self._core.read_namespaced_endpoints(
            self.service, self.namespace, _request_timeout=self.timeout
        )
        ready = set()
        for subset in endpoints.subsets or []:
            for address in subset.addresses or []:
                ref = address.target_ref
                ready.add(ref.uid if ref is not None and ref.uid else address.ip)
        return len(ready)


def _ready_in_slices(slices: list[dict[str, Any]]) -> int:
    """Ready endpoints over all slices, a pod once (each port set has slices of its own).

    A missing `ready` condition means ready, as the EndpointSlice API says consumers should
    read it; a terminating pod is not ready.
    """
    ready = set()
    for item in slices:
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            ref = endpoint.get("targetRef") or {}
            ready.add(ref.get("uid") or tuple(endpoint.get("addresses") or ()))
    return len(ready)


class BudgetShare:
    """Sets the limiter to the installation's budget divided by the ready replicas."""

    def __init__(
        self,
        limiter: RateLimiter,
        source: ReadyReplicas,
        *,
        per_minute: float,
        burst: int,
        every: float = REFRESH_EVERY,
    ) -> None:
        self.limiter = limiter
        self.source = source
        self.per_minute = per_minute
        self.burst = burst
        self.every = every
        self.replicas = 1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.apply(1)

    def apply(self, replicas: int) -> None:
        """This replica's share when `replicas` are ready (never fewer than 1)."""
        self.replicas = max(1, replicas)
        self.limiter.set_rate(self.per_minute / self.replicas, max(1, self.burst // self.replicas))

    def refresh(self) -> int:
        """Read the count once (blocking, bounded); on failure keep the last known one."""
        try:
            count = self.source.count()
        except Exception as exc:  # any failure: keep pacing by the last count
            if not self._failing:
                log.warning(
                    "cannot count the ready injector replicas from %s (%s); pacing Sakura "
                    "calls at 1/%d of --sakura-rate-per-minute until it can",
                    self.source,
                    type(exc).__name__,
                    self.replicas,
                )
            self._failing = True
            return self.replicas
        self._failing = False
        if max(1, count) != self.replicas:
            log.info(
                "%d ready injector replicas: this one paces Sakura calls at %.3g/min",
                max(1, count),
                self.per_minute / max(1, count),
            )
        self.apply(count)
        return self.replicas

    def start(self) -> None:
        """Refresh now and every `every` seconds on a thread of its own (off the event loop)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="budget-share", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.every)
