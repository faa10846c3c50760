"""Secrecy of `env-VAR` values, end to end in one process: the real admission builds the pod,
its init container's plan runs against the broker double over TLS, and a value is then found
in the env file only (whence the kubelet reads it), never in the admission answer, the pod
spec, an annotation, the init container's log or termination message, or the load record."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import jsonpatch
import pytest
from support.admission_harness import INIT, P, pod, run, settings
from support.kubelet_env_file import parse_env
from support.sidecar_harness import ALL_VALUES, DB, BrokerDouble, run_main, snapshot

from contract import Plan

MULTILINE = "-----BEGIN KEY-----\nenv-Secret-Line-Hidden\n-----END KEY-----\n"


async def test_env_values_reach_only_the_env_file(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    tmp_path: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    broker.values |= {"key": [MULTILINE], "db-password": ["file-Value-Hidden"]}
    broker.grants |= {"key", "db-password"}  # the harness pod also has secret-db-password
    obj = pod({f"{P}env-DB_PASSWORD": "db#pass", f"{P}env-TLS_KEY": "key"})
    answer = await run(obj, webhook=settings(env_files=True))
    response = answer["response"]
    assert response["allowed"] is True
    mutated = jsonpatch.apply_patch(obj, json.loads(base64.b64decode(response["patch"])))
    (init,) = [c for c in mutated["spec"]["initContainers"] if c["name"] == INIT]
    plan_json = next(e["value"] for e in init["env"] if e["name"] == "SAKURA_SECRETS_PLAN")

    # the init container, with the plan the webhook wrote, writing where the test can look
    plan = Plan.from_json(plan_json)
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    where = {"directory": str(secrets_dir), "env_directory": str(env_dir)}
    local = json.loads(plan_json) | where | {"vault_id": broker.vault_id}
    outcome = run_main(
        {**broker_env, "SAKURA_SECRETS_PLAN": json.dumps(local)}, capsys, termination_log
    )
    assert outcome.code == 0, outcome.stderr
    env_file = (env_dir / "secrets.env").read_bytes()
    assert parse_env(env_file, "DB_PASSWORD") == DB["pass"]
    assert parse_env(env_file, "TLS_KEY") == MULTILINE
    assert [v.name for v in plan.env] == ["DB_PASSWORD", "TLS_KEY"]

    values = (*ALL_VALUES, MULTILINE, "env-Secret-Line-Hidden")
    files = snapshot(secrets_dir)
    elsewhere = {
        "admission answer": json.dumps(answer),
        "pod": json.dumps(mutated),
        "annotations": json.dumps(mutated["metadata"]["annotations"]),
        "init log": outcome.stderr + caplog.text,
        "termination": outcome.termination,
        "record": files[".sakura-secrets.json"][0].decode(),
    }
    for where, text in elsewhere.items():
        for value in values:
            assert value not in text, f"a value leaked into the {where}"
