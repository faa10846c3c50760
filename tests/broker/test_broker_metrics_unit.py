"""The broker's metrics on fakes: each Sakura call counted once by operation and outcome, each
answer by the verified namespace and outcome, the budget's gauges read when scraped."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from support.broker_fakes import A, FakeSakura
from support.clock import HandClock

from contract.broker import Answer, FetchedSecret, Unchanged
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
from injector.broker.metrics import (
    BrokerAnswers,
    BudgetGauges,
    CountedReader,
    call_outcome,
    counted_as,
)
from injector.namespace_labels import OTHER
from sakura import (
    BadResponse,
    Crowded,
    NotFound,
    RateLimiter,
    Rejected,
    SakuraError,
    Throttled,
    Unauthorized,
    Unavailable,
)

CALLS = "sakura_secrets_sakura_calls_total"


def counted(registry: CollectorRegistry, name: str = CALLS) -> dict[tuple[str, ...], float]:
    """label values -> value of `name`'s samples that are not 0."""
    return {
        tuple(s.labels.values()): s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == name and s.value
    }


async def test_each_call_is_counted_once_by_its_operation_and_outcome() -> None:
    sakura, registry = FakeSakura(), CollectorRegistry()
    reader = CountedReader(sakura, registry)
    assert (await reader.unveil(A, "db", 1, tenant="shop")).value == "a-db-1"
    assert [s.name for s in await reader.list_secrets(A, tenant="shop")] == ["db"]
    await reader.list_vaults()
    await reader.list_vaults()
    sakura.fail = Unauthorized("HTTP 401")
    with pytest.raises(Unauthorized):
        await reader.list_secrets(A)
    sakura.fail = NotFound("gone", kind="secret", name="db")
    with pytest.raises(NotFound):
        await reader.unveil(A, "db")
    assert sakura.tenants == [
        ("unveil", "shop"),
        ("list", "shop"),
        ("list", None),
        ("unveil", None),
    ]
    assert counted(registry) == {
        ("unveil", "ok"): 1,
        ("list_secrets", "ok"): 1,
        ("list_vaults", "ok"): 2,
        ("list_secrets", "rejected"): 1,
        ("unveil", "not_found"): 1,
    }


def test_a_service_principals_token_exchanges_are_counted_as_calls() -> None:
    registry = CollectorRegistry()
    reader = CountedReader(FakeSakura(), registry)
    reader.exchanged(None)
    reader.exchanged(None)
    reader.exchanged(Unauthorized("HTTP 401: service principal key 'k' is disabled"))
    assert counted(registry) == {("token", "ok"): 2, ("token", "rejected"): 1}


def test_every_operation_and_outcome_is_shown_from_the_start_and_explained() -> None:
    registry = CollectorRegistry()
    CountedReader(FakeSakura(), registry)
    text = generate_latest(registry).decode()
    for operation in ("list_vaults", "list_secrets", "unveil", "recheck", "token"):
        for outcome in ("ok", "not_found", "throttled", "limited", "rejected", "failed"):
            sample = f'{CALLS}{{operation="{operation}",outcome="{outcome}"}} 0.0'
            assert sample in text
    assert text.count(f"{CALLS}{{") == 30
    assert (
        f"# HELP {CALLS} Calls of Sakura by operation (list_vaults, list_secrets, unveil; "
        "recheck: the readiness recheck of a rejected key; token: a service principal's token "
        "exchange) and outcome (ok, not_found, "
        "throttled, limited: refused by the injector's own rate limiter, nothing sent; "
        "rejected: the injector's key; failed)\n"
    ) in text


async def test_calls_made_as_a_recheck_are_counted_as_one_and_only_inside() -> None:
    sakura, registry = FakeSakura(), CollectorRegistry()
    reader = CountedReader(sakura, registry)
    with counted_as("recheck"):
        await reader.list_vaults()
        sakura.fail = Unauthorized("HTTP 401")
        with pytest.raises(Unauthorized):
            await reader.list_vaults()
    await asyncio.gather(reader.list_vaults(), return_exceptions=True)
    assert counted(registry) == {
        ("recheck", "ok"): 1,
        ("recheck", "rejected"): 1,
        ("list_vaults", "rejected"): 1,
    }


def test_a_recheck_ends_with_its_block_even_when_it_raised() -> None:
    with pytest.raises(RuntimeError), counted_as("recheck"):
        raise RuntimeError("boom")
    from injector.broker import metrics

    assert metrics._purpose.get() is None


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "ok"),
        (NotFound("x", kind="vault", name="v"), "not_found"),
        (Throttled("HTTP 429"), "throttled"),
        (Throttled("HTTP 429", status=429, retry_after=3), "throttled"),
        (Throttled("no slot within the deadline", status=None), "limited"),
        (Crowded("full", waiting=3), "limited"),
        (Unauthorized("HTTP 401", status=401), "rejected"),
        (Unauthorized("HTTP 403", status=403), "rejected"),
        (Unavailable("HTTP 503", status=503), "failed"),
        (Rejected("HTTP 400", status=400), "failed"),
        (BadResponse("not JSON"), "failed"),
        (SakuraError("other"), "failed"),
    ],
)
def test_each_failure_has_its_outcome(error: SakuraError | None, outcome: str) -> None:
    assert call_outcome(error) == outcome


async def test_an_error_that_is_not_sakuras_is_not_counted_as_a_call() -> None:
    sakura, registry = FakeSakura(), CollectorRegistry()
    sakura.fail = RuntimeError("a bug")
    with pytest.raises(RuntimeError):
        await CountedReader(sakura, registry).list_secrets(A)
    assert counted(registry) == {}


ANSWERS = "sakura_secrets_broker_answers_total"


@pytest.mark.parametrize(
    ("refusal", "outcome"),
    [
        (TokenRejected("no"), "token_rejected"),
        (AccessDenied("no"), "access_denied"),
        (SecretAbsent("no"), "secret_absent"),
        (ReviewUnavailable("no", retry_after=5), "review_unavailable"),
        (SecretsUnavailable("no", retry_after=5), "secrets_unavailable"),
        (CredentialsRejected("no", retry_after=5), "credentials_rejected"),
        (NamespaceCrowded("no", retry_after=5), "namespace_crowded"),
        (BrokerError("no"), "failed"),
    ],
)
def test_each_kind_of_refusal_is_its_own_outcome(refusal: BrokerError, outcome: str) -> None:
    registry = CollectorRegistry()
    BrokerAnswers(registry).refused("shop", refusal)
    assert counted(registry, ANSWERS) == {("shop", outcome): 1}


def test_an_answer_is_served_unless_every_secret_was_unchanged() -> None:
    registry = CollectorRegistry()
    answers = BrokerAnswers(registry)
    value = FetchedSecret("db", None, 2, "v")
    answers.answered(Answer("shop", (value,)))
    answers.answered(Answer("shop", (Unchanged("api", 1), value)))
    answers.answered(Answer("shop", (Unchanged("api", 1), Unchanged("db", 2))))
    answers.answered(Answer("web", ()))
    assert counted(registry, ANSWERS) == {
        ("shop", "served"): 2,
        ("shop", "unchanged"): 1,
        ("web", "served"): 1,
    }
    text = generate_latest(registry).decode()
    assert (
        "# HELP sakura_secrets_broker_answers_total Broker answers by the asker's namespace (from "
        "the TokenReview; empty when the token was rejected) and outcome: served, unchanged "
        "(every secret held was still the latest: no value sent), or the refusal's kind\n"
    ) in text


def test_the_answers_namespaces_are_bounded() -> None:
    registry = CollectorRegistry()
    answers = BrokerAnswers(registry)
    for n in range(1005):
        answers.count(f"ns-{n}", "served")
    answers.count("Not_A_Namespace", "served")
    found = counted(registry, ANSWERS)
    assert len(found) == 1001
    assert found[(OTHER, "served")] == 6


def gauges(registry: CollectorRegistry) -> dict[str, dict[tuple[str, ...], float]]:
    found: dict[str, dict[tuple[str, ...], float]] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            found.setdefault(sample.name, {})[tuple(sample.labels.values())] = sample.value
    return found


async def test_the_budget_is_read_from_the_limiter_when_scraped() -> None:
    async def never(_: float) -> None:
        await asyncio.Event().wait()

    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock, sleep=never)
    registry = CollectorRegistry()
    registry.register(BudgetGauges(limiter))
    assert gauges(registry) == {
        "sakura_secrets_sakura_budget_tokens": {(): 2.0},
        "sakura_secrets_sakura_budget_per_minute": {(): 60.0},
    }
    await limiter.acquire(tenant="shop")
    await limiter.acquire(tenant="shop")
    waiting = [
        asyncio.ensure_future(limiter.acquire(tenant=t))
        for t in ("shop", "web", "shop", None, "Bad_Name", "_other")
    ]
    await asyncio.sleep(0)
    limiter.set_rate(30, 1)
    clock.now += 0.5
    assert gauges(registry) == {
        "sakura_secrets_sakura_budget_tokens": {(): 0.25},
        "sakura_secrets_sakura_budget_per_minute": {(): 30.0},
        "sakura_secrets_sakura_waiting_calls": {
            ("",): 1.0,  # a call made for no namespace
            (OTHER,): 2.0,  # names no namespace can have, added up
            ("shop",): 2.0,
            ("web",): 1.0,
        },
    }
    assert 'sakura_secrets_sakura_waiting_calls{namespace="shop"} 2.0' in (
        generate_latest(registry).decode()
    )
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    text = generate_latest(registry).decode()
    assert "sakura_secrets_sakura_waiting_calls{" not in text
    for help_line in (
        "sakura_secrets_sakura_budget_tokens Sakura calls this replica may make now without "
        "waiting (its share of the budget; below 0 while a Retry-After from Sakura is waited out)",
        "sakura_secrets_sakura_budget_per_minute Sakura calls per minute this replica paces "
        "itself at (its share of --sakura-rate-per-minute)",
        "sakura_secrets_sakura_waiting_calls Sakura calls waiting for the rate limiter, by the "
        "namespace they are made for",
    ):
        assert f"# HELP {help_line}\n" in text
