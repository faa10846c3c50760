"""The env file the init container writes, read back the way the kubelet reads it.

The reader is support/kubelet_env_file.py, restated from kubernetes/kubernetes
pkg/kubelet/util/env/env_util.go `ParseEnv` as of v1.35 (kubernetes/kubernetes#134414, EnvFiles
beta: values in single quotes). Every value the format can hold must come back byte for byte;
every value it cannot hold must be refused before anything is written, naming the variable and
never the value.
"""

from __future__ import annotations

import random

import pytest
from support.kubelet_env_file import EnvFileError, parse_env, scan_lines

from contract import PlanError, SecretRef
from contract.env_file import (
    MAX_FILE_BYTES,
    MAX_LINE_BYTES,
    MAX_VARIABLE_BYTES,
    EnvSpec,
    check_env_name,
    encode,
    refusal,
)

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "\n"
    "-----END PRIVATE KEY-----\n"
)
HELD = {
    "EMPTY": "",
    "PLAIN": "s3cr3t",
    "SPACES": "  leading and trailing  ",
    "TABS": "\tx\t",
    "HASH": "#not a comment # either",
    "EQUALS": "a=b==c",
    "DOLLAR": "$HOME ${PATH} $(id) `id`",
    "QUOTES": 'say "hi" \\n \\\\',
    "BACKSLASH_END": "ends with \\",
    "UNICODE": "пароль 密码 🔑",
    "PEM": PEM,
    "NEWLINE_FIRST": "\nx",
    "NEWLINE_LAST": "x\n",
    "ONLY_NEWLINES": "\n\n\n",
    "COMMENT_LINE": "a\n# not a comment\n   indented",
    "LONE_CR": "a\rb",
    "CR_AT_END": "a\r",
    "JSON": '{"user": "app", "password": "p@ss"}',
}


def _file(variables: dict[str, str]) -> bytes:
    return encode(list(variables.items()))


def test_every_value_the_format_can_hold_reads_back_unchanged() -> None:
    data = _file(HELD)
    for name, value in HELD.items():
        assert parse_env(data, name) == value, name
    assert parse_env(data, "NOT_THERE") == ""


def test_random_values_without_the_refused_characters_read_back_unchanged() -> None:
    rng = random.Random(22)  # fixed: a failure reproduces
    alphabet = [chr(c) for c in range(1, 0x80) if chr(c) != "'"] + ["é", "€", "😀", "\u2028"]
    for _ in range(300):
        variables = {
            f"V{i}": "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
            for i in range(rng.randrange(1, 6))
        }
        variables = {k: v.replace("\r\n", "\n") for k, v in variables.items()}
        data = _file(variables)
        for name, value in variables.items():
            assert parse_env(data, name) == value


def test_the_file_is_one_single_quoted_line_per_variable() -> None:
    assert encode([("A", "x"), ("B_2", "")]) == b"A='x'\nB_2=''\n"
    assert encode([("PEM", "a\nb")]) == b"PEM='a\nb'\n"


def test_the_longest_line_the_reader_takes_is_written_and_one_more_byte_is_refused() -> None:
    name = "LONG"
    fits = "x" * (MAX_LINE_BYTES - len("LONG=''"))
    assert parse_env(encode([(name, fits)]), name) == fits
    over = fits + "x"
    assert refusal(name, over) == (
        f"has a line of {MAX_LINE_BYTES + 1} bytes, more than the {MAX_LINE_BYTES} the "
        "kubelet's env file reader takes"
    )
    with pytest.raises(EnvFileError, match="token too long"):
        scan_lines(f"{name}='{over}'\n".encode())  # what the kubelet would do with it


def test_a_multi_line_value_may_pass_one_line_s_limit_but_not_one_variable_s() -> None:
    line = "y" * 60_000
    value = "\n".join([line, line])  # 120 000 bytes: each line fits, and NAME=value does
    assert parse_env(encode([("BIG", value)]), "BIG") == value
    too_big = "\n".join([line, line, "y" * 20_000])
    assert refusal("BIG", too_big) == (
        f"makes NAME=value {len('BIG=') + len(too_big)} bytes, more than the "
        f"{MAX_VARIABLE_BYTES} Linux allows one environment variable"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            "it's",
            "contains a single quote ('), which the kubelet's env file cannot hold (values are "
            "written between single quotes, without escapes)",
        ),
        ("a\0b", "contains a NUL byte, which no environment variable can hold"),
        ("line\r\nline", "contains a CR LF line ending, whose CR the kubelet's reader drops"),
        ("\ud800", "is not valid UTF-8 text"),
    ],
)
def test_values_the_format_cannot_hold_are_refused_naming_no_value(value: str, reason: str) -> None:
    assert refusal("SECRET", value) == reason
    with pytest.raises(ValueError) as caught:
        encode([("OK", "fine"), ("SECRET", value)])
    assert str(caught.value) == f"variable SECRET: the value {reason}"


def test_why_they_are_refused_the_reader_would_change_or_reject_them() -> None:
    with pytest.raises(EnvFileError, match="unexpected content after closing quote"):
        parse_env(b"S='it's'\n", "S")
    assert parse_env(b"S='line\r\nline'\n", "S") == "line\nline"  # the CR is gone


def test_a_file_over_the_limit_is_refused() -> None:
    value = "z" * 60_000
    variables = [(f"V{i}", value) for i in range(MAX_FILE_BYTES // 60_000 + 1)]
    with pytest.raises(ValueError, match=r"the env file would have \d+ bytes, more than 1048576"):
        encode(variables)
    encode(variables[:-1])  # one less fits


def test_names_are_portable_shell_names() -> None:
    for name in ("A", "_", "db_password", "X9", "a" * 128):
        check_env_name(name)
    for name in ("", "9X", "MY-VAR", "A.B", "A=B", "A B", "É", "a" * 129):
        with pytest.raises(PlanError, match="is not a portable environment variable name"):
            check_env_name(name)


def test_the_reader_follows_the_kubelet_s_rules() -> None:
    """The rules of ParseEnv (v1.35) the restatement must keep, so the round trips mean
    something: comments, indentation, '=' spacing, quoting errors."""
    text = b"# comment\n\n   A='1'  # trailing comment\n\tB='2'\nC= 'ignored'\n"
    assert [parse_env(text, k) for k in "ABC"] == ["1", "2", ""]
    for bad, message in [
        (b"A\n", "missing '='"),
        (b"='x'\n", "empty variable name"),
        (b"A ='x'\n", "whitespace before '='"),
        (b"A=x\n", "must be enclosed in single quotes"),
        (b"A='x\n", "unclosed single quote"),
        (b"A='x' y\n", "unexpected content after closing quote"),
    ]:
        with pytest.raises(EnvFileError, match=message):
            parse_env(bad, "A")


def test_the_limits_are_inclusive() -> None:
    """Exactly at each limit is written; one byte more is refused (above)."""
    line = "y" * 60_000
    rest = MAX_VARIABLE_BYTES - len("BIG=") - 2 * (len(line) + 1)
    value = "\n".join([line, line, "y" * rest])
    assert len("BIG=") + len(value) == MAX_VARIABLE_BYTES
    assert refusal("BIG", value) is None
    filler = MAX_FILE_BYTES - 17 * len(b"Vnn='" + b"z" * 60_000 + b"'\n")
    variables = [(f"V{i:02}", "z" * 60_000) for i in range(17)]
    variables.append(("W", "z" * (filler - len("W=''\n"))))
    assert len(encode(variables)) == MAX_FILE_BYTES


def test_a_long_line_is_measured_whole_whatever_spaces_it_holds() -> None:
    value = "x" * 40_000 + " " + "x" * 40_000  # one line, over the reader's limit
    assert refusal("SPACED", value) is not None
    assert refusal("SPACED", value.replace(" ", "\n")) is None  # two lines fit


def test_an_env_spec_refuses_a_bad_name() -> None:
    with pytest.raises(PlanError, match="'A-B' is not a portable environment variable name"):
        EnvSpec("A-B", SecretRef("s"))
