"""Secret values reach only the 200 answer to an authorized fetcher: no log, metric or error."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from support.broker_world import ALL_VALUES, VALUES, VAULT, World, fetch, serve_broker
from support.clock import HandClock
from support.emulator import EmulatorHandle

from emulator.knobs import Fault
from injector.broker.cache import CacheSettings
from injector.broker.metrics import CALL_OUTCOMES, OPERATIONS, REFUSALS
from injector.broker.tuning import BrokerTuning
from injector.operations.log_format import JsonFormatter, TextFormatter

pytestmark = pytest.mark.cluster

OUTCOME_LABELS = {
    *("served", "unchanged", "malformed", *REFUSALS.values(), "failed"),
    *OPERATIONS,
    *CALL_OUTCOMES,
    *("hit", "miss", "coalesced", "stale", "absent"),
    *("queue_full", "book_full", "write_failed"),  # sakura_secrets_events_lost_total{why}
}
"""Every label value the broker's metrics may carry besides namespaces."""

SETTINGS = BrokerTuning(
    cache=CacheSettings(latest_ttl=0.2, stale_for=1.5), sakura_deadline=1.0, sakura_retries=0
)


async def test_values_only_in_the_authorized_answer(
    world: World,
    emulator: EmulatorHandle,
    tls_files: tuple[Path, Path, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every logger, every thread
    token_a = world.token(world.ns_a, "app")
    token_b = world.token(world.ns_b, "app")
    token_nogrant = world.token(world.ns_a, "nogrant")
    everything = [{"name": n, "version": None} for n in VALUES]
    refusals = []
    clock = HandClock()
    with serve_broker(emulator.url, tls_files, SETTINGS, cache_clock=clock) as broker:
        ok = await fetch(
            broker, token_a, [{"name": "db", "version": 1}, {"name": "api", "version": None}]
        )
        assert ok.status_code == 200
        assert [s["value"] for s in ok.json()["secrets"]] == [VALUES["db"][0], VALUES["api"][0]]

        refusals.append(await fetch(broker, token_b, everything))  # 403
        refusals.append(await fetch(broker, token_nogrant, everything))  # 403
        refusals.append(await fetch(broker, None, everything))  # 401
        refusals.append(await fetch(broker, "x.y.z", everything))  # 401
        refusals.append(await fetch(broker, token_a, [{"name": "db", "version": 7}]))  # 404
        refusals.append(await fetch(broker, token_a, [], body=b'{"vault_id": 1}'))  # 400
        rewarm = await fetch(broker, token_a, [{"name": "api", "version": None}])
        assert rewarm.status_code == 200
        emulator.knobs.set_faults([Fault(503, 1.0)])
        clock.now += 0.3  # past the TTL
        stale = await fetch(broker, token_a, [{"name": "api", "version": None}])  # stale 200
        assert stale.status_code == 200
        refusals.append(await fetch(broker, token_a, [{"name": "cfg", "version": None}]))  # 503
        clock.now += 1.4  # 1.7 s after the re-warm: past the staleness bound
        refusals.append(await fetch(broker, token_a, [{"name": "api", "version": None}]))  # 503
        metrics = generate_latest(broker.registry).decode()
        labels = {
            value
            for family in broker.registry.collect()
            for sample in family.samples
            for value in sample.labels.values()
        }

    assert sorted(r.status_code for r in refusals) == [400, 401, 401, 403, 403, 404, 503, 503]
    for response in refusals:
        assert set(response.json()) == {"error"}
        for value in ALL_VALUES:
            assert value not in response.text
    # the logs really were captured (the broker logged its refusals and the stale serve) ...
    assert "refused" in caplog.text and "serving secret 'api'" in caplog.text
    assert 'outcome="stale"' in metrics
    # ... and no value is anywhere in them, in messages, arguments, fields or tracebacks, as the
    # process writes them (JSON, text)
    lines = [f.format(r) for r in caplog.records for f in (JsonFormatter(), TextFormatter())]
    assert any('"logger": "injector.audit"' in line and "access-denied" in line for line in lines)
    assert any("decision=served" in line for line in lines)
    logged = caplog.text + "".join(repr(r.args) + (r.exc_text or "") for r in caplog.records)
    logged += "".join(lines)
    for value in ALL_VALUES:
        assert value not in logged
        assert value not in metrics
        assert value not in token_a  # (sanity: the search strings are distinctive)
    # the labels are outcomes, operations and verified namespaces: never a vault, a secret's
    # name or a token, whatever the requests said
    answers = "sakura_secrets_broker_answers_total"
    assert broker.registry.get_sample_value(answers, {"namespace": world.ns_a, "outcome": "served"})
    assert broker.registry.get_sample_value(answers, {"namespace": "", "outcome": "token_rejected"})
    assert labels <= {world.ns_a, world.ns_b, "", *OUTCOME_LABELS}, labels - {world.ns_a}
    for name in (*VALUES, VAULT, "x.y.z", token_a):
        assert name not in labels
