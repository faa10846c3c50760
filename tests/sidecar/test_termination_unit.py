"""The termination message: one line, capped, with every fetched value cut out.

test_sidecar_files.py and test_sidecar_entry_point.py check the report of real failed runs;
these pin the redaction rules: longest value first, the short-value threshold, the cap, and the
texts hidden for a JSON value.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sidecar import writer
from sidecar.errors import WriteFailed
from sidecar.termination import (
    MAX_LENGTH,
    MIN_REDACTED_LENGTH,
    PREFIX,
    one_line,
    report,
    secret_texts,
)


def test_the_line_has_the_prefix_and_one_space_between_words() -> None:
    assert PREFIX == "sakura-secrets-init: "
    assert one_line("  denied:\n\tno  grant \r\n") == "sakura-secrets-init: denied: no grant"


def test_a_longer_value_is_cut_out_before_a_shorter_one_inside_it() -> None:
    for secrets in (["pass", "password-1"], ["password-1", "pass"]):
        assert one_line("bad value password-1 and pass", secrets) == (
            "sakura-secrets-init: bad value <redacted> and <redacted>"
        )


def test_the_order_is_by_length_not_by_text() -> None:
    """ "bcdX" sorts after "abcdXYZ" as text; cut first, it would leave "a" and "YZ" showing."""
    assert one_line("got abcdXYZ", ["bcdX", "abcdXYZ"]) == "sakura-secrets-init: got <redacted>"


def test_values_shorter_than_the_threshold_are_left_in_the_text() -> None:
    assert MIN_REDACTED_LENGTH == 4
    assert one_line("key abc of abcd", ["abc"]) == "sakura-secrets-init: key abc of abcd"
    assert one_line("key abc of abcd", ["abcd"]) == "sakura-secrets-init: key abc of <redacted>"


def test_a_value_with_line_breaks_is_cut_out_of_the_collapsed_line() -> None:
    """The line's whitespace is collapsed first, so a PEM or multi-line value must be too."""
    pem = "-----BEGIN KEY-----\nMIIEvQIB\n  ADANBgkq\n-----END KEY-----\n"
    assert one_line(f"bad value {pem} here", [pem]) == (
        "sakura-secrets-init: bad value <redacted> here"
    )
    assert one_line("x ab  c y", [" ab\tc "]) == "sakura-secrets-init: x <redacted> y"
    assert one_line("x a b y", ["a \n b"]) == "sakura-secrets-init: x a b y"  # 3 characters


def test_the_line_is_capped_with_an_ellipsis() -> None:
    assert MAX_LENGTH == 1024
    fits = "x" * (MAX_LENGTH - len(PREFIX))
    assert one_line(fits) == PREFIX + fits
    capped = one_line(fits + "y")
    assert len(capped) == MAX_LENGTH
    assert capped == (PREFIX + fits)[: MAX_LENGTH - 3] + "..."


def test_the_value_is_cut_out_before_the_cap_so_no_prefix_of_it_remains() -> None:
    value = "s3cr3t-" + "v" * 2000
    line = one_line("x" * 1000 + value, [value])  # cut first, then capped
    assert "s3cr3t" not in line and "vvvv" not in line
    assert line == PREFIX + "x" * 1000 + "..."


def test_report_writes_the_line_to_the_file_and_stderr(tmp_path: Path) -> None:
    sink, err = tmp_path / "termination-log", io.StringIO()
    line = report("bad  value hunter22", path=str(sink), secrets=["hunter22"], stderr=err)
    assert line == "sakura-secrets-init: bad value <redacted>"
    assert sink.read_text(encoding="utf-8") == line + "\n"
    assert err.getvalue() == line + "\n"


def test_report_goes_to_stderr_when_the_file_cannot_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = report("failed: x", path=str(tmp_path / "missing" / "log"))
    assert line == "sakura-secrets-init: failed: x"
    assert capsys.readouterr().err == line + "\n"


def test_a_json_values_keys_are_hidden_too() -> None:
    value = '{"user": "admin-1", "password": "pa55word", "port": 5432, "tls": {"on": true, "v": 1}}'
    assert secret_texts([value, "plain-value"]) == {
        value,
        "plain-value",
        "admin-1",
        "pa55word",
        "5432",
        '{"on":true,"v":1}',
    }
    assert secret_texts(['{"name": "日本語"}']) == {'{"name": "日本語"}', "日本語"}
    assert secret_texts(['{"k": ["é"]}']) == {'{"k": ["é"]}', '["é"]'}


@pytest.mark.parametrize("value", ["not json", "[1, 2]", '"text"', "[" * 100_000, "12"])
def test_a_value_that_is_not_a_json_object_is_hidden_whole(value: str) -> None:
    assert secret_texts([value]) == {value}


def test_the_report_after_a_write_error_names_the_directory_not_the_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed write is reported with the fetched values cut out, on one line."""
    value = "db-password-" + "9" * 8
    files = [writer.FileContent("db", 0o400, value.encode())]
    with pytest.raises(WriteFailed) as caught:
        writer.switch(str(tmp_path / "gone"), files, uid=None, gid=None)
    line = report(caught.value.reason, path=str(tmp_path / "log"), secrets=secret_texts([value]))
    assert line.startswith("sakura-secrets-init: ")
    assert "gone" in line and value not in line
    assert capsys.readouterr().err == line + "\n"


def test_the_refresh_containers_lines_have_its_own_prefix(tmp_path: Path) -> None:
    from sidecar.termination import REFRESH_PREFIX

    assert REFRESH_PREFIX == "sakura-secrets-refresh: "
    assert one_line("denied:  x hunter22", ["hunter22"], "") == "denied: x <redacted>"
    capped = one_line("x" * 2000, prefix="")
    assert len(capped) == MAX_LENGTH and capped.endswith("x...")
    sink, err = tmp_path / "termination-log", io.StringIO()
    line = report("bad plan: no", path=str(sink), stderr=err, prefix=REFRESH_PREFIX)
    assert line == "sakura-secrets-refresh: bad plan: no"
    assert sink.read_text(encoding="utf-8") == line + "\n" == err.getvalue()
