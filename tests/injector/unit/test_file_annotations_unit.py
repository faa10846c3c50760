"""Issue 23 at admission: `encoding-FILE`, `file-name-FILE`, and the filters and tests a
template uses, word for word (the message is the whole interface of a denial)."""

from __future__ import annotations

import pytest
from support.admission_harness import P, settings

from contract import FileSpec, SecretRef
from injector.webhook.annotations import parse_annotations
from injector.webhook.errors import Denied
from injector.webhook.pod.ownership import Owner

BASE = {P + "secret-db": "db", P + "vault-id": "110000000001"}
DOCS = "are listed in docs/annotations.md (Templates)"


def denial(extra: dict[str, str]) -> str:
    with pytest.raises(Denied) as caught:
        parse_annotations({**BASE, **extra}, settings())
    return str(caught.value)


def files(extra: dict[str, str]) -> tuple[FileSpec, ...]:
    return parse_annotations({**BASE, **extra}, settings()).files


def test_a_binary_file_and_chosen_names_reach_the_plan() -> None:
    got = files(
        {
            P + "secret-jks": "keystore#jks",
            P + "encoding-jks": " Base64 ",
            P + "file-name-jks": "app.jks",
            P + "secret-pgpass": "pgpass",
            P + "file-name-pgpass": " .pgpass ",
            P + "file-mode-pgpass": "0600",
        }
    )
    assert got == (
        FileSpec(".pgpass", 0o600, secret=SecretRef("pgpass")),
        FileSpec("app.jks", 0o400, secret=SecretRef("keystore", key="jks"), encoding="base64"),
        FileSpec("db", 0o400, secret=SecretRef("db")),
    )


def test_a_chosen_name_keeps_the_mode_its_key_sets_when_the_owner_is_unknown() -> None:
    injection = parse_annotations(
        {**BASE, P + "file-name-db": ".pgpass", P + "file-mode-db": "0600", P + "secret-b": "b"},
        settings(),
    )
    assert injection.options.explicit_modes == {".pgpass"}
    plan = injection.plan(Owner(uid=1000, gid=1000, file_mode=0o444))
    assert [(f.name, f.mode) for f in plan.files] == [(".pgpass", 0o600), ("b", 0o444)]


def test_a_chosen_name_as_long_as_the_file_system_allows() -> None:
    long = "credentials-of-the-reporting-service-in-the-staging-cluster." * 4 + "json"
    assert len(long) > 200
    assert files({P + "file-name-db": long})[0].name == long


def test_an_encoding_for_no_file() -> None:
    assert denial({P + "encoding-ks": "base64", P + "secret-a": "a"}) == (
        f"annotation {P}encoding-ks decodes the file secret-ks would write, but no secret-FILE "
        "annotation writes 'ks'; files: a, db"
    )


def test_an_encoding_of_a_template() -> None:
    assert denial({P + "template-t": '{{ secret("db") }}', P + "encoding-t": "base64"}) == (
        f"annotation {P}encoding-t: file 't' is written by {P}template-t, and a template writes "
        'text; decode inside it with {{ secret("NAME") | b64decode }} (text only), or write the '
        f"binary value with {P}secret-t"
    )


@pytest.mark.parametrize("value", ["hex", "", "base-64", "b64"])
def test_an_unknown_encoding(value: str) -> None:
    assert denial({P + "encoding-db": value}) == (
        f"annotation {P}encoding-db: {value!r} is not an encoding; write base64 (the secret's "
        "value is then decoded into the file)"
    )


def test_a_chosen_name_for_no_file() -> None:
    assert denial({P + "file-name-pg": ".pgpass", P + "secret-a": "a"}) == (
        f"annotation {P}file-name-pg names the file secret-pg or template-pg would write, but "
        "no such annotation writes 'pg'; files: a, db"
    )


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("", "is empty; write a file name such as .pgpass"),
        ("  ", "is empty; write a file name such as .pgpass"),
        (".", "is a directory, not a file name; write a file name such as .pgpass"),
        ("..", "is a directory, not a file name; write a file name such as .pgpass"),
        ("../etc/passwd", "contains '/' or NUL; write one file name, not a path"),
        ("a/b", "contains '/' or NUL; write one file name, not a path"),
        ("a\0b", "contains '/' or NUL; write one file name, not a path"),
        (
            "a\nb",
            "contains a control character, a line break or surrounding whitespace; write a "
            "name that shows as it is",
        ),
        (
            "..data",
            "starts with '..', which the injector keeps for its own entries; start it otherwise",
        ),
        (
            "..pgpass",
            "starts with '..', which the injector keeps for its own entries; start it otherwise",
        ),
        (
            ".sakura-secrets.json",
            "is the injector's record of the loaded versions; choose another name",
        ),
        ("é" * 128, "has 256 bytes, more than the 255 a file name may have; shorten it"),
    ],
)
def test_a_chosen_name_that_is_not_one_plain_file(value: str, what: str) -> None:
    assert denial({P + "file-name-db": value}) == (
        f"annotation {P}file-name-db: file name {value.strip()!r} {what}"
    )


def test_two_chosen_names_collide() -> None:
    extra = {P + "secret-a": "a", P + "file-name-a": ".env", P + "file-name-db": ".env"}
    assert denial(extra) == (
        f"annotations {P}file-name-a and {P}file-name-db both write file '.env'; give each "
        "file its own name (a file-name-FILE annotation names it freely)"
    )


def test_a_chosen_name_collides_with_a_file_of_its_key() -> None:
    extra = {P + "template-b": '{{ secret("b") }}', P + "file-name-a": "b", P + "secret-a": "a"}
    assert denial(extra) == (
        f"annotations {P}file-name-a and {P}template-b both write file 'b'; give each file its "
        "own name (a file-name-FILE annotation names it freely)"
    )
    assert denial({**extra, P + "file-name-a": "db"}) == (
        f"annotations {P}file-name-a and {P}secret-db both write file 'db'; give each file its "
        "own name (a file-name-FILE annotation names it freely)"
    )


def test_swapped_names_do_not_collide() -> None:
    extra = {P + "secret-a": "a", P + "file-name-a": "db", P + "file-name-db": "a"}
    assert [(f.name, f.secret) for f in files(extra)] == [
        ("a", SecretRef("db")),
        ("db", SecretRef("a")),
    ]


@pytest.mark.parametrize("prefix", ["encoding-", "file-name-"])
def test_the_new_keys_obey_the_key_limits(prefix: str) -> None:
    file = "f" * (64 - len(prefix))
    assert denial({P + "secret-f": "f", P + prefix + file: "base64"}) == (
        f"annotation {P}{prefix}{file}: FILE {file!r} has {len(file)} characters, more than the "
        f"{len(file) - 1} a {prefix}FILE annotation allows (Kubernetes allows at most 63 "
        "characters after the '/' of an annotation key); shorten the file name"
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            '{{ secret("db") | b64decod }}',
            f"the filter 'b64decod', which is not a known filter; did you mean 'b64decode'? the "
            f"filters a template may use {DOCS}",
        ),
        (
            '{% filter uper %}{{ secret("db") }}{% endfilter %}',
            f"the filter 'uper', which is not a known filter; did you mean 'upper'? the filters "
            f"a template may use {DOCS}",
        ),
        (
            '{{ secret("db") | quux }}',
            "the filter 'quux', which is not a known filter; the filters a template may use "
            + DOCS,
        ),
        (
            '{% if secret("db") is numbr %}x{% endif %}',
            f"the test 'numbr', which is not a known test; did you mean 'number'? the tests a "
            f"template may use {DOCS}",
        ),
        (
            '{{ [secret("db")] | map("uppr") | join }}',
            f"the filter 'uppr', which is not a known filter; did you mean 'upper'? the filters a "
            f"template may use {DOCS}",
        ),
        (
            '{{ [secret("db")] | select("od") | join }}',
            f"the test 'od', which is not a known test; did you mean 'odd'? the tests a template "
            f"may use {DOCS}",
        ),
        (
            '{{ secret("db") | nope }}{{ secret("db") | trim }}',
            "the filter 'nope', which is not a known filter; the filters a template may use "
            + DOCS,
        ),
        (
            '{{ [secret("db")] | rejectattr("a", "eqlto", 1) | join }}',
            f"the test 'eqlto', which is not a known test; did you mean 'equalto'? the tests a "
            f"template may use {DOCS}",
        ),
    ],
)
def test_an_unknown_filter_or_test_is_denied_with_the_closest_name(
    template: str, message: str
) -> None:
    assert denial({P + "template-t": template}) == (
        f"annotation {P}template-t: the template uses {message}"
    )


@pytest.mark.parametrize(
    "template",
    [
        '{{ secret("db") | b64decode }}{{ secret("db") | b64encode | trim }}',
        '{{ [secret("db")] | map("upper") | select("string") | join }}',
        '{{ [secret("db")] | selectattr("a", "equalto", 1) | map(attribute="a") | join }}',
        '{{ secret("db") | replace("a", "b") | center(80) }}',
        '{% set f = "upper" %}{{ [secret("db")] | map(f) | select(1) | join }}',
        '{% if secret("db") is defined and secret("db") is not none %}x{% endif %}',
    ],
)
def test_known_filters_and_tests_pass(template: str) -> None:
    assert files({P + "template-t": template})[1].template == template
