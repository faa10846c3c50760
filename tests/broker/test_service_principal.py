"""The injector with a service principal in its mounted Secret, against the emulator over HTTP:
the broker's reads carry Bearer tokens, a token revoked mid-rollout is renewed without a
failed read, each exchange is counted as a Sakura call, and a disabled key is the same
"Sakura rejected the injector's credentials" outcome as a rejected API key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry
from support.broker_world import VALUES, VAULT
from support.clock import HandClock
from support.emulator import EmulatorHandle
from support.principal_kit import KID, PRINCIPAL_ID, private_pem, public_pem, rsa_key
from support.secret_volume import write_secret_volume

from injector.broker.credentials import GRACE, REJECTED, CredentialWatch
from injector.broker.key_files import SakuraKeyFiles
from injector.broker.metrics import SAKURA_CALLS
from injector.broker.tuning import BrokerTuning
from injector.operations.wiring import build_broker
from sakura import SakuraClient, SakuraConfig, Unauthorized

PATH = "/service-principals/oauth2/token"


@pytest.fixture
def volume(tmp_path: Path, emulator: EmulatorHandle) -> Path:
    emulator.app.principals.add_key(PRINCIPAL_ID, KID, public_pem(rsa_key()))
    directory = tmp_path / "sakura-api-key"
    write_secret_volume(
        directory,
        {
            "SAKURA_SERVICE_PRINCIPAL_ID": PRINCIPAL_ID,
            "SAKURA_SERVICE_PRINCIPAL_KEY_ID": KID,
            "SAKURA_PRIVATE_KEY": private_pem(rsa_key()),
        },
    )
    return directory


def tokens(registry: CollectorRegistry, outcome: str) -> float:
    sample = registry.get_sample_value(
        f"{SAKURA_CALLS}_total", {"operation": "token", "outcome": outcome}
    )
    return sample or 0.0


async def test_the_broker_reads_with_a_service_principal_and_counts_its_exchanges(
    emulator: EmulatorHandle, volume: Path
) -> None:
    files = SakuraKeyFiles(volume, token_endpoint=emulator.url + PATH, floor=0)
    registry = CollectorRegistry()
    parts = build_broker(
        SakuraConfig(base_url=emulator.url),
        kube_api_client=k8s.ApiClient(),
        tuning=BrokerTuning(sakura_deadline=5.0, sakura_retries=0),
        registry=registry,
        credentials=files,
    )
    try:
        assert parts.credentials is not None
        watch = parts.credentials
        assert (await watch.unveil(VAULT, "db")).value == VALUES["db"][-1]
        emulator.app.principals.expire_tokens()  # Sakura revokes every token mid-rollout
        reads = await asyncio.gather(*(watch.unveil(VAULT, "db") for _ in range(4)))
        assert {r.value for r in reads} == {VALUES["db"][-1]}
        assert tokens(registry, "ok") == 2 and emulator.app.principals.exchanges == 2
        assert watch.readiness() is None
    finally:
        await parts.aclose()


@pytest.fixture
async def watched(
    emulator: EmulatorHandle, volume: Path
) -> AsyncIterator[tuple[CredentialWatch, HandClock]]:
    clock = HandClock()
    files = SakuraKeyFiles(volume, token_endpoint=emulator.url + PATH, floor=0)
    async with SakuraClient(
        SakuraConfig(base_url=emulator.url), credentials=files, max_retries=0
    ) as client:
        yield CredentialWatch(client, credentials=files, recheck_every=1000, clock=clock), clock


async def test_a_disabled_key_is_the_rejected_credentials_outcome(
    watched: tuple[CredentialWatch, HandClock], emulator: EmulatorHandle
) -> None:
    watch, clock = watched
    emulator.app.principals.set_enabled(KID, False)
    with pytest.raises(Unauthorized) as caught:
        await watch.unveil(VAULT, "db")
    assert f"service principal key '{KID}' is disabled" in str(caught.value)
    clock.now += GRACE + 1
    readiness = watch.readiness()
    assert readiness is not None and readiness.startswith(REJECTED)
