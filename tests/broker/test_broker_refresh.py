"""Refreshes over real TLS, TokenReview and SubjectAccessReview against the emulator: what a
refresh container's request is answered, and what it costs Sakura (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.broker_world import VALUES, VAULT, World, fetch, serve_broker
from support.clock import HandClock
from support.emulator import EmulatorHandle

pytestmark = pytest.mark.cluster

LATEST = [{"name": "db", "version": None}, {"name": "api", "version": None}]


def held_body(held: dict[str, int]) -> bytes:
    return json.dumps({"vault_id": VAULT, "secrets": LATEST, "held": held}).encode()


def sakura_calls(emulator: EmulatorHandle) -> dict[str, int]:
    calls: dict[str, Any] = emulator.knobs.stats()["calls"]
    return {k: int(v) for k, v in calls.items() if k != "total"}


async def test_a_refresh_is_answered_unchanged_until_a_new_version_is_listed(
    world: World, emulator: EmulatorHandle, tls_files: tuple[Path, Path, bytes]
) -> None:
    clock = HandClock()
    with serve_broker(emulator.url, tls_files, cache_clock=clock) as broker:
        token = world.token(world.ns_a, "app")
        first = await fetch(broker, token, LATEST)
        assert first.status_code == 200, first.text
        held = {s["name"]: s["version"] for s in first.json()["secrets"]}
        assert held == {"db": 2, "api": 1}
        assert sakura_calls(emulator) == {"list_secrets": 1, "unveil": 2}

        same = await fetch(broker, token, [], body=held_body(held))
        assert same.status_code == 200, same.text
        assert same.json() == {
            "secrets": [
                {"name": "db", "requested_version": None, "version": 2, "unchanged": True},
                {"name": "api", "requested_version": None, "version": 1, "unchanged": True},
            ]
        }
        assert sakura_calls(emulator) == {"list_secrets": 1, "unveil": 2}  # nothing asked

        emulator.store.put(VAULT, "api", "api-v2-rotated-VALUE")
        clock.now += 30  # the listing's lifetime: the next refresh lists the vault again
        changed = await fetch(broker, token, [], body=held_body(held))
        assert changed.status_code == 200, changed.text
        assert changed.json()["secrets"] == [
            {"name": "db", "requested_version": None, "version": 2, "unchanged": True},
            {
                "name": "api",
                "requested_version": None,
                "version": 2,
                "value": "api-v2-rotated-VALUE",
            },
        ]
        # another pod's refresh: the new version is held, nothing more is asked of Sakura
        world.pod(world.ns_a, "refresher", "app")
        other = await fetch(broker, world.token(world.ns_a, "refresher"), [], body=held_body(held))
        assert other.json() == changed.json()
        assert sakura_calls(emulator) == {"list_secrets": 2, "unveil": 3}
        assert VALUES["db"][1] not in same.text + changed.text  # unchanged: no value moved


async def test_a_refresh_for_a_secret_without_its_grant_is_refused_like_a_fetch(
    world: World, emulator: EmulatorHandle, tls_files: tuple[Path, Path, bytes]
) -> None:
    with serve_broker(emulator.url, tls_files) as broker:
        token = world.token(world.ns_b, "app")  # granted "other" only
        body = json.dumps(
            {"vault_id": VAULT, "secrets": [{"name": "db", "version": None}], "held": {"db": 2}}
        ).encode()
        refused = await fetch(broker, token, [], body=body)
        assert refused.status_code == 403
        assert f'secrets "{VAULT}/db"' in refused.json()["error"]
        assert sakura_calls(emulator) == {}
