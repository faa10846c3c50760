"""Reading Sakura's bodies (sakura/wire.py) and the errors' own fields (sakura/errors.py).

The client's tests reach these through whole calls; these pin the edges: each key of an error
envelope in its order, the text a non-JSON answer gives, the scrubbing and its bound.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sakura import (
    BadResponse,
    Crowded,
    NotFound,
    Rejected,
    SakuraConfigError,
    SakuraError,
    Throttled,
    Unauthorized,
    Unavailable,
)
from sakura.wire import MAX_ERROR_TEXT, error_text, field_of, json_object, scrub


def body(status: int, content: bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.Response(status, content=content, headers={"content-type": content_type})


@pytest.mark.parametrize(
    "content", [b"not json", b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000, b""]
)
def test_a_body_that_is_not_json_is_a_bad_response(content: bytes) -> None:
    with pytest.raises(BadResponse) as caught:
        json_object(body(502, content), "listing vaults")
    assert str(caught.value) == (
        "listing vaults: Sakura answered HTTP 502 with a body that is not JSON"
    )
    assert caught.value.status == 502
    assert caught.value.__suppress_context__


@pytest.mark.parametrize("content", [b"[]", b'"text"', b"3", b"null"])
def test_json_that_is_not_an_object_is_a_bad_response(content: bytes) -> None:
    with pytest.raises(BadResponse) as caught:
        json_object(body(201, content), "creating")
    assert str(caught.value) == "creating: Sakura answered HTTP 201 with JSON that is not an object"
    assert caught.value.status == 201


def test_an_object_is_returned_as_it_is() -> None:
    assert json_object(body(200, b'{"a": [1, {"b": null}]}'), "x") == {"a": [1, {"b": None}]}


@pytest.mark.parametrize(
    ("value", "kind", "ok"),
    [
        (3, int, True),
        (True, int, False),
        (False, int, False),
        ("3", int, False),
        (None, str, False),
        ("", str, True),
        ([], list, True),
        (7, (str, int), True),
        ("7", (str, int), True),
        (True, (str, int), False),
        (7.5, (str, int), False),
    ],
)
def test_field_of_checks_the_kind_and_never_takes_a_bool_for_a_number(
    value: Any, kind: type | tuple[type, ...], ok: bool
) -> None:
    data = {"Key": value}
    if ok:
        assert field_of(data, "Key", kind, "w", 200) is value
        return
    with pytest.raises(BadResponse) as caught:
        field_of(data, "Key", kind, "w", 207)
    names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
    assert str(caught.value) == f"w: Sakura's answer has no {names} field 'Key'"
    assert caught.value.status == 207


def test_field_of_a_missing_key() -> None:
    with pytest.raises(BadResponse, match=r"^w: Sakura's answer has no str or int field 'ID'$"):
        field_of({}, "ID", (str, int), "w", 200)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"error": "e", "error_msg": "m", "message": "g", "error_code": "c"}, "e"),
        ({"error_msg": "m", "message": "g", "error_code": "c"}, "m"),
        ({"message": "g", "error_code": "c"}, "g"),
        ({"error_code": "c"}, "c"),
        ({"error_code": 42}, "42"),
        ({"error": "  ", "error_msg": "m"}, "m"),
        ({"error": None, "error_msg": ["x"], "message": {"a": 1}, "error_code": "c"}, "c"),
        ({"error": 0}, "0"),
        ({"other": "x"}, ""),
    ],
)
def test_error_text_takes_the_first_envelope_key_with_text(data: Any, text: str) -> None:
    import json

    assert error_text(body(400, json.dumps(data).encode()), []) == text


def test_error_text_of_a_plain_text_answer_and_of_other_bodies() -> None:
    assert error_text(body(502, b"Bad  Gateway\n", "text/plain; charset=utf-8"), []) == (
        "Bad Gateway"
    )
    assert error_text(body(502, b"<html>oops</html>", "text/html"), []) == "<html>oops</html>"
    assert error_text(body(502, b"\x00\x01binary", "application/octet-stream"), []) == ""
    assert error_text(body(502, b"[1, 2]", "application/json"), []) == ""
    assert error_text(httpx.Response(502, content=b"no type"), []) == ""
    assert error_text(body(500, b"\xff\xfe", "application/json"), []) == ""


def test_error_text_is_scrubbed() -> None:
    got = error_text(body(400, b'{"error": "token tok-1 secret s3cr3t"}'), ["tok-1", "s3cr3t"])
    assert got == "token <redacted> secret <redacted>"


def test_scrub_replaces_each_secret_and_skips_empty_ones() -> None:
    assert scrub("a-XY-b-XY", ["XY", ""]) == "a-<redacted>-b-<redacted>"
    assert scrub("abc", [""]) == "abc"


def test_scrub_makes_one_printable_line() -> None:
    assert scrub("  one\ttwo\r\nthree\x1b[31m  four\u200b ", []) == "one two three [31m four"


def test_scrub_bounds_the_length() -> None:
    exact = "x" * MAX_ERROR_TEXT
    assert MAX_ERROR_TEXT == 300
    assert scrub(exact, []) == exact
    assert scrub(exact + "y", []) == exact + "..."


def test_scrub_replaces_before_it_shortens() -> None:
    """A secret cut in two by the bound would otherwise leave its first half in the text."""
    secret = "S" * 20
    assert scrub("x" * 290 + secret, [secret]) == "x" * 290 + "<redacted>"


def test_error_fields_and_defaults() -> None:
    plain = SakuraError("m")
    assert (plain.message, plain.status, plain.sakura_text) == ("m", None, "")
    assert SakuraError("m", status=418).status == 418
    assert SakuraError.__new__(SakuraError).message == ""
    missing = NotFound("gone", kind="secret", name="db")
    assert (missing.status, missing.kind, missing.name, missing.message) == (
        404,
        "secret",
        "db",
        "gone",
    )
    assert NotFound("gone", kind="vault", name="1", status=None).status is None
    slow = Throttled("slow")
    assert (slow.status, slow.retry_after) == (429, None)
    assert (Throttled("s", retry_after=2.5, status=None).retry_after, slow.message) == (2.5, "slow")
    assert Throttled("s", status=None).status is None
    crowded = Crowded("full", retry_after=3.0, waiting=4)
    assert (crowded.status, crowded.retry_after, crowded.waiting, crowded.message) == (
        None,
        3.0,
        4,
        "full",
    )
    assert isinstance(crowded, Throttled)
    for kind in (SakuraConfigError, Unauthorized, Unavailable, Rejected, BadResponse):
        assert issubclass(kind, SakuraError)
        assert kind("x", status=500).status == 500
