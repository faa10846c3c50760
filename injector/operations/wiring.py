"""Building the injector's parts from settings, once per process: the broker (one Sakura
client, limiter and cache, one pool of Kubernetes API calls the token and access reviewers
share), and the three listeners `serve` runs (webhook, broker, probes).

Flags are the commands' business (`injector.operations.commands`): everything here takes
settings already checked, so tests and benchmarks build the same parts without a command line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client as k8s
from prometheus_client import REGISTRY, CollectorRegistry
from starlette.routing import Route

from injector.broker.access import AccessReviewer
from injector.broker.admission_check import BrokerAdmissionCheck
from injector.broker.cache import SecretCache
from injector.broker.credentials import CredentialWatch
from injector.broker.inventory import VaultInventory
from injector.broker.metrics import BrokerAnswers, BudgetGauges, CountedReader
from injector.broker.replicas import BudgetShare, EndpointsReplicas
from injector.broker.service import Broker
from injector.broker.tokens import TokenReviewer
from injector.broker.tuning import BrokerTuning
from injector.event_recorder import EventRecorder, EventsLost
from injector.kube import kubernetes_calls
from injector.operations.cert_expiry import CertificateExpiry
from injector.operations.key_in_use import KeyInUse, describe
from injector.serving.app import BrokerCaFile, Readiness, create_apps
from injector.serving.broker_routes import broker_routes
from injector.serving.server import Drain, Listener, Shutdown
from injector.serving.tls import ReloadingTLS
from injector.webhook.settings import WebhookSettings
from sakura import RateLimiter, SakuraClient, SakuraConfig
from sakura.credentials import CredentialSource


@dataclass
class BrokerParts:
    """What `serve` mounts; `aclose` at shutdown releases the Sakura connections."""

    broker: Broker
    check: BrokerAdmissionCheck
    access: AccessReviewer
    sakura: SakuraClient
    routes: list[Route]
    share: BudgetShare | None = None
    credentials: CredentialWatch | None = None
    """Remembers whether Sakura rejected the key; its readiness goes into /readyz."""
    events: EventRecorder | None = None
    """Records the Events of the webhook's denials and the broker's refusals."""

    async def aclose(self) -> None:
        if self.share is not None:
            self.share.stop()
        if self.events is not None:
            await self.events.aclose()
        await self.sakura.aclose()


def build_broker(
    sakura_config: SakuraConfig,
    *,
    kube_api_client: k8s.ApiClient,
    tuning: BrokerTuning | None = None,
    registry: CollectorRegistry | None = None,
    sakura_verify: bool | str = True,
    cache_clock: Callable[[], float] = time.monotonic,
    credentials: CredentialSource | None = None,
) -> BrokerParts:
    """One Sakura client, limiter, cache and reviewers shared by the broker and admission.

    `registry` None registers the metrics in prometheus_client's default registry.
    `cache_clock` is what the secret cache measures its lifetimes with (a test's hand clock).
    `credentials` (e.g. the mounted Secret's files) replaces `sakura_config`'s fixed key.
    """
    t = tuning if tuning is not None else BrokerTuning()
    limiter = RateLimiter(t.rate_per_minute, t.rate_burst, max_waiting=t.waiting_per_namespace)
    share = None
    if t.replicas_of is not None:
        source = EndpointsReplicas(kube_api_client, *t.replicas_of, timeout=t.kube_timeout)
        share = BudgetShare(limiter, source, per_minute=t.rate_per_minute, burst=t.rate_burst)
        share.start()
    sakura = SakuraClient(
        sakura_config,
        credentials=credentials,
        limiter=limiter,
        deadline=t.sakura_deadline,
        timeout=t.sakura_timeout,
        max_retries=t.sakura_retries,
        verify=sakura_verify,
    )
    calls = kubernetes_calls()
    access = AccessReviewer(
        kube_api_client,
        allow_ttl=t.allow_ttl,
        deny_ttl=t.deny_ttl,
        request_timeout=t.kube_timeout,
        calls=calls,
    )
    tokens = TokenReviewer(
        kube_api_client,
        review_ttl=t.review_ttl,
        reject_ttl=t.reject_ttl,
        pod_ttl=t.pod_ttl,
        request_timeout=t.kube_timeout,
        calls=calls,
    )
    metrics = REGISTRY if registry is None else registry
    metrics.register(BudgetGauges(limiter))
    counted = CountedReader(sakura, metrics)
    sakura.on_exchange = counted.exchanged  # a service principal's token exchanges count too
    watched = CredentialWatch(counted, credentials=sakura.credentials)
    inventory = VaultInventory(
        watched, ttl=t.listing_ttl, negative_ttl=t.negative_ttl, clock=cache_clock
    )
    cache = SecretCache(
        watched, settings=t.cache, registry=registry, inventory=inventory, clock=cache_clock
    )
    events = EventRecorder.for_cluster(kube_api_client)
    metrics.register(EventsLost(events))
    broker = Broker(tokens, access, cache, events, BrokerAnswers(metrics))
    check = BrokerAdmissionCheck(access, inventory, timeout=t.admission_timeout)
    routes = broker_routes(broker)
    return BrokerParts(broker, check, access, sakura, routes, share, watched, events)


@dataclass(frozen=True)
class Ports:
    """Where `serve` listens: the webhook's TLS port, the broker's, the plain probe port."""

    webhook: int
    broker: int
    probes: int


@dataclass(frozen=True)
class TlsFiles:
    """The serving pair (both TLS ports), the CA the webhook port requires client
    certificates of (never the broker's), and the CA bundle pods are given."""

    cert: Path
    key: Path
    webhook_client_ca: Path | None = None
    broker_ca: Path | None = None


def build_listeners(
    settings: WebhookSettings,
    broker: BrokerParts,
    files: TlsFiles,
    ports: Ports,
    *,
    registry: CollectorRegistry = REGISTRY,
    native_sidecars: Callable[[], bool] | None = None,
    env_files: Callable[[], bool] | None = None,
    drain: Drain | None = None,
) -> tuple[list[Listener], Sequence[Shutdown]]:
    """The production listeners and what to close at shutdown.

    The broker's real admission check goes to the webhook: there is no `serve` without the
    admission-time RBAC checks. The certificate-expiry gauge joins `registry`: once per
    process. `native_sidecars` (`--native-sidecars=auto`) decides the refresh container's
    shape on each review instead of `settings`, `env_files` (`--env-files=auto`) whether pods
    may get variables. `drain` makes /readyz fail from the first
    signal on (`--shutdown-delay`).
    """
    webhook_tls = ReloadingTLS(files.cert, files.key, client_ca_file=files.webhook_client_ca)
    broker_tls = ReloadingTLS(files.cert, files.key)
    broker_ca = BrokerCaFile(files.broker_ca) if files.broker_ca is not None else None
    readiness: list[Readiness] = [broker_tls.readiness]
    if files.webhook_client_ca is not None:
        readiness.append(webhook_tls.readiness)  # names the client CA file if it is unreadable
    if broker_ca is not None:
        readiness.append(broker_ca.readiness)
    if broker.credentials is not None:
        readiness.append(broker.credentials.readiness)
    if drain is not None:
        readiness.append(drain.readiness)
    registry.register(CertificateExpiry(broker_tls, broker_ca))
    registry.register(KeyInUse(broker.sakura.credentials, broker.sakura.authorizer))
    apps = create_apps(
        settings,
        check=broker.check,
        routes=broker.routes,
        readiness=readiness,
        broker_ca=broker_ca,
        native_sidecars=native_sidecars,
        env_files=env_files,
        registry=registry,
        events=broker.events,
        about=lambda: {"sakura": describe(broker.sakura.credentials, broker.sakura.authorizer)},
    )
    listeners = [
        Listener("webhook", apps.webhook, webhook_tls, ports.webhook),
        Listener("broker", apps.broker, broker_tls, ports.broker),
        Listener("probes", apps.probes, None, ports.probes),
    ]
    return listeners, (broker.aclose,)
