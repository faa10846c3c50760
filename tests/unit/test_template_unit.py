"""Template analysis and rendering at exactly their bounds, and every refusal's whole message.

The analysis is what lets the webhook authorize a template's secrets at admission; the render
bounds are what end a runaway template in the init container with a reason. The deadline is
driven by a hand clock the test moves from inside the render (no wall-clock bound here).
"""

from __future__ import annotations

import json

import pytest
from jinja2.exceptions import SecurityError
from support.clock import HandClock

from contract import PlanError, SecretRef, SecretVersion
from contract.template import MAX_POWER_BITS, MAX_RENDERED_CHARS, render, template_refs

A = {SecretVersion("a"): "v"}


def _no_key(value: str, key: str, ref: SecretRef) -> str:
    raise AssertionError(f"no key expected, got {key!r} of {ref}")


def _render(source: str) -> str:
    return render(source, A, _no_key)


def _refusal(source: str) -> str:
    with pytest.raises(PlanError) as caught:
        template_refs(source)
    return str(caught.value)


def _render_refusal(source: str) -> str:
    with pytest.raises(SecurityError) as caught:
        _render(source)
    return str(caught.value)


# -- analysis: what is refused, and the whole message (what is wrong and how to fix it)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{{ secret(name) }}",
            'secret(...) takes one constant name, e.g. secret("db") or secret("db@2#user"); '
            "names computed at render time cannot be authorized at admission",
        ),
        (
            "{{ secret(1) }}",
            'secret(...) takes a string name in quotes, e.g. secret("db"), not secret(1)',
        ),
        (
            '{{ secret("a", *["b"]) }}',
            "secret(...) does not take *args or **kwargs; write the name, version= and key= "
            'out, e.g. secret("db", version=2, key="user")',
        ),
        (
            '{{ secret("a", **{"version": 2}) }}',
            "secret(...) does not take *args or **kwargs; write the name, version= and key= "
            'out, e.g. secret("db", version=2, key="user")',
        ),
        (
            '{{ secret("a", version="2") }}',
            "version= of secret('a') must be a whole number, e.g. version=2",
        ),
        # jinja's `true` is Python's True, an int: it is still not a version.
        (
            '{{ secret("a", version=true) }}',
            "version= of secret('a') must be a whole number, e.g. version=2",
        ),
        ('{{ secret("a", key=1) }}', "key= of secret('a') must be a string, e.g. key=\"user\""),
        (
            '{{ secret("a@1", version=2) }}',
            "secret('a@1') gives the version twice; give it once, in the name or as version=",
        ),
        (
            '{{ secret("a#k", key="j") }}',
            "secret('a#k') gives the key twice; give it once, in the name or as key=",
        ),
        (
            '{% set secret = "x" %}{{ secret("a") }}',
            "the template assigns to 'secret', which is reserved; rename it",
        ),
        (
            '{% macro m(secret) %}{% endmacro %}{{ secret("a") }}',
            "the template assigns to 'secret', which is reserved; rename it",
        ),
        (
            '{% macro secret(x) %}{% endmacro %}{{ secret("a") }}',
            "the template assigns to 'secret', which is reserved; rename it",
        ),
        (
            '{% set s = secret %}{{ s("other") }}{{ secret("a") }}',
            'secret must be called directly, e.g. secret("NAME"); passed around it would read '
            "secrets the injector cannot see at admission",
        ),
        ("plain text", 'the template reads no secret; call secret("NAME") at least once'),
        (
            '{{ env }}{{ secret("a") }}',
            "the template uses 'env', which is not defined; only secret(...) is",
        ),
        (
            '{{ secret("a") }}{{ ' + "(" * 400 + "1" + ")" * 400 + " }}",
            "the template nests too deeply to parse; simplify it",
        ),
    ],
)
def test_a_template_that_cannot_be_authorized_is_refused_naming_the_fix(
    source: str, message: str
) -> None:
    assert _refusal(source) == message


def test_a_constant_version_and_key_given_as_keywords_are_read() -> None:
    source = '{{ secret("a", version=2) }}{{ secret("b", key="k") }}{{ secret("c@1#x") }}'
    assert template_refs(source) == (
        SecretRef("a", 2),
        SecretRef("b", None, "k"),
        SecretRef("c", 1, "x"),
    )


def test_a_macros_parameters_and_name_are_the_templates_own() -> None:
    source = '{% macro m(x) %}[{{ x }}]{{ secret("b") }}{% endmacro %}{{ m(secret("a")) }}'
    assert template_refs(source) == (SecretRef("b"), SecretRef("a"))
    values = {SecretVersion("a"): "A", SecretVersion("b"): "B"}
    assert render(source, values, _no_key) == "[A]B"


# -- render: a key given as a keyword is extracted


def test_render_extracts_a_key_given_as_a_keyword() -> None:
    def extract(value: str, key: str, ref: SecretRef) -> str:
        assert ref == SecretRef("db", None, "user")
        return str(json.loads(value)[key])

    values = {SecretVersion("db"): '{"user": "u1"}'}
    assert render('{{ secret("db", key="user") }}', values, extract) == "u1"


# -- `**`: integers up to MAX_POWER_BITS bits (exponent times the base's bit length)


def test_powers_up_to_the_bit_bound_are_computed() -> None:
    assert MAX_POWER_BITS == 4096  # 2 has 2 bits: 2 ** 2048 is exactly at the bound
    assert _render("{{ 2 ** 2048 }}") == str(2**2048)
    assert _render("{{ (-2) ** 2048 }}") == str(2**2048)
    # A base of exactly 4096 bits (2 ** 4095, built without a power over the bound), once.
    assert _render("{{ (2 ** 2047 * 2 ** 2048) ** 1 }}") == str(2**4095)


POWER_REFUSAL = "a power (**) whose result would exceed 4096 bits is too large for a template"


def test_powers_past_the_bit_bound_are_refused_naming_the_bound_only() -> None:
    assert _render_refusal("{{ 2 ** 2049 }}") == POWER_REFUSAL
    assert _render_refusal("{{ (-2) ** 2049 }}") == POWER_REFUSAL
    # 4097 bits: even the first power of it is over the bound.
    assert _render_refusal("{{ (2 ** 2048 * 2 ** 2048) ** 1 }}") == POWER_REFUSAL


def test_a_bound_error_prints_no_number_computed_from_a_value() -> None:
    """Issue 15, case 10: `739200 ** 99999` in the message told anyone who may `get pods` the
    value (739201) of a secret. Neither operand, nor the value, nor the exponent is printed."""
    values = {SecretVersion("pin"): "739201"}
    for source in (
        '{{ (secret("pin") | int - 1) ** 99999 }}',
        '{{ 99999 ** (secret("pin") | int - 1) }}',
        '{{ "x" * (secret("pin") | int * 2 - 1) }}',
        '{{ (secret("pin") | int * 2 - 1) * [0] }}',
        '{{ secret("pin") * 999999 }}',
    ):
        with pytest.raises(SecurityError) as caught:
            render(source, values, _no_key)
        message = str(caught.value)
        assert message.endswith("is too large for a template"), message
        for number in ("739200", "739201", "99999", "1478401", "999999"):
            assert number not in message, (source, message)


def test_an_unsafe_attribute_named_by_a_value_is_refused_without_the_name() -> None:
    """jinja2 quotes the attribute; `|attr(...)` takes it from a value (here one that names a
    method that changes a dict)."""
    values = {SecretVersion("a"): "update"}
    with pytest.raises(SecurityError) as caught:
        render('{{ {} | attr(secret("a")) }}', values, _no_key)
    assert str(caught.value) == (
        "access to an unsafe attribute of a 'dict' object; names starting with '_' and methods "
        "that change data are blocked"
    )


def test_powers_that_cannot_grow_are_not_bounded() -> None:
    """0, 1 and -1 stay small whatever the exponent; a zero or negative exponent shrinks."""
    assert _render("{{ 1 ** 100000 }} {{ (-1) ** 100001 }} {{ 0 ** 100000 }}") == "1 -1 0"
    assert _render("{{ 7 ** 0 }}") == "1"


def test_float_powers_are_float_arithmetic_which_overflows_by_itself() -> None:
    assert _render("{{ 2.0 ** 3 }} {{ 4 ** 0.5 }}") == "8.0 2.0"
    with pytest.raises(OverflowError):
        _render("{{ 2 ** 5000.0 }}")


# -- `*`: a repetition up to MAX_RENDERED_CHARS items; numbers multiply freely


def test_a_repetition_of_exactly_the_output_bound_is_rendered() -> None:
    assert MAX_RENDERED_CHARS == 1 << 20
    assert _render('{{ "ab" * 524288 }}') == "ab" * 524288
    assert _render("{{ (524288 * [0]) | length }}") == "524288"


@pytest.mark.parametrize(
    "expression", ['"ab" * 524289', '524289 * "ab"', "[1, 2] * 524289", "(1, 2) * 524289"]
)
def test_a_repetition_past_the_output_bound_is_refused_naming_the_bound(expression: str) -> None:
    assert _render_refusal("{{ " + expression + " }}") == (
        "a repetition (*) longer than 1048576 items is too large for a template"
    )


def test_numbers_multiply_without_the_repetition_bound() -> None:
    assert _render("{{ 6 * 7 }} {{ 2 * 1.5 }} {{ 1048577 * 1048577 }}") == (
        f"42 3.0 {1048577 * 1048577}"
    )


# -- the rendered size: exactly MAX_RENDERED_CHARS is a file, one more is a runaway


def test_a_file_of_exactly_the_output_bound_is_rendered() -> None:
    out = _render('{{ "x" * 1048575 }}{{ secret("a") }}')
    assert len(out) == MAX_RENDERED_CHARS
    assert out.endswith("xv")


def test_a_file_one_character_past_the_output_bound_is_refused_naming_the_fix() -> None:
    assert _render_refusal('{{ "x" * 1048576 }}{{ secret("a") }}') == (
        "the rendered file would be larger than 1 MiB; check the template's loops"
    )


# -- the deadline, on a hand clock moved while a chunk renders


def _timed_render(spent: float, seconds: float = 300.0) -> str:
    """Renders two chunks; reading the key of the first takes `spent` seconds of the clock."""
    clock = HandClock()

    def extract(value: str, key: str, ref: SecretRef) -> str:
        clock.now += spent
        return value

    return render(
        '{{ secret("a#k") }}{% if true %}!{% endif %}', A, extract, seconds=seconds, clock=clock
    )


def test_a_render_taking_exactly_its_seconds_is_finished() -> None:
    assert _timed_render(spent=300.0) == "v!"


def test_a_render_past_its_seconds_is_stopped_naming_the_fix() -> None:
    with pytest.raises(SecurityError) as caught:
        _timed_render(spent=300.5, seconds=300.0)
    assert str(caught.value) == (
        "the template ran for more than 300s; check its loops (nested loops over long values "
        "multiply)"
    )


def test_a_macro_that_calls_itself_is_stopped_with_a_reason() -> None:
    source = '{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}{{ secret("a") }}'
    assert template_refs(source) == (SecretRef("a"),)
    assert _render_refusal(source) == (
        "the template recurses too deeply to render; check for a macro that calls itself"
    )
