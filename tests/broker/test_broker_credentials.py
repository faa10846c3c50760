"""A Sakura key that Sakura rejects is its own outcome, not an outage: the metric says
`rejected`, the broker answers a 503 whose reason says so, admission warns with the words
"Sakura rejected the injector's credentials", and readiness reports it until Sakura accepts
the key again."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from support.broker_world import (
    EMULATOR_SECRET,
    EMULATOR_TOKEN,
    VAULT,
    World,
    fetch,
    plan_of,
    serve_broker,
)
from support.clock import HandClock
from support.emulator import EmulatorHandle

from injector.broker.credentials import REJECTED, CredentialWatch
from injector.broker.metrics import CountedReader
from injector.broker.tuning import BrokerTuning
from injector.kube import api_client as kube_api_client
from injector.operations.wiring import BrokerParts, build_broker
from sakura import SakuraClient, SakuraConfig, Unauthorized

SETTINGS = BrokerTuning(sakura_deadline=2.0, sakura_retries=0, admission_timeout=3.0)


def wrong_key(url: str) -> SakuraConfig:
    return SakuraConfig(
        access_token=EMULATOR_TOKEN, access_token_secret="revoked-secret", base_url=url
    )


@pytest.mark.cluster
async def test_the_broker_says_the_key_was_rejected(
    world: World, emulator: EmulatorHandle, tls_files: tuple[Path, Path, bytes]
) -> None:
    token = world.token(world.ns_a, "app")
    with serve_broker(emulator.url, tls_files, SETTINGS, config=wrong_key(emulator.url)) as broker:
        response = await fetch(broker, token, [{"name": "db", "version": None}])
        assert response.status_code == 503
        body = response.json()
        assert body["reason"] == "credentials_rejected"
        assert body["error"].startswith(REJECTED)
        assert "secret 'db' of vault 110000000001" in body["error"]
        assert "revoked-secret" not in response.text
        assert "retry-after" in response.headers
        calls = "sakura_secrets_sakura_calls_total"
        rejected = {"operation": "list_secrets", "outcome": "rejected"}  # the vault's listing
        assert broker.registry.get_sample_value(calls, rejected) == 1
        assert sum_of(broker.registry, calls) == 1  # nothing else was asked
        answers = "sakura_secrets_broker_answers_total"
        refused = {"namespace": world.ns_a, "outcome": "credentials_rejected"}
        assert broker.registry.get_sample_value(answers, refused) == 1


@pytest.fixture
def rejected_registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def rejected_parts(
    emulator: EmulatorHandle, world: World, rejected_registry: CollectorRegistry
) -> AsyncIterator[BrokerParts]:
    built = build_broker(
        wrong_key(emulator.url),
        kube_api_client=kube_api_client(os.environ["KUBECONFIG"]),
        tuning=SETTINGS,
        registry=rejected_registry,
    )
    yield built
    await built.aclose()


@pytest.mark.cluster
async def test_admission_warns_that_sakura_rejected_the_credentials(
    world: World, rejected_parts: BrokerParts, rejected_registry: CollectorRegistry
) -> None:
    outcome = await rejected_parts.check(world.ns_a, "app", plan_of("db"))
    assert outcome.denial is None
    [warning] = outcome.warnings
    assert warning.startswith(f"{REJECTED} (")
    assert "could not be reached" not in warning
    assert rejected_parts.credentials is not None
    assert (rejected_parts.credentials.readiness() or "").startswith(REJECTED)
    recheck = rejected_parts.credentials._recheck
    assert recheck is not None
    await recheck
    # the admission check's listing and the readiness recheck spent quota too: both counted
    calls = "sakura_secrets_sakura_calls_total"
    counted = {
        (s.labels["operation"], s.labels["outcome"]): s.value
        for m in rejected_registry.collect()
        for s in m.samples
        if s.name == calls and s.value
    }
    assert counted == {("list_secrets", "rejected"): 1, ("recheck", "rejected"): 1}


async def test_readiness_reports_a_rejection_until_sakura_accepts_the_key_again(
    emulator: EmulatorHandle,
) -> None:
    emu, url = emulator.app, emulator.url
    clock, registry = HandClock(0.0), CollectorRegistry()
    async with SakuraClient(wrong_key(url), max_retries=0) as client:
        watch = CredentialWatch(CountedReader(client, registry), recheck_every=30, clock=clock)
        assert watch.readiness() is None
        with pytest.raises(Unauthorized):
            await watch.unveil(VAULT, "db")
        reason = watch.readiness()
        assert reason is not None and reason.startswith(REJECTED)
        assert "HTTP 401" in reason and "sakura-api-key" in reason
        assert "revoked-secret" not in reason
        first = watch._recheck
        assert first is not None
        await first  # still refused: still not ready
        assert watch.readiness() is not None and watch._recheck is first  # not before 30 s

        emu.config.access_token_secret = "revoked-secret"  # the key is accepted again
        clock.now = 31.0
        assert watch.readiness() is not None  # says so until the recheck has answered
        assert watch._recheck is not None and watch._recheck is not first
        await watch._recheck
        assert watch.readiness() is None
    emu.config.access_token_secret = EMULATOR_SECRET
    calls = "sakura_secrets_sakura_calls_total"
    counted = {
        (s.labels["operation"], s.labels["outcome"]): s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == calls and s.value
    }
    # the rechecks are told apart from the reads, and counted as Sakura answered them
    assert counted == {("unveil", "rejected"): 1, ("recheck", "rejected"): 1, ("recheck", "ok"): 1}


def sum_of(registry: CollectorRegistry, name: str) -> float:
    return sum(s.value for m in registry.collect() for s in m.samples if s.name == name)
