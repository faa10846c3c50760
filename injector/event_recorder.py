"""The I/O shell of the injector's Events: a bounded queue in front of `EventBook`, and a
background task that makes the book's writes through the events.k8s.io/v1 API.

`record` never blocks and never raises: an admission or a broker answer hands its
occurrence over and goes on. A full queue drops the occurrence (counted in `dropped`). The
task starts with the first occurrence, on the loop that recorded it, and writes in a worker
thread (the Kubernetes client is synchronous). When the API server refuses the writes (no
RBAC, an old cluster, an outage) the injector logs it once and carries on without Events.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from contract.annotations import PREFIX
from injector.events import Create, EventBook, Occurrence, Write
from injector.kube import KUBE_TIMEOUT

CONTROLLER = PREFIX + "injector"
"""`reportingController` of every Event the injector writes (what `kubectl get events -o
wide` shows as its source)."""
QUEUE_SIZE = 1024
TICK = 1.0
"""Seconds between two turns of the writer: the book decides what each turn writes."""

log = logging.getLogger(__name__)


class EventsApi(Protocol):
    """The two calls the recorder makes (k8s.EventsV1Api has them)."""

    def create_namespaced_event(self, namespace: str, body: Any, **kwargs: Any) -> Any: ...

    def patch_namespaced_event(
        self, name: str, namespace: str, body: Any, **kwargs: Any
    ) -> Any: ...


class EventsLost(Collector):
    """`sakura_secrets_events_lost_total{why}`, read at scrape: Events the recorder did not
    write (`queue_full`, `book_full`: the bounds against floods; `write_failed`: the API
    server refused or did not answer), so an operator can tell silence from health."""

    def __init__(self, recorder: EventRecorder) -> None:
        self.recorder = recorder

    def collect(self) -> Iterator[CounterMetricFamily]:
        lost = CounterMetricFamily(
            "sakura_secrets_events_lost",
            "Kubernetes Events not written, by why: queue_full, book_full, write_failed",
            labels=["why"],
        )
        lost.add_metric(["queue_full"], self.recorder.dropped)
        lost.add_metric(["book_full"], self.recorder.book.dropped)
        lost.add_metric(["write_failed"], self.recorder.failed_writes)
        yield lost


class EventRecorder:
    """Takes occurrences from the handlers and writes them as Events, bounded by `book`."""

    def __init__(
        self,
        api: EventsApi,
        *,
        book: EventBook | None = None,
        instance: str | None = None,
        queue_size: int = QUEUE_SIZE,
        tick: float = TICK,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.api = api
        self.book = book if book is not None else EventBook()
        self.instance = (instance or socket.gethostname())[:128]
        self.dropped = 0
        """Occurrences dropped because the queue was full."""
        self.failed_writes = 0
        """Writes the API server refused or did not answer (not counting expired Events)."""
        self._queue: deque[tuple[Occurrence, float]] = deque()
        self._queue_size = queue_size
        self._tick = tick
        self._clock = clock
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @classmethod
    def for_cluster(cls, api_client: k8s.ApiClient, **kwargs: Any) -> EventRecorder:
        api: Any = k8s.EventsV1Api(api_client)  # its calls take more keywords than EventsApi
        return cls(api, **kwargs)

    def record(self, occurrence: Occurrence) -> None:
        """Queue one occurrence, at once; dropped (and counted) when the queue is full."""
        if len(self._queue) >= self._queue_size:
            self.dropped += 1
            return
        self._queue.append((occurrence, self._clock()))
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._run())
            except RuntimeError:  # no loop (a synchronous caller): the next turn writes it
                pass

    async def flush(self) -> None:
        """One turn: the queued occurrences into the book, and the writes it says are due."""
        while self._queue:
            occurrence, seen = self._queue.popleft()
            self.book.observe(occurrence, seen)
        for write in self.book.due(self._clock()):
            await asyncio.to_thread(self._write, write)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        """A turn every tick, the first one tick after the occurrence that started the task
        (a burst of them becomes one write), until nothing is left to write."""
        while True:
            await self._sleep(self._tick)
            await self.flush()
            if not self._queue and not self.book.pending():
                return  # started again by the next occurrence

    def _write(self, write: Write) -> None:
        try:
            if isinstance(write, Create):
                namespace = write.occurrence.regarding.namespace
                self.api.create_namespaced_event(
                    namespace, self._body(write), _request_timeout=KUBE_TIMEOUT
                )
            else:
                self.api.patch_namespaced_event(
                    write.name,
                    write.namespace,
                    {"series": _series(write.count, write.last)},
                    _request_timeout=KUBE_TIMEOUT,
                    _content_type="application/merge-patch+json",
                )
        except Exception as error:
            gone = isinstance(error, ApiException) and error.status == 404
            self.book.failed(write, gone=gone)
            self.failed_writes += 0 if gone else 1
            if not self._failing and not gone:
                self._failing = True
                log.warning(
                    "cannot write Kubernetes Events (%s); carrying on without them "
                    "(the injector needs create and patch on events.k8s.io events)",
                    _why(error),
                )
            return
        if self._failing:
            self._failing = False
            log.info("writing Kubernetes Events again")

    def _body(self, write: Create) -> dict[str, Any]:
        occurrence = write.occurrence
        regarding = occurrence.regarding
        body: dict[str, Any] = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": write.name, "namespace": regarding.namespace},
            "eventTime": micro_time(write.first),
            "reportingController": CONTROLLER,
            "reportingInstance": self.instance,
            "action": occurrence.action,
            "reason": occurrence.reason,
            "note": occurrence.note,
            "type": occurrence.type,
            "regarding": {
                "apiVersion": regarding.api_version,
                "kind": regarding.kind,
                "namespace": regarding.namespace,
                "name": regarding.name,
                **({"uid": regarding.uid} if regarding.uid else {}),
            },
        }
        if write.count > 1:
            body["series"] = _series(write.count, write.last)
        return body


def micro_time(seconds: float) -> datetime:
    """A UTC time the API server reads as a MicroTime: it needs the six fraction digits,
    which Python's isoformat leaves out when they are all zero."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment if moment.microsecond else moment.replace(microsecond=1)


def _series(count: int, last: float) -> dict[str, Any]:
    return {"count": count, "lastObservedTime": micro_time(last)}


def _why(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    return type(error).__name__
