"""The injector's HTTP applications: the webhook's port, the broker's port and the probe port.

Three plain Starlette objects built from explicit parts, so tests construct them directly. The
webhook port serves only `POST /mutate`, so it can require the API server's client
certificate; the broker port serves the broker's routes; the probe port (plain HTTP) serves
what the kubelet and Prometheus call (`/healthz`, `/readyz`, `/metrics`), out of the clients'
way. The broker port answers those three too, for scrapers and scripts written before the
probe port existed (docs/webhook.md, "Ports and endpoints").

The admission handler is a thin shell around `injector.serving.review_queue.review`: it reads
a bounded body, maps a malformed review to 400, and never answers 500 (an unexpected failure
becomes a denial that carries the request's uid and points at the injector's log). Metrics
and the log read the review's typed decision; `admission_review` turns it into the answer.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from injector.event_recorder import EventRecorder
from injector.reread import RereadFiles
from injector.serving.admission_log import denial_event, log_decision, log_failure, log_malformed
from injector.serving.admission_review import admission_review, internal_failure
from injector.serving.bodies import read_capped
from injector.serving.errors import BodyTooLarge
from injector.serving.metrics import AdmissionMetrics, metrics_route, readiness_gauge
from injector.serving.review_queue import QUEUE, claim, review
from injector.webhook.checks import AdmissionCheck
from injector.webhook.decision import Refused
from injector.webhook.errors import MalformedReview
from injector.webhook.settings import WebhookSettings

MAX_REVIEW_BYTES = 3 * 1024 * 1024
"""An AdmissionReview of a pod; etcd caps an object at 1.5 MiB, so this leaves room."""

Readiness = Callable[[], str | Awaitable[str | None] | None]
"""A readiness check: returns None when ready, else a one-line reason."""


@dataclass(frozen=True)
class InjectorApps:
    """What each port serves (`injector.serving.server.Listener` puts them on their ports)."""

    webhook: Starlette
    """`POST /mutate` and nothing else."""
    broker: Starlette
    """The broker's routes, and the probes' routes as well (compatibility)."""
    probes: Starlette
    """`GET /healthz`, `GET /readyz`, `GET /metrics`: the probe port's, plain HTTP."""


class BrokerCaFile:
    """The broker CA bundle from a file, re-read when the file changes (CA rotation)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = RereadFiles([path], _ascii_text, what=f"broker CA file {path}")

    def pem(self) -> str:
        """The bundle as it is on disk now (the last readable version if it vanished);
        ValueError while it has never been read."""
        return self._file.current()

    def readiness(self) -> str | None:
        """None once the bundle has been read, else why not (for /readyz)."""
        try:
            pem = self.pem()
        except ValueError as error:
            return str(error)
        return None if pem.strip() else f"broker CA file {self.path} is empty"


def _ascii_text(contents: Sequence[bytes]) -> str:
    return contents[0].decode("ascii")


def create_apps(
    settings: WebhookSettings,
    *,
    check: AdmissionCheck,
    routes: Sequence[BaseRoute] = (),
    readiness: Sequence[Readiness] = (),
    broker_ca: BrokerCaFile | None = None,
    native_sidecars: Callable[[], bool] | None = None,
    env_files: Callable[[], bool] | None = None,
    max_body_bytes: int = MAX_REVIEW_BYTES,
    registry: CollectorRegistry | None = None,
    events: EventRecorder | None = None,
    about: Callable[[], Mapping[str, object]] | None = None,
) -> InjectorApps:
    """The webhook's app (`POST /mutate`), the broker's (`routes`) and the probes' (health,
    readiness, metrics; the broker's app answers them too).

    `registry` holds the admission metrics and is what `/metrics` serves; `serve` passes the
    process-wide registry, where the broker's cache metrics live too. Without one the app gets
    a private registry, so several apps can live in one process (tests, the demo).

    `broker_ca`, when given, replaces `settings.broker_ca_pem` with the file's current
    content on each review, so pods admitted after a CA rotation trust the new CA;
    `native_sidecars`, when given, replaces `settings.native_sidecars` with its current
    answer (`--native-sidecars=auto`, read from the API server's version), and `env_files`
    `settings.env_files` likewise (`--env-files=auto`). `events`, when
    given, records an Event for each denial (`injector.serving.admission_log`). `about`, when
    given, adds its fields to every /readyz answer (the Sakura credentials in use, for `doctor`;
    never a secret).
    """

    registry = CollectorRegistry() if registry is None else registry
    metrics = AdmissionMetrics(registry, waiting=QUEUE.waiting)
    ready_gauge = readiness_gauge(registry)
    built = [settings]  # the settings of the last review: rebuilt only when an input changed

    def current_settings() -> WebhookSettings:
        last = built[-1]
        pem = last.broker_ca_pem if broker_ca is None else broker_ca.pem()
        native = last.native_sidecars if native_sidecars is None else native_sidecars()
        env = last.env_files if env_files is None else env_files()
        if (pem, native, env) != (last.broker_ca_pem, last.native_sidecars, last.env_files):
            built[-1] = dataclasses.replace(
                last, broker_ca_pem=pem, native_sidecars=native, env_files=env
            )
        return built[-1]

    async def mutate(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await read_capped(request, max_body_bytes)
        except BodyTooLarge:
            metrics.malformed(time.perf_counter() - started)
            log_malformed(413, "body too large", time.perf_counter() - started)
            return _error(413, f"AdmissionReview larger than {max_body_bytes} bytes")
        except ClientDisconnect:
            metrics.malformed(time.perf_counter() - started)
            log_malformed(400, "client disconnected", time.perf_counter() - started)
            return _error(400, "client disconnected before sending the whole body")
        try:
            caller = request.client.host if request.client is not None else ""
            decision = await review(body, settings=current_settings(), check=check, caller=caller)
        except MalformedReview as error:
            log_malformed(400, str(error), time.perf_counter() - started)
            metrics.malformed(time.perf_counter() - started)
            return _error(400, str(error))
        except Exception:
            failure = internal_failure(*_claimed(body))
            log_failure(failure.uid, failure.pod.namespace, time.perf_counter() - started)
            metrics.failed(failure.pod.namespace, time.perf_counter() - started)
            return _answer(admission_review(failure))
        seconds = time.perf_counter() - started
        metrics.observe(decision, seconds)
        log_decision(decision, seconds)
        if events is not None and isinstance(decision, Refused):
            occurrence = denial_event(decision)
            if occurrence is not None:
                events.record(occurrence)
        return _answer(admission_review(decision))

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        problems = []
        for ready in readiness:
            try:
                outcome = ready()
                reason = await outcome if inspect.isawaitable(outcome) else outcome
            except Exception as error:
                reason = f"readiness check failed: {type(error).__name__}: {error}"
            if reason is not None:
                problems.append(reason)
        ready_gauge.set(0 if problems else 1)
        extra = dict(about()) if about is not None else {}
        if problems:
            body = {"status": "not ready", "reasons": problems, **extra}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", **extra})

    webhook = Starlette(routes=[Route("/mutate", mutate, methods=["POST"])])
    probe_routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        metrics_route(registry),
    ]
    broker = Starlette(routes=[*probe_routes, *routes])
    return InjectorApps(webhook=webhook, broker=broker, probes=Starlette(routes=probe_routes))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _claimed(body: bytes) -> tuple[str, str]:
    """The uid and namespace of a review the core could parse but not finish, for its denial.

    The one the body claims (a few searches of its head), not a second parse of a body of up
    to 3 MiB on the event loop."""
    try:
        claimed = claim(body)
    except MalformedReview:
        return "", ""
    return claimed.uid, claimed.namespace


def _answer(review: dict[str, Any]) -> Response:
    return Response(orjson.dumps(review), media_type="application/json")
