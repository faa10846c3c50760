"""The injector with a service principal in its mounted Secret, against the emulator over HTTP:
the broker's reads carry Bearer tokens, a token revoked mid-rollout is renewed without a
failed read, each exchange is counted as a Sakura call, and a disabled key is the same
"Sakura rejected the injector's credentials" outcome as a rejected API key."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry, generate_latest
from support.broker_world import VALUES, VAULT
from support.clock import HandClock
from support.emulator import EmulatorHandle
from support.principal_kit import KID, PRINCIPAL_ID, private_pem, public_pem, rsa_key
from support.secret_volume import write_secret_volume

from emulator.server import run_in_thread
from injector.broker.credentials import GRACE, REJECTED, CredentialWatch
from injector.broker.key_files import SakuraKeyFiles
from injector.broker.metrics import SAKURA_CALLS
from injector.broker.tuning import BrokerTuning
from injector.operations.key_in_use import TOKEN_EXPIRY, describe
from injector.operations.log_format import JsonFormatter, TextFormatter
from injector.operations.wiring import BrokerParts, Ports, TlsFiles, build_broker, build_listeners
from injector.webhook.settings import WebhookSettings
from sakura import SakuraClient, SakuraConfig, Unauthorized
from sakura.credentials import FixedCredentials, key_fingerprint

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


def principal_broker(
    emulator: EmulatorHandle, volume: Path
) -> tuple[BrokerParts, CollectorRegistry]:
    """The injector's broker as `serve` wires it, its credentials the principal in `volume`."""
    files = SakuraKeyFiles(volume, token_endpoint=emulator.url + PATH, floor=0)
    registry = CollectorRegistry()
    parts = build_broker(
        SakuraConfig(base_url=emulator.url),
        kube_api_client=k8s.ApiClient(),
        tuning=BrokerTuning(sakura_deadline=5.0, sakura_retries=0),
        registry=registry,
        credentials=files,
    )
    return parts, registry


def tokens(registry: CollectorRegistry, outcome: str) -> float:
    sample = registry.get_sample_value(
        f"{SAKURA_CALLS}_total", {"operation": "token", "outcome": outcome}
    )
    return sample or 0.0


async def test_the_broker_reads_with_a_service_principal_and_counts_its_exchanges(
    emulator: EmulatorHandle, volume: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens_seen: list[str] = []
    parts, registry = principal_broker(emulator, volume)
    try:
        assert parts.credentials is not None
        watch = parts.credentials
        assert (await watch.unveil(VAULT, "db")).value == VALUES["db"][-1]
        tokens_seen += parts.sakura.authorizer.bearer_values
        emulator.app.principals.expire_tokens()  # Sakura revokes every token mid-rollout
        reads = await asyncio.gather(*(watch.unveil(VAULT, "db") for _ in range(4)))
        assert {r.value for r in reads} == {VALUES["db"][-1]}
        tokens_seen += parts.sakura.authorizer.bearer_values
        assert tokens(registry, "ok") == 2 and emulator.app.principals.exchanges == 2
        assert watch.readiness() is None
        emulator.app.principals.set_enabled(KID, False)
        emulator.app.principals.expire_tokens()
        with pytest.raises(Unauthorized):
            await watch.unveil(VAULT, "db")
        # the key, the tokens: in no log line (as JSON or text), metric or message
        key_body = private_pem(rsa_key()).splitlines()[5]
        shown = [JsonFormatter().format(r) + TextFormatter().format(r) for r in caplog.records]
        shown.append(generate_latest(registry).decode())
        assert len(set(tokens_seen)) == 2 and caplog.records
        for text in shown:
            assert key_body not in text
            assert not any(token in text for token in tokens_seen)
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


async def test_readyz_and_metrics_name_the_kind_and_the_tokens_expiry_never_the_token(
    emulator: EmulatorHandle, volume: Path, tmp_path: Path, tls_files: tuple[Path, Path, bytes]
) -> None:
    cert, key, ca_pem = tls_files
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    parts, registry = principal_broker(emulator, volume)
    settings = WebhookSettings(image="i:t", broker_url="https://injector.test.svc")
    tls = TlsFiles(cert, key, broker_ca=tmp_path / "ca.crt")
    listeners, _ = build_listeners(settings, parts, tls, Ports(0, 0, 0), registry=registry)
    [probes] = [listener.app for listener in listeners if listener.name == "probes"]
    try:
        with run_in_thread(probes) as url:
            before = httpx.get(f"{url}/readyz").json()["sakura"]
            assert before == {
                "kind": "service-principal",
                "fingerprint": key_fingerprint(KID),
                "token_expires_in_seconds": None,
            }
            assert parts.credentials is not None
            await parts.credentials.unveil(VAULT, "db")
            after = httpx.get(f"{url}/readyz").json()["sakura"]
            assert 3500 < after["token_expires_in_seconds"] <= 3600
            metrics = httpx.get(f"{url}/metrics").text
            token = parts.sakura.authorizer.bearer_values[0]
            assert token not in metrics and token not in str(after)
        expiry = registry.get_sample_value(TOKEN_EXPIRY)
        assert expiry is not None and 3500 < expiry - time.time() <= 3600
    finally:
        await parts.aclose()


def test_an_api_key_is_described_by_its_kind_and_fingerprint() -> None:
    from sakura.credentials import ApiKey

    assert describe(FixedCredentials(ApiKey("tok", "sec")), None) == {
        "kind": "api-key",
        "fingerprint": key_fingerprint("tok"),
    }


def test_credentials_never_read_are_described_as_none(tmp_path: Path) -> None:
    assert describe(SakuraKeyFiles(tmp_path, floor=0), None) == {"kind": "none"}
