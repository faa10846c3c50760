"""Rotating the injector's Sakura key with no restart (docs/operations.md, "Rotating the
injector's Sakura key"): the real client reads the key from a Secret volume written the
kubelet's way, against the emulator over HTTP, which holds both keys and revokes the first.

Following the runbook (key 2 in, wait for the metric, revoke key 1), reads never fail and
/readyz never answers 503; revoking first is tolerated for a bounded grace, and the new key's
arrival is rechecked at once; a key that stays rejected still fails readiness, saying that no
restart is needed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry
from support.broker_world import EMULATOR_SECRET, EMULATOR_TOKEN, VALUES, VAULT
from support.clock import HandClock
from support.emulator import EmulatorHandle
from support.secret_volume import write_secret_volume

from emulator.server import run_in_thread
from injector.broker.credentials import GRACE, REJECTED, CredentialWatch
from injector.broker.key_files import SakuraKeyFiles
from injector.broker.tuning import BrokerTuning
from injector.operations.key_in_use import INFO, LOADED
from injector.operations.wiring import Ports, TlsFiles, build_broker, build_listeners
from injector.webhook.settings import WebhookSettings
from sakura import SakuraClient, SakuraConfig, Unauthorized
from sakura.credentials import key_fingerprint

KEY_2 = ("rotated-access-token", "rotated-secret-5e1d7c90")
TUNING = BrokerTuning(sakura_deadline=5.0, sakura_retries=0)


def key_files(token: str, secret: str) -> dict[str, str]:
    return {"SAKURA_ACCESS_TOKEN": token, "SAKURA_ACCESS_TOKEN_SECRET": secret}


@dataclass
class Installed:
    """The injector's real parts, keyed from `directory`; its probe port served over HTTP."""

    watch: CredentialWatch
    registry: CollectorRegistry
    probes: str
    directory: Path

    def fingerprints(self) -> list[str]:
        return [
            sample.labels["fingerprint"]
            for metric in self.registry.collect()
            if metric.name == INFO
            for sample in metric.samples
        ]


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    directory = tmp_path / "sakura-api-key"
    write_secret_volume(directory, key_files(EMULATOR_TOKEN, EMULATOR_SECRET))
    return directory


@pytest.fixture
def tls(tmp_path: Path, tls_files: tuple[Path, Path, bytes]) -> TlsFiles:
    cert, key, ca_pem = tls_files
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    return TlsFiles(cert, key, broker_ca=tmp_path / "ca.crt")


@pytest.fixture
async def installed(
    emulator: EmulatorHandle, volume: Path, tls: TlsFiles
) -> AsyncIterator[Installed]:
    files = SakuraKeyFiles(volume, floor=0)
    config = SakuraConfig(
        access_token="unused", access_token_secret="unused", base_url=emulator.url
    )
    registry = CollectorRegistry()
    parts = build_broker(
        config, kube_api_client=k8s.ApiClient(), tuning=TUNING, registry=registry, credentials=files
    )
    settings = WebhookSettings(
        image="sakura-secrets-injector:test", broker_url="https://injector.test.svc"
    )
    listeners, _ = build_listeners(settings, parts, tls, Ports(0, 0, 0), registry=registry)
    [probes] = [listener.app for listener in listeners if listener.name == "probes"]
    assert parts.credentials is not None
    with run_in_thread(probes) as url:
        yield Installed(parts.credentials, registry, url, volume)
    await parts.aclose()


@pytest.fixture
def two_keys(emulator: EmulatorHandle) -> Iterator[EmulatorHandle]:
    emulator.app.keys.add(*KEY_2)
    yield emulator


async def test_a_rotation_by_the_runbook_never_fails_a_read_or_readiness(
    installed: Installed, two_keys: EmulatorHandle
) -> None:
    async with httpx.AsyncClient(base_url=installed.probes) as probes:

        async def read_and_probe() -> None:
            got = await installed.watch.unveil(VAULT, "db")
            assert got.value == VALUES["db"][-1]
            ready = await probes.get("/readyz")
            assert ready.status_code == 200, ready.text

        await read_and_probe()
        assert installed.fingerprints() == [key_fingerprint(EMULATOR_TOKEN)]
        before = installed.registry.get_sample_value(LOADED)
        assert before is not None

        write_secret_volume(installed.directory, key_files(*KEY_2))  # the kubelet's update
        await read_and_probe()
        assert installed.fingerprints() == [key_fingerprint(KEY_2[0])]  # the runbook waits
        assert (installed.registry.get_sample_value(LOADED) or 0) >= before

        two_keys.app.keys.revoke(EMULATOR_TOKEN)  # then revokes key 1
        for _ in range(5):
            await read_and_probe()
        calls = two_keys.app.keys.stats(EMULATOR_TOKEN)["calls"]
        assert calls == {EMULATOR_TOKEN: 1, KEY_2[0]: 6}
        metrics = (await probes.get("/metrics")).text
        assert f'{INFO}{{fingerprint="{key_fingerprint(KEY_2[0])}"}} 1.0' in metrics
        assert KEY_2[1] not in metrics and EMULATOR_SECRET not in metrics


async def test_a_call_in_flight_finishes_with_the_old_key_and_the_next_sends_the_new(
    installed: Installed, two_keys: EmulatorHandle
) -> None:
    two_keys.knobs.latency = 0.5  # the emulator checks the key after the wait
    in_flight = asyncio.create_task(installed.watch.unveil(VAULT, "db"))
    await asyncio.sleep(0.2)
    write_secret_volume(installed.directory, key_files(*KEY_2))
    after = await installed.watch.unveil(VAULT, "db")
    assert (await in_flight).value == after.value
    assert two_keys.app.keys.stats(EMULATOR_TOKEN)["calls"] == {EMULATOR_TOKEN: 1, KEY_2[0]: 1}


@pytest.fixture
async def watched(
    emulator: EmulatorHandle, volume: Path
) -> AsyncIterator[tuple[CredentialWatch, HandClock]]:
    clock = HandClock()
    files = SakuraKeyFiles(volume, floor=0)
    config = SakuraConfig(
        access_token="unused", access_token_secret="unused", base_url=emulator.url
    )
    async with SakuraClient(config, credentials=files, max_retries=0) as client:
        yield CredentialWatch(client, credentials=files, recheck_every=1000, clock=clock), clock


async def test_revoking_first_stays_ready_in_the_grace_and_rechecks_the_new_key_at_once(
    watched: tuple[CredentialWatch, HandClock],
    emulator: EmulatorHandle,
    volume: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch, clock = watched
    await watch.unveil(VAULT, "db")
    emulator.app.keys.revoke(EMULATOR_TOKEN)
    clock.now += 10
    with pytest.raises(Unauthorized):
        await watch.unveil(VAULT, "db")
    assert watch.rejection is not None
    caplog.set_level(logging.WARNING)
    assert watch.readiness() is None  # accepted 10 s ago: a rotation, not a broken key
    with pytest.raises(Unauthorized):
        await watch.unveil(VAULT, "db")
    assert watch.readiness() is None
    assert caplog.text.count("staying ready") == 1  # once per grace, not per probe
    first = watch._recheck
    assert first is not None
    await first  # key 1 still refused
    clock.now += GRACE - 20
    assert watch.readiness() is None and watch._recheck is first  # recheck_every not reached

    emulator.app.keys.add(*KEY_2)
    write_secret_volume(volume, key_files(*KEY_2))
    assert watch.readiness() is None
    assert watch._recheck is not first  # asked again at once, with key 2
    await watch._recheck
    assert watch.rejection is None
    assert emulator.app.keys.stats(EMULATOR_TOKEN)["calls"][KEY_2[0]] == 1


async def test_a_key_that_stays_rejected_fails_readiness_after_the_grace(
    watched: tuple[CredentialWatch, HandClock], emulator: EmulatorHandle
) -> None:
    watch, clock = watched
    await watch.unveil(VAULT, "db")
    emulator.app.keys.revoke(EMULATOR_TOKEN)
    with pytest.raises(Unauthorized):
        await watch.unveil(VAULT, "db")
    assert watch.readiness() is None
    clock.now += GRACE + 1
    reason = watch.readiness()
    assert reason is not None and reason.startswith(REJECTED)
    assert "sakura-api-key" in reason and "no restart needed" in reason
    assert EMULATOR_SECRET not in reason


async def test_a_key_never_accepted_is_not_ready_at_once(
    watched: tuple[CredentialWatch, HandClock], emulator: EmulatorHandle
) -> None:
    watch, _ = watched
    emulator.app.keys.revoke(EMULATOR_TOKEN)
    with pytest.raises(Unauthorized):
        await watch.unveil(VAULT, "db")
    assert (watch.readiness() or "").startswith(REJECTED)
