"""A plan's variables (`Plan.env`) in the plan's JSON: format 3 only when there are any, so a
plan without them reads in every init image and one with them is refused by an image from
before them, with the message saying which image to run."""

from __future__ import annotations

import json

import pytest

from contract import Broker, FileSpec, Plan, PlanError, SecretRef
from contract.env_file import EnvSpec
from contract.plan import ENV_DIRECTORY

VAULT = "123456789012"


def _plan(**kw: object) -> Plan:
    args: dict[str, object] = {
        "files": (FileSpec("f", 0o400, secret=SecretRef("s")),),
        "directory": "/s",
        "vault_id": VAULT,
        "uid": 1,
        "gid": 2,
        "mode": Broker(),
    }
    args.update(kw)
    return Plan(**args)  # type: ignore[arg-type]


def test_a_plan_without_variables_keeps_format_1_and_no_env_keys() -> None:
    data = json.loads(_plan().to_json())
    assert data["format"] == 1
    assert "env" not in data and "env_directory" not in data


def test_a_plan_with_variables_is_format_2_and_reads_back() -> None:
    env = (EnvSpec("A", SecretRef("s", 2, "k")), EnvSpec("B", SecretRef("t")))
    plan = _plan(env=env)
    data = json.loads(plan.to_json())
    assert data["format"] == 3
    assert data["env"] == [
        {"name": "A", "secret": {"name": "s", "version": 2, "key": "k"}},
        {"name": "B", "secret": {"name": "t", "version": None, "key": None}},
    ]
    assert data["env_directory"] == ENV_DIRECTORY
    read = Plan.from_json(plan.to_json())
    assert (read.env, read.env_directory) == (env, ENV_DIRECTORY)
    assert read.secrets() == plan.secrets()
    assert [str(s) for s in plan.secrets()] == ["s", "s@2", "t"]  # the variables' are read too


def test_a_plan_with_variables_only_needs_no_file() -> None:
    plan = _plan(files=(), env=(EnvSpec("A", SecretRef("s")),))
    assert Plan.from_json(plan.to_json()).files == ()
    with pytest.raises(PlanError, match="the plan names no file and no variable"):
        _plan(files=())


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"env": (EnvSpec("A", SecretRef("s")), EnvSpec("A", SecretRef("t")))},
            "variable 'A' is set twice; give each variable one source",
        ),
        (
            {"env": (EnvSpec("A", SecretRef("s")),), "env_directory": "env"},
            "env directory 'env' is not an absolute path",
        ),
    ],
)
def test_plan_variable_rules(kw: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError) as caught:
        _plan(**kw)
    assert str(caught.value) == message


def test_a_bad_variable_name_in_the_json_is_refused() -> None:
    data = json.loads(_plan(env=(EnvSpec("A", SecretRef("s")),)).to_json())
    data["env"][0]["name"] = "A-B"
    with pytest.raises(PlanError, match="'A-B' is not a portable environment variable name"):
        Plan.from_json(json.dumps(data))


def test_the_env_directory_travels_in_the_plan() -> None:
    plan = _plan(env=(EnvSpec("A", SecretRef("s")),), env_directory="/elsewhere")
    assert Plan.from_json(plan.to_json()).env_directory == "/elsewhere"
