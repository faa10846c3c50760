"""`NAME#KEY`: one key of a JSON object value, errors that never show the value."""

from __future__ import annotations

import pytest

from sakura import KeyExtractionError, SakuraError, extract_key

VALUE = '{"user": "app", "pass": "hunter2-Zk", "port": 5432, "on": true, "n": null, "l": [1, "a"]}'


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("user", "app"),
        ("pass", "hunter2-Zk"),
        ("port", "5432"),
        ("on", "true"),
        ("n", "null"),
        ("l", '[1,"a"]'),
    ],
)
def test_extracts_text(key: str, text: str) -> None:
    assert extract_key(VALUE, key, f"db#{key}") == text


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("hunter2-Zk plain", "not JSON"),
        ('["hunter2-Zk"]', "array"),
        ('"hunter2-Zk"', "string"),
        ('{"other": "hunter2-Zk"}', "has no key 'pass'"),
    ],
)
def test_errors_name_ref_and_key_not_value(value: str, fragment: str) -> None:
    with pytest.raises(KeyExtractionError) as err:
        extract_key(value, "pass", "db@2#pass")
    text = str(err.value)
    assert fragment in text and "db@2#pass" in text and "'pass'" in text
    assert "hunter2" not in text and "hunter2" not in repr(err.value)
    assert isinstance(err.value, SakuraError) and isinstance(err.value, ValueError)
