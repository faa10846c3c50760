"""The init container writes the env file of a plan with variables, against the broker double
over TLS, and the file reads back as the kubelet reads it (support/kubelet_env_file.py, from
kubernetes/kubernetes pkg/kubelet/util/env/env_util.go as of v1.35)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support.kubelet_env_file import parse_env
from support.sidecar_harness import (
    API_V1,
    DB,
    PLAIN,
    BrokerDouble,
    make_plan,
    run_main,
    secret_file,
    snapshot,
)
from support.sidecar_harness import assert_no_value as assert_no_secret_value

from contract import Plan, SecretRef, SecretVersion
from contract.broker import FetchedSecret
from contract.env_file import EnvSpec
from sidecar import env_writer
from sidecar.errors import EXIT_BAD_VALUE, EnvValueRefused

PEM = "-----BEGIN CERTIFICATE-----\nMIIB-Hidden\n-----END CERTIFICATE-----\n"
QUOTED = "it's-Quoted-Hidden"


def _plan(secrets_dir: Path, env_dir: Path, *variables: tuple[str, str]) -> Plan:
    return make_plan(
        secrets_dir,
        secret_file("plain", "plain"),
        mode="broker",
        env=tuple(EnvSpec(name, SecretRef.parse(ref)) for name, ref in variables),
        env_directory=str(env_dir),
        uid=1234,
        gid=2345,
    )


def test_the_env_file_holds_each_variable_for_the_kubelet(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    tmp_path: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    broker.values["pem"] = [PEM]
    broker.grants.add("pem")
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    plan = _plan(
        secrets_dir,
        env_dir,
        ("DB_PASSWORD", "db#pass"),
        ("API_KEY", "api@1"),
        ("TLS_CERT", "pem"),
    )
    outcome = run_main(
        {**broker_env, "SAKURA_SECRETS_PLAN": plan.to_json()}, capsys, termination_log
    )
    assert outcome.code == 0, outcome.stderr
    data = (env_dir / "secrets.env").read_bytes()
    assert parse_env(data, "DB_PASSWORD") == DB["pass"]
    assert parse_env(data, "API_KEY") == API_V1
    assert parse_env(data, "TLS_CERT") == PEM  # multi-line values are held
    info = (env_dir / "secrets.env").stat()
    assert (info.st_mode & 0o777, info.st_uid, info.st_gid) == (0o400, 1234, 2345)
    assert sorted(p.name for p in env_dir.iterdir()) == ["secrets.env"]  # no temporary left
    assert snapshot(secrets_dir)["plain"] == (PLAIN.encode(), 0o400)  # the files as before
    assert "secrets.env" not in snapshot(secrets_dir)  # never beside the app's files
    assert_no_secret_value(outcome.stderr, caplog.text)


def test_a_value_the_env_file_cannot_hold_fails_naming_the_variable_and_writes_nothing(
    broker: BrokerDouble,
    broker_env: dict[str, str],
    secrets_dir: Path,
    tmp_path: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker.values["quoted"] = [QUOTED]
    broker.grants.add("quoted")
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    plan = _plan(secrets_dir, env_dir, ("DB_PASSWORD", "db#pass"), ("NOTE", "quoted"))
    outcome = run_main(
        {**broker_env, "SAKURA_SECRETS_PLAN": plan.to_json()}, capsys, termination_log
    )
    assert outcome.code == EXIT_BAD_VALUE
    assert outcome.lines[0] == (
        "sakura-secrets-init: bad env value: variable NOTE (sakura-secrets.io/env-NOTE): the "
        "value of secret "
        "'quoted' contains a single quote ('), which the kubelet's env file cannot hold (values "
        "are written between single quotes, without escapes); read it as a file instead "
        "(sakura-secrets.io/secret-FILE holds any value)"
    )
    assert QUOTED not in outcome.termination + outcome.stderr
    assert list(env_dir.iterdir()) == [] and snapshot(secrets_dir) == {}  # nothing written


def test_a_plan_without_variables_writes_no_env_file(secrets_dir: Path) -> None:
    plan = make_plan(secrets_dir, secret_file("plain", "plain"))
    assert env_writer.contents(plan, {}) is None


def test_an_env_file_over_1_mib_fails_naming_the_size_and_the_way_out(secrets_dir: Path) -> None:
    big = "b-Hidden" * 7_500  # 60 000 bytes: one variable fits, 18 do not
    variables = tuple(EnvSpec(f"V{i:02}", SecretRef("big")) for i in range(18))
    plan = make_plan(secrets_dir, env=variables)
    values = {SecretVersion("big"): FetchedSecret("big", None, 1, big)}
    with pytest.raises(EnvValueRefused) as caught:
        env_writer.contents(plan, values)
    assert caught.value.reason == (
        "bad env value: the env file would have 1080126 bytes, more than 1048576 (1 MiB); set "
        "fewer sakura-secrets.io/env-VAR variables, or read the large values as files"
    )
