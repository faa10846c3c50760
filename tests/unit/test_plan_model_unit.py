"""The plan's edges: every refusal's exact words, bounds, the JSON form and the fetch order.

test_plan.py covers parsing and round trips; these pin what a user reads and the limits.
"""

from __future__ import annotations

import json
import random

import pytest

from contract import FileSpec, Plan, PlanError, SecretRef, SecretVersion, check_file_name

DB = FileSpec("db", 0o400, secret=SecretRef("db"))


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
    assert refusal(Plan, (), "/s") == (
        "the plan names no file; add a secret-FILE or template-FILE annotation"
    )
    assert refusal(Plan, (DB, DB), "/s") == "file 'db' is written twice; give each file one source"
    assert refusal(Plan, (DB,), "/s", vault_id="12") == "vault id '12' is not 12 digits"
    assert refusal(Plan, (DB,), "s") == "directory 's' is not an absolute path"
    assert refusal(Plan, (DB,), "/s", mode="both") == "mode 'both' is neither 'broker' nor 'direct'"
    assert refusal(Plan, (DB,), "/s", uid=-1) == "uid -1 is not a non-negative whole number"
    assert refusal(Plan, (DB,), "/s", gid=-1) == "gid -1 is not a non-negative whole number"
    assert refusal(Plan, (DB,), "/s", gid=True) == "gid True is not a non-negative whole number"
    zero = Plan((DB,), "/s", uid=0, gid=0)
    assert (zero.uid, zero.gid) == (0, 0)


def test_the_fetch_order_is_by_name_then_latest_then_version() -> None:
    refs = [SecretRef("db", v) for v in range(1, 10)] + [SecretRef("db"), SecretRef("api", 2)]
    random.Random(7).shuffle(refs)
    files = tuple(FileSpec(f"f{i}", 0o400, secret=r) for i, r in enumerate(refs))
    assert Plan(files, "/s").secrets() == (
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
    data = json.loads(Plan((DB,), "/s").to_json())
    del data["mode"], data["files"][0]["template_refs"], data["uid"]
    plan = Plan.from_json(json.dumps(data))
    assert (plan.mode, plan.files[0].template_refs, plan.uid) == ("broker", (), None)


def test_json_refusals() -> None:
    assert refusal(Plan.from_json, "{") == (
        "the plan is not JSON (Expecting property name enclosed in double quotes at 1)"
    )
    assert refusal(Plan.from_json, "[]") == "the plan must be a JSON object"
    assert refusal(Plan.from_json, '{"format": 2}') == (
        "plan format 2 is not 1; run the init image that matches the injector"
    )
    assert refusal(Plan.from_json, "{}") == (
        "plan format None is not 1; run the init image that matches the injector"
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
    assert Plan(files, "/s").secrets() == tuple(r.fetch for r in refs)
