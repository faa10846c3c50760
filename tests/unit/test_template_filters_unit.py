"""The filters and tests a template may use: one set for admission, the init container and the
docs; the base64 filters' own behaviour."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from contract import PlanError, SecretVersion
from contract.encoding import EncodingError, decode_base64, decode_base64_text, encode_base64
from contract.template import FILTERS, TESTS, render, template_refs

DOCS = Path(__file__).parents[2] / "docs" / "annotations.md"


def _documented(label: str) -> set[str]:
    line = re.search(rf"^  - {label}: (.*)\.$", DOCS.read_text(), re.MULTILINE)
    assert line is not None, f"docs/annotations.md lists no {label}"
    return set(re.findall(r"`([^`]+)`", line.group(1)))


def test_the_docs_list_exactly_the_sandboxs_filters_and_tests() -> None:
    assert _documented("Filters") == FILTERS
    assert _documented("Tests") == TESTS
    assert {"b64decode", "b64encode", "trim", "upper"} <= FILTERS


def test_every_known_filter_and_test_passes_the_scan() -> None:
    for name in FILTERS:
        template_refs(f'{{{{ secret("db") | {name} }}}}')
    for name in TESTS:  # "==", "<", …: by name through select() only
        if name.isidentifier():
            template_refs(f'{{{{ secret("db") is {name} }}}}')
        template_refs(f'{{{{ [secret("db")] | select("{name}") | join }}}}')


def test_an_unknown_filter_is_refused_before_jinja2_would_compile_it() -> None:
    with pytest.raises(PlanError, match=r"^the template uses the filter 'nope'"):
        template_refs('{{ secret("db") | nope }}')


def _render(source: str, value: str) -> str:
    return render(source, {SecretVersion("db"): value}, lambda v, k, r: v)


def test_the_base64_filters_round_trip_text() -> None:
    text = "pässwörd\n"
    assert _render('{{ secret("db") | b64encode }}', text) == "cMOkc3N3w7ZyZAo="
    assert _render('{{ secret("db") | b64encode | b64decode }}', text) == text


def test_decoding_is_strict_and_names_no_value() -> None:
    assert decode_base64("QUJD\nRA==\n") == b"ABCD"
    assert encode_base64("ABCD") == "QUJDRA=="
    for bad in ("QUJDRA", "QUJDRA===", "QUJD RA=*", "QUJDRR=="):  # RR==: a non-zero spare bit
        with pytest.raises(EncodingError) as caught:
            decode_base64(bad)
        assert str(caught.value) == (
            "not valid base64 (only A-Z, a-z, 0-9, '+', '/' and '=' padding, the length a "
            "multiple of 4)"
        )
    with pytest.raises(EncodingError, match=r"^the decoded bytes are not UTF-8 text"):
        decode_base64_text(base64.b64encode(b"\xc3").decode())
