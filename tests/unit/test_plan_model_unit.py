"""The plan's edges: every refusal's exact words, bounds, the JSON form and the fetch order.

test_plan.py covers parsing and round trips; these pin what a user reads and the limits.
"""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from contract import (
    Broker,
    Direct,
    FileSpec,
    Plan,
    PlanError,
    SecretRef,
    SecretVersion,
    check_file_name,
)

DB = FileSpec("db", 0o400, secret=SecretRef("db"))
OWNED = {"vault_id": "110000000001", "uid": 1, "gid": 2}
"""The fields every plan has, for the tests about the others."""


def plan(*args: object, **kwargs: object) -> Plan:
    return Plan(*args, **{**OWNED, **kwargs})  # type: ignore[arg-type]


def refusal(make: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(PlanError) as caught:
        make(*args, **kwargs)  # type: ignore[operator]
    return str(caught.value)


def test_secret_name_rules() -> None:
    assert SecretRef("x" * 255).name == "x" * 255
    assert refusal(SecretRef, "x" * 256) == (
        f"secret name {'x' * 256!r} must be 1 to 255 characters without surrounding spaces"
    )
    assert refusal(SecretRef, " db") == (
        "secret name ' db' must be 1 to 255 characters without surrounding spaces"
    )
    assert refusal(SecretRef, "") == (
        "secret name '' must be 1 to 255 characters without surrounding spaces"
    )
    for bad in ("a@b", "a#b", "a\nb", "a\rb", "a\tb"):
        assert refusal(SecretRef, bad) == (
            f"secret name {bad!r} must not contain '@', '#' or whitespace"
        )
    assert SecretRef("XX-key").name == "XX-key"


def test_version_and_key_rules() -> None:
    for version in (0, -1, True, False):
        assert refusal(SecretRef, "db", version) == (
            "version of secret 'db' must be a whole number >= 1"
        )
    assert SecretRef("db", 1).version == 1
    assert refusal(SecretRef, "db", None, "") == (
        "key of secret 'db' is empty; drop the '#' or name a key"
    )


def test_reference_parse_refusals() -> None:
    assert refusal(SecretRef.parse, "@3") == (
        "'@3' is not a secret reference; write NAME, NAME@VERSION, NAME#KEY or NAME@VERSION#KEY"
    )
    assert refusal(SecretRef.parse, "db@x") == (
        "version 'x' in 'db@x' is not a whole number >= 1; write NAME@3, or NAME for the latest "
        "version"
    )


def test_secret_version_text() -> None:
    assert str(SecretVersion("db")) == "db"
    assert str(SecretVersion("db", 3)) == "db@3"
    assert str(SecretRef("db", 3, "k")) == "db@3#k"


def test_file_rules() -> None:
    assert FileSpec("a", 0, secret=SecretRef("db")).mode == 0
    assert FileSpec("a", 0o777, secret=SecretRef("db")).mode == 0o777
    assert refusal(FileSpec, "a", 0o1000, secret=SecretRef("db")) == (
        "mode 1000 of file 'a' is not between 0 and 0777"
    )
    assert refusal(FileSpec, "a", -1, secret=SecretRef("db")) == (
        "mode -1 of file 'a' is not between 0 and 0777"
    )
    assert refusal(FileSpec, "a", 0o400) == ("file 'a' needs exactly one of a secret or a template")
    assert refusal(FileSpec, "a", 0o400, secret=SecretRef("db"), template="{{ x }}") == (
        "file 'a' needs exactly one of a secret or a template"
    )


@pytest.mark.parametrize("name", [".", "..", ".hidden", "-x", "a/b", "", "x" * 254])
def test_file_names_must_be_plain(name: str) -> None:
    assert refusal(check_file_name, name) == (
        f"file name {name!r} is not a plain file name; use letters, digits, '.', '_' and '-' "
        "(not starting with '.' or '-', no '/')"
    )


def test_plan_rules() -> None:
    assert refusal(plan, (), "/s") == (
        "the plan names no file and no variable; add a secret-FILE, template-FILE "
        "or env-VAR annotation"
    )
    assert refusal(plan, (DB, DB), "/s") == "file 'db' is written twice; give each file one source"
    assert refusal(plan, (DB,), "/s", vault_id="12") == "vault id '12' is not 12 digits"
    assert refusal(plan, (DB,), "s") == "directory 's' is not an absolute path"
    assert refusal(plan, (DB,), "/s", mode="both") == "mode 'both' is neither 'broker' nor 'direct'"
    assert refusal(plan, (DB,), "/s", uid=-1) == "uid -1 is not a non-negative whole number"
    assert refusal(plan, (DB,), "/s", gid=-1) == "gid -1 is not a non-negative whole number"
    assert refusal(plan, (DB,), "/s", gid=True) == "gid True is not a non-negative whole number"
    zero = plan((DB,), "/s", uid=0, gid=0)
    assert (zero.uid, zero.gid) == (0, 0)


def test_a_trailing_newline_is_no_part_of_a_valid_name() -> None:
    """`$` also matches before a final newline: each rule must reach the string's very end."""
    assert refusal(plan, (DB,), "/s", vault_id="110000000001\n") == (
        "vault id '110000000001\\n' is not 12 digits"
    )
    with pytest.raises(PlanError):
        SecretRef("db\n")
    with pytest.raises(PlanError):
        check_file_name("db\n")
    with pytest.raises(PlanError):
        Direct("sakura-creds\n")


def test_the_fetch_order_is_by_name_then_latest_then_version() -> None:
    refs = [SecretRef("db", v) for v in range(1, 10)] + [SecretRef("db"), SecretRef("api", 2)]
    random.Random(7).shuffle(refs)
    files = tuple(FileSpec(f"f{i}", 0o400, secret=r) for i, r in enumerate(refs))
    assert plan(files, "/s").secrets() == (
        SecretVersion("api", 2),
        SecretVersion("db"),
        *(SecretVersion("db", v) for v in range(1, 10)),
    )


def test_the_json_form_is_compact_and_sorted() -> None:
    plan = Plan((DB,), "/s", vault_id="110000000001", uid=1, gid=2)
    assert plan.to_json() == (
        '{"directory":"/s","files":[{"mode":256,"name":"db","secret":{"key":null,"name":"db",'
        '"version":null},"template":null,"template_refs":[]}],"format":1,"gid":2,"mode":"broker",'
        '"uid":1,"vault_id":"110000000001"}'
    )


def test_optional_json_fields_take_their_defaults() -> None:
    data = json.loads(plan((DB,), "/s").to_json())
    del data["mode"], data["files"][0]["template_refs"]
    read = Plan.from_json(json.dumps(data))
    assert (read.mode, read.files[0].template_refs) == (Broker(), ())


def test_json_refusals() -> None:
    assert refusal(Plan.from_json, "{") == (
        "the plan is not JSON (Expecting property name enclosed in double quotes at 1)"
    )
    assert refusal(Plan.from_json, "[]") == "the plan must be a JSON object"
    assert refusal(Plan.from_json, '{"format": 4}') == (
        "plan format 4 is not 1, 2 or 3; run the init image that matches the injector"
    )
    assert refusal(Plan.from_json, "{}") == (
        "plan format None is not 1, 2 or 3; run the init image that matches the injector"
    )
    assert refusal(Plan.from_json, '{"format": 1}') == "the plan is malformed: KeyError('files')"
    bad_file = '{"format": 1, "directory": "/s", "files": [{"name": "a", "mode": 1}]}'
    assert refusal(Plan.from_json, bad_file) == (
        "file 'a' needs exactly one of a secret or a template"
    )


def test_the_latest_comes_before_version_1_of_every_name() -> None:
    """One name's latest and version 1 could tie by luck of set order; fifty names cannot."""
    refs = [SecretRef(f"s{i:02}", v) for i in range(50) for v in (None, 1)]
    files = tuple(FileSpec(f"f{i}", 0o400, secret=r) for i, r in enumerate(refs))
    assert plan(files, "/s").secrets() == tuple(r.fetch for r in refs)


def test_a_plan_is_complete_when_built() -> None:
    """Owner and vault are required: no plan exists whose owner is still to be resolved."""
    for missing in ("vault_id", "uid", "gid"):
        fields = {k: v for k, v in OWNED.items() if k != missing}
        with pytest.raises(TypeError, match=f"missing 1 required keyword-only argument|{missing}"):
            Plan((DB,), "/s", **fields)  # type: ignore[arg-type]
    assert refusal(plan, (DB,), "/s", vault_id=None) == "vault id None is not 12 digits"
    assert refusal(plan, (DB,), "/s", uid=None) == "uid None is not a non-negative whole number"
    assert refusal(plan, (DB,), "/s", gid="7") == "gid '7' is not a non-negative whole number"
    assert plan((DB,), "/s").mode == Broker()


def test_direct_mode_names_a_valid_secret() -> None:
    assert Direct("a" * 253).credentials_secret == "a" * 253
    assert Direct("sakura.creds-1").credentials_secret == "sakura.creds-1"
    for bad in ("", "a" * 254, "Creds", "creds-", "-creds", "a b", "a_b", "a..b"):
        assert refusal(Direct, bad) == (
            f"credentials Secret {bad!r} is not a Secret name; use lowercase letters, digits, "
            "'-' and '.' (at most 253 characters)"
        )
    assert refusal(Direct, None).startswith("credentials Secret None is not a Secret name")
    assert (Broker.name, Direct.name) == ("broker", "direct")


def test_the_json_form_of_direct_mode_names_the_credentials_secret() -> None:
    direct = plan((DB,), "/s", mode=Direct("creds"))
    data = json.loads(direct.to_json())
    assert (data["mode"], data["credentials_secret"]) == ("direct", "creds")
    assert Plan.from_json(direct.to_json()) == direct
    assert "credentials_secret" not in json.loads(plan((DB,), "/s").to_json())


def test_json_refusals_of_the_mode_and_the_owner() -> None:
    data = json.loads(plan((DB,), "/s").to_json())
    for field in ("vault_id", "uid", "gid"):
        partial = {k: v for k, v in data.items() if k != field}
        assert refusal(Plan.from_json, json.dumps(partial)) == (
            f"the plan is malformed: KeyError({field!r})"
        )
    assert refusal(Plan.from_json, json.dumps({**data, "mode": "both"})) == (
        "mode 'both' is neither 'broker' nor 'direct'"
    )
    assert refusal(Plan.from_json, json.dumps({**data, "mode": "direct"})) == (
        "the plan is malformed: KeyError('credentials_secret')"
    )
    explicit = Plan.from_json(json.dumps({**data, "mode": "broker", "credentials_secret": "x"}))
    assert explicit.mode == Broker()


def test_a_plans_json_and_secrets_are_made_once_and_stay_its_own() -> None:
    """Admission reads both twice (a check, then the init container's environment)."""
    first = plan((DB,), "/s")
    assert first.to_json() is first.to_json()
    assert first.secrets() is first.secrets()
    other = dataclasses.replace(first, files=(FileSpec("api", 0o400, secret=SecretRef("api")),))
    assert json.loads(other.to_json())["files"][0]["name"] == "api"
    assert other.secrets() == (SecretVersion("api"),)
    assert (first.secrets(), json.loads(first.to_json())["files"][0]["name"]) == (
        (SecretVersion("db"),),
        "db",
    )
    assert first == plan((DB,), "/s") and "_json" not in repr(first)  # fields only
