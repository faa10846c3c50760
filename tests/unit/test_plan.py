"""The plan is the contract between webhook and init container: parse, validate, round-trip."""

import re

import pytest

from contract import (
    Direct,
    FileSpec,
    Plan,
    PlanError,
    SecretRef,
    SecretVersion,
)
from contract.template import render, template_refs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("db", SecretRef("db")),
        ("db@3", SecretRef("db", 3)),
        ("db#user", SecretRef("db", None, "user")),
        ("db@3#user", SecretRef("db", 3, "user")),
        ("my.secret-name_1", SecretRef("my.secret-name_1")),
    ],
)
def test_secret_ref_parses_every_form(text: str, expected: SecretRef) -> None:
    assert SecretRef.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("db@", "not a whole number"),
        ("db@0", "not a whole number"),
        ("db@x", "not a whole number"),
        ("db@-1", "not a whole number"),
        ("db@\u00b2", "not a whole number"),  # str.isdigit() is true for superscript two
        ("db@\u0663", "not a whole number"),  # and for Arabic-Indic three
        ("db#", "key of secret 'db' is empty"),
        ("", "not a secret reference"),
        ("x" * 256, "1 to 255 characters"),
    ],
)
def test_secret_ref_rejects_bad_input_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        SecretRef.parse(text)


def _plan(**kw: object) -> Plan:
    files = (
        FileSpec("db-user", 0o400, secret=SecretRef("db", None, "user")),
        FileSpec("db-pass", 0o440, secret=SecretRef("db", None, "pass")),
        FileSpec("api", 0o400, secret=SecretRef("api", 2)),
        FileSpec(
            "dsn",
            0o400,
            template='{{ secret("db#user") }}:{{ secret("pw", version=1) }}',
            template_refs=(SecretRef("db", None, "user"), SecretRef("pw", 1)),
        ),
    )
    args: dict[str, object] = {
        "files": files,
        "directory": "/sakura/secrets",
        "vault_id": "123456789012",
        "uid": 1000,
        "gid": 2000,
    }
    args.update(kw)
    return Plan(**args)  # type: ignore[arg-type]


def test_plan_round_trips_through_json() -> None:
    plan = _plan(vault_id="123456789012", uid=1000, gid=2000, mode=Direct("creds"))
    assert Plan.from_json(plan.to_json()) == plan


def test_plan_lists_each_value_to_fetch_once_in_a_stable_order() -> None:
    assert _plan().secrets() == (
        SecretVersion("api", 2),
        SecretVersion("db"),
        SecretVersion("pw", 1),
    )


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"vault_id": "12"}, "not 12 digits"),
        ({"directory": "relative"}, "not an absolute path"),
        ({"uid": -1}, "uid -1"),
        ({"files": ()}, "names no file"),
        (
            {
                "files": (
                    FileSpec("a", 0o400, secret=SecretRef("x")),
                    FileSpec("a", 0o400, secret=SecretRef("y")),
                )
            },
            "written twice",
        ),
    ],
)
def test_plan_rejects_invalid_values(kw: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        _plan(**kw)


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", "..data", ".sakura-secrets.json"])
def test_file_names_must_be_plain(name: str) -> None:
    with pytest.raises(PlanError, match=f"^file name {re.escape(repr(name))} "):
        FileSpec(name, 0o400, secret=SecretRef("x"))


@pytest.mark.parametrize("name", [".pgpass", "-x", "a b", "credentials.json", "é" * 127 + "x"])
def test_a_plan_file_may_have_a_chosen_name(name: str) -> None:
    """Names a `file-name-FILE` annotation gives, which no annotation key could spell."""
    assert FileSpec(name, 0o400, secret=SecretRef("x")).name == name


def test_only_a_secrets_value_is_decoded_and_only_from_base64() -> None:
    with pytest.raises(PlanError) as caught:
        FileSpec("a", 0o400, secret=SecretRef("x"), encoding="hex")
    assert str(caught.value) == "encoding 'hex' of file 'a' is not base64"
    with pytest.raises(PlanError) as caught:
        FileSpec("a", 0o400, template='{{ secret("x") }}', encoding="base64")
    assert str(caught.value) == (
        "file 'a' is a template, which writes text; only a secret's value can be decoded"
    )


@pytest.mark.parametrize(
    "text",
    ["", "[]", '{"format": 99, "files": [], "directory": "/x"}', '{"format": 1}', "nope"],
)
def test_a_malformed_plan_is_refused_with_a_plan_error(text: str) -> None:
    with pytest.raises(PlanError):
        Plan.from_json(text)


def test_template_refs_are_found_without_rendering() -> None:
    source = (
        '{% set sep = ":" %}{{ secret("db#user") }}{{ sep }}{{ secret("db", key="pass") }}'
        '@{{ secret("host@2") }}{{ secret("db#user") }}'
    )
    assert template_refs(source) == (
        SecretRef("db", None, "user"),
        SecretRef("db", None, "pass"),
        SecretRef("host", 2),
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ secret(name) }}", "one constant name"),
        ('{{ secret("a", other=1) }}', "only constant version= and key="),
        ('{{ secret("a@1", version=2) }}', "version twice"),
        ('{{ env }}{{ secret("a") }}', "'env', which is not defined"),
        ("plain text", "reads no secret"),
        ('{% set s = secret %}{{ s("other") }}{{ secret("a") }}', "must be called directly"),
        ('{{ secret.__call__("other") }}{{ secret("a") }}', "must be called directly"),
        ('{% set secret = "x" %}{{ secret("a") }}', "'secret', which is reserved"),
        ('{{ secret("a") }}{{ ' + "(" * 400 + "1" + ")" * 400 + " }}", "nests too deeply"),
        ('{{ secret("a") }', "does not parse"),
    ],
)
def test_templates_that_cannot_be_authorized_are_refused(source: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        template_refs(source)


def test_render_uses_fetched_values_and_the_key_extractor() -> None:
    values = {SecretVersion("db"): '{"user": "u1"}', SecretVersion("host", 2): "h2"}

    def extract(value: str, key: str, ref: SecretRef) -> str:
        import json

        return str(json.loads(value)[key])

    out = render('{{ secret("db#user") }}@{{ secret("host", version=2) }}\n', values, extract)
    assert out == "u1@h2\n"


def test_render_is_sandboxed() -> None:
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        render('{{ secret("a").__class__.__mro__ }}', {SecretVersion("a"): "v"}, lambda *a: "")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # Jinja folds constants while compiling: 7 ** 99999999999 would take hours there.
        ("{{ 10 ** 1000000 > 1 }}{{ secret('a') }}", "too large"),
        ('{{ secret("a") * 100000000 }}', "too large"),
        ('{{ [secret("a")] * 100000000 }}', "too large"),
        # Small pieces, but the file grows past the bound.
        ('{% for c in "abcdefghij" * 200 %}{{ "x" * 1000 }}{% endfor %}{{ secret("a") }}', "MiB"),
    ],
)
def test_render_refuses_output_and_arithmetic_past_its_bounds(source: str, message: str) -> None:
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError, match=message):
        render(source, {SecretVersion("a"): "v"}, lambda *a: "")


def test_render_stops_a_template_that_runs_too_long() -> None:
    """Nested loops over a literal run for days: the time bound ends them with a reason."""
    import time

    from jinja2.exceptions import SecurityError

    literal = "x" * 1000
    source = "".join(f"{{% for {v} in '{literal}' %}}" for v in "abcd") + "{% endfor %}" * 4
    started = time.monotonic()
    with pytest.raises(SecurityError, match=r"ran for more than 0\.5s"):
        render(source + '{{ secret("a") }}', {SecretVersion("a"): "v"}, lambda *a: "", seconds=0.5)
    assert time.monotonic() - started < 10  # 0.5 s, plus slack for a busy machine


def test_render_bounds_leave_ordinary_templates_alone() -> None:
    source = '{% for c in "abc" %}{{ c * 3 }}{% endfor %} {{ 2 ** 64 }} {{ secret("a") * 2 }}'
    assert (
        render(source, {SecretVersion("a"): "v"}, lambda *a: "")
        == "aaabbbccc 18446744073709551616 vv"
    )
