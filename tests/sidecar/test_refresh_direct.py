"""The refresh loop in direct mode (the pod's own Sakura key) against the emulator over HTTP:
one listing of the vault per round, an unveil only of a version newer than the one held."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from support.sidecar_harness import (
    API_V1,
    DB,
    VAULT,
    assert_no_value,
    make_plan,
    secret_file,
    sets,
    snapshot,
    template_file,
)

from contract import Plan
from emulator import Emulator
from sidecar import __main__ as init
from sidecar import config, sources
from sidecar.refresh import Refresher

API_V3 = "api-v3-Direct-Hidden"
INTERVAL = 30


def _plan(directory: Path) -> Plan:
    return make_plan(
        directory,
        secret_file("api", "api"),
        secret_file("api-old", "api@1"),
        secret_file("user", "db#user"),
        template_file("conf", 'api={{ secret("api") }} user={{ secret("db#user") }}'),
        refresh_interval=INTERVAL,
    )


def _started(direct_env: dict[str, str], plan: Plan) -> Refresher:
    env = {**direct_env, "SAKURA_SECRETS_PLAN": plan.to_json()}
    init.run(env)
    return Refresher(plan, sources.of(config.load(env), deadline=5.0), draw=lambda: 0.5)


def _record(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / ".sakura-secrets.json").read_text())
    return data


def _calls(emulator: Emulator) -> dict[str, int]:
    calls = {op: emulator.knobs.calls[op] for op in ("list_secrets", "unveil")}
    emulator.knobs.reset_stats()
    return calls


def test_a_round_is_one_listing_and_an_unveil_of_each_new_version_only(
    direct_env: dict[str, str], emulator: Emulator, secrets_dir: Path
) -> None:
    refresher = _started(direct_env, _plan(secrets_dir))
    loaded = os.readlink(secrets_dir / "..data")
    _calls(emulator)

    assert refresher.round() == INTERVAL
    assert _calls(emulator) == {"list_secrets": 0, "unveil": 3}, "the first fetch: everything"
    for _ in range(3):
        assert refresher.round() == INTERVAL
    assert _calls(emulator) == {"list_secrets": 3, "unveil": 0}, "unchanged: listings only"
    assert os.readlink(secrets_dir / "..data") == loaded, "the init container's set stays"

    emulator.store.put(VAULT, "api", API_V3)
    assert refresher.round() == INTERVAL
    assert _calls(emulator) == {"list_secrets": 1, "unveil": 1}, "api@3 only; api@1 never"
    files = snapshot(secrets_dir)
    assert files["api"] == (API_V3.encode(), 0o400)
    assert files["conf"] == (f"api={API_V3} user={DB['user']}".encode(), 0o400)
    assert files["api-old"] == (API_V1.encode(), 0o400)
    switched = os.readlink(secrets_dir / "..data")
    assert switched != loaded and sets(secrets_dir) == [switched]
    record = _record(secrets_dir)
    assert record["set"] == switched and record["mode"] == "direct"
    assert [s["version"] for s in record["secrets"]] == [3, 1, 1]

    assert refresher.round() == INTERVAL
    assert _calls(emulator) == {"list_secrets": 1, "unveil": 0}
    assert os.readlink(secrets_dir / "..data") == switched


def test_a_secret_gone_from_the_vault_keeps_the_files_and_says_so(
    direct_env: dict[str, str],
    emulator: Emulator,
    secrets_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    refresher = _started(direct_env, _plan(secrets_dir))
    refresher.round()
    before = snapshot(secrets_dir)
    emulator.store.delete(VAULT, "db")

    assert refresher.round() == 2.0

    after = snapshot(secrets_dir)
    assert {n: v for n, v in after.items() if n[0] != "."} == {
        n: v for n, v in before.items() if n[0] != "."
    }
    record = _record(secrets_dir)
    assert record["last_error"] == (
        f"not found: secret 'db' is no longer in vault {VAULT} (listing its secrets); the files "
        "keep version 1; create the secret again or change the pod's annotations"
    )
    assert record["consecutive_failures"] == 1
    assert_no_value(caplog.text, json.dumps(record))


def test_rejected_credentials_keep_the_files_and_name_the_secret_holding_them(
    direct_env: dict[str, str], secrets_dir: Path
) -> None:
    plan = _plan(secrets_dir)
    refresher = _started(direct_env, plan)
    refresher.round()
    loaded = os.readlink(secrets_dir / "..data")
    env = {
        **direct_env,
        "SAKURA_ACCESS_TOKEN_SECRET": "revoked",  # the key was revoked in Sakura, not the pod
        "SAKURA_SECRETS_PLAN": plan.to_json(),
    }
    refresher.source = sources.of(config.load(env), deadline=5.0)

    assert refresher.round() == 2.0

    assert os.readlink(secrets_dir / "..data") == loaded
    error = _record(secrets_dir)["last_error"]
    assert error.startswith(f"credentials rejected: listing secrets of vault {VAULT}: ")
    assert error.endswith(
        "the credentials come from the Secret named by the "
        "sakura-secrets.io/credentials-secret annotation"
    )


def test_a_secret_created_again_with_lower_versions_is_not_taken(
    direct_env: dict[str, str], emulator: Emulator, secrets_dir: Path
) -> None:
    """Versions only grow; a lower latest (the secret deleted and created again) would take
    the files back, so it is not read: the pod keeps what it has until it restarts."""
    refresher = _started(direct_env, _plan(secrets_dir))
    refresher.round()
    loaded = os.readlink(secrets_dir / "..data")
    emulator.store.delete(VAULT, "api")
    emulator.store.put(VAULT, "api", "api-recreated-Hidden")
    _calls(emulator)
    assert refresher.round() == INTERVAL
    assert _calls(emulator) == {"list_secrets": 1, "unveil": 0}
    assert os.readlink(secrets_dir / "..data") == loaded
