"""The broker's metrics: Sakura calls, the broker's answers by namespace, the budget's gauges.

- Every Sakura call is counted where all of them pass: `CountedReader` wraps the client, so
  the cache's unveils, the inventory's listings (the broker's and the admission check's) and
  the readiness rechecks are counted alike, by operation and outcome. A recheck is counted as
  `operation="recheck"` (it is a `list_vaults` made while the key is rejected).
- The broker's answers are counted by the asker's namespace, which is the TokenReview's (the
  API server's) word, never the request's; a request whose token is rejected has none ("").
- The budget's gauges are read from the rate limiter when Prometheus scrapes, not kept up to
  date on every call.

Labels are operations, outcomes and namespaces only (bounded: `injector.namespace_labels`):
never a vault ID, a secret's name or a value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from contract.broker import CREDENTIALS_REJECTED, Answer, Unchanged
from injector.broker.errors import (
    AccessDenied,
    BrokerError,
    CredentialsRejected,
    NamespaceCrowded,
    ReviewUnavailable,
    SecretAbsent,
    SecretsUnavailable,
    TokenRejected,
)
from injector.namespace_labels import NamespaceLabels
from sakura import (
    Crowded,
    NotFound,
    RateLimiter,
    SakuraError,
    SakuraReader,
    SecretInfo,
    Throttled,
    Unauthorized,
    Unveiled,
    VaultInfo,
)
from sakura.ratelimit import Tenant

T = TypeVar("T")

SAKURA_CALLS = "sakura_secrets_sakura_calls"
BROKER_ANSWERS = "sakura_secrets_broker_answers"
BUDGET_TOKENS = "sakura_secrets_sakura_budget_tokens"
BUDGET_RATE = "sakura_secrets_sakura_budget_per_minute"
WAITING = "sakura_secrets_sakura_waiting_calls"

OPERATIONS = ("list_vaults", "list_secrets", "unveil", "recheck", "token")
CALL_OUTCOMES = ("ok", "not_found", "throttled", "limited", "rejected", "failed")
REFUSALS: dict[type[BrokerError], str] = {
    TokenRejected: "token_rejected",
    AccessDenied: "access_denied",
    SecretAbsent: "secret_absent",
    ReviewUnavailable: "review_unavailable",
    CredentialsRejected: CREDENTIALS_REJECTED,  # the reason the answer carries, too
    NamespaceCrowded: "namespace_crowded",
    SecretsUnavailable: "secrets_unavailable",
}
"""The outcome label of each kind of refusal (errors.py); another kind is `failed`."""

_purpose: ContextVar[str | None] = ContextVar("sakura_call_purpose", default=None)


@contextmanager
def counted_as(operation: str) -> Iterator[None]:
    """Count the Sakura calls made inside as `operation` (a readiness recheck's listing)."""
    token = _purpose.set(operation)
    try:
        yield
    finally:
        _purpose.reset(token)


def call_outcome(error: SakuraError | None) -> str:
    """The outcome label of one call: `limited` when our own rate limiter refused it, or had
    no slot within the deadline (no request was sent, no quota spent)."""
    if error is None:
        return "ok"
    if isinstance(error, NotFound):
        return "not_found"
    if isinstance(error, Crowded) or (isinstance(error, Throttled) and error.status is None):
        return "limited"
    if isinstance(error, Throttled):
        return "throttled"
    return "rejected" if isinstance(error, Unauthorized) else "failed"


class CountedReader:
    """A SakuraReader that counts each call by operation and outcome, then passes it on."""

    def __init__(self, client: SakuraReader, registry: CollectorRegistry) -> None:
        self.client = client
        self.calls = Counter(
            SAKURA_CALLS,
            "Calls of Sakura by operation (list_vaults, list_secrets, unveil; recheck: the "
            "readiness recheck of a rejected key; token: a service principal's token "
            "exchange) and outcome (ok, not_found, throttled, "
            "limited: refused by the injector's own rate limiter, nothing sent; rejected: the "
            "injector's key; failed)",
            ["operation", "outcome"],
            registry=registry,
        )
        for operation in OPERATIONS:
            for outcome in CALL_OUTCOMES:
                self.calls.labels(operation, outcome)

    def exchanged(self, error: SakuraError | None) -> None:
        """A service principal's token exchange (the client tells of each): a call too."""
        self.calls.labels("token", call_outcome(error)).inc()

    async def unveil(
        self, vault_id: str, name: str, version: int | None = None, *, tenant: Tenant = None
    ) -> Unveiled:
        return await self._counted(
            "unveil", self.client.unveil(vault_id, name, version, tenant=tenant)
        )

    async def list_secrets(self, vault_id: str, *, tenant: Tenant = None) -> list[SecretInfo]:
        return await self._counted(
            "list_secrets", self.client.list_secrets(vault_id, tenant=tenant)
        )

    async def list_vaults(self) -> list[VaultInfo]:
        return await self._counted("list_vaults", self.client.list_vaults())

    async def _counted(self, operation: str, call: Awaitable[T]) -> T:
        operation = _purpose.get() or operation
        try:
            result = await call
        except SakuraError as error:
            self.calls.labels(operation, call_outcome(error)).inc()
            raise
        self.calls.labels(operation, "ok").inc()
        return result


class BrokerAnswers:
    """Counts the broker's answers by the asker's verified namespace and outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.namespace = NamespaceLabels()
        self.answers = Counter(
            BROKER_ANSWERS,
            "Broker answers by the asker's namespace (from the TokenReview; empty when the "
            "token was rejected) and outcome: served, unchanged (every secret held was still "
            "the latest: no value sent), or the refusal's kind",
            ["namespace", "outcome"],
            registry=registry,
        )

    def answered(self, answer: Answer) -> None:
        unchanged = all(isinstance(item, Unchanged) for item in answer.items)
        self.count(answer.namespace, "unchanged" if unchanged and answer.items else "served")

    def refused(self, namespace: str, refusal: BrokerError) -> None:
        self.count(namespace, REFUSALS.get(type(refusal), "failed"))

    def count(self, namespace: str, outcome: str) -> None:
        self.answers.labels(self.namespace(namespace), outcome).inc()


class BudgetGauges(Collector):
    """The shared Sakura budget as the rate limiter holds it, read at scrape time."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.namespace = NamespaceLabels()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            BUDGET_TOKENS,
            "Sakura calls this replica may make now without waiting (its share of the budget; "
            "below 0 while a Retry-After from Sakura is waited out)",
            value=self.limiter.level(),
        )
        yield GaugeMetricFamily(
            BUDGET_RATE,
            "Sakura calls per minute this replica paces itself at (its share of "
            "--sakura-rate-per-minute)",
            value=self.limiter.per_minute,
        )
        waiting = GaugeMetricFamily(
            WAITING,
            "Sakura calls waiting for the rate limiter, by the namespace they are made for",
            labels=["namespace"],
        )
        totals: dict[str, int] = {}
        for tenant, count in self.limiter.waiting_by_tenant().items():
            label = self.namespace(tenant or "")
            totals[label] = totals.get(label, 0) + count
        for label, count in sorted(totals.items()):
            waiting.add_metric([label], count)
        yield waiting
