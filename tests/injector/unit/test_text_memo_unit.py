"""The memo of what depends only on annotation text: its bounds, and the parse it remembers."""

from __future__ import annotations

from typing import Any

import pytest
from support.admission_harness import settings

from injector.webhook import annotations as annotations_module
from injector.webhook.annotations import PARSED, forget_remembered, parse_annotations
from injector.webhook.errors import Denied
from injector.webhook.text_memo import TextMemo

P = "sakura-secrets.io/"
OURS = {
    f"{P}inject": "true",
    f"{P}vault-id": "123456789012",
    f"{P}secret-db": "db@2",
    f"{P}template-app.ini": 'pw = {{ secret("pw", key="p") }}',
}


def test_an_answer_is_computed_once_and_the_entry_bound_forgets_the_least_recent() -> None:
    memo: TextMemo[str] = TextMemo(entries=2, chars=100)
    computed: list[str] = []

    def answer(key: str) -> str:
        return memo.get(key, len(key), lambda: computed.append(key) or key.upper())

    assert [answer("a"), answer("b"), answer("a")] == ["A", "B", "A"]
    assert computed == ["a", "b"]
    answer("c")  # forgets "b", the least recently used
    assert (len(memo), memo.held) == (2, 2)
    answer("a")
    answer("b")
    assert computed == ["a", "b", "c", "b"]


def test_the_char_bound_holds_and_a_larger_key_is_answered_but_not_kept() -> None:
    memo: TextMemo[int] = TextMemo(entries=100, chars=10)
    for key in ("aaaa", "bbbb", "cccc"):
        memo.get(key, len(key), lambda: 1)
        assert memo.held <= 10
    assert len(memo) == 2 and memo.held == 8
    calls: list[int] = []
    for _ in range(2):
        assert memo.get("x" * 11, 11, lambda: calls.append(1) or 7) == 7
    assert calls == [1, 1] and len(memo) == 2
    memo.clear()
    assert (len(memo), memo.held) == (0, 0)


def test_a_key_as_large_as_the_char_bound_is_kept_and_fills_it() -> None:
    memo: TextMemo[int] = TextMemo(entries=100, chars=8)
    memo.get("aaaa", 4, lambda: 1)
    memo.get("bbbb", 4, lambda: 2)
    assert (len(memo), memo.held) == (2, 8)  # exactly at the bound: both kept
    memo.get("x" * 8, 8, lambda: 3)
    assert (len(memo), memo.held) == (1, 8)
    assert memo.get("x" * 8, 8, lambda: 4) == 3


def test_a_key_remembered_meanwhile_is_held_once() -> None:
    memo: TextMemo[int] = TextMemo(entries=100, chars=100)

    def inner() -> int:  # another computation of the same key finishes first
        return memo.get("k", 5, lambda: 1)

    assert memo.get("k", 5, inner) == 1
    assert (len(memo), memo.held) == (1, 5)
    memo.get("other", 5, lambda: 2)
    memo.get("k", 5, lambda: 3)  # "k" is now the most recent
    memo.entries = 1
    memo.get("third", 5, lambda: 4)
    assert (len(memo), memo.held) == (1, 5) and memo.get("k", 5, lambda: 9) == 9


def test_a_failed_computation_is_not_remembered() -> None:
    memo: TextMemo[int] = TextMemo(entries=4, chars=100)

    def fail() -> int:
        raise ValueError("no")

    with pytest.raises(ValueError):
        memo.get("k", 1, fail)
    assert len(memo) == 0 and memo.get("k", 1, lambda: 3) == 3


def counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the parses of our annotations (each parses the file annotations once)."""
    calls: list[int] = []
    parse = annotations_module.parse_files

    def counted(*args: Any) -> Any:
        calls.append(1)
        return parse(*args)

    monkeypatch.setattr(annotations_module, "parse_files", counted)
    return calls


def test_the_same_annotations_are_parsed_once_and_give_the_fresh_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forget_remembered()
    fresh = annotations_module._parse(OURS, settings())
    calls = counting(monkeypatch)
    first = parse_annotations({**OURS, "example.com/other": "1"}, settings())
    again = parse_annotations(
        {"example.com/other": "2", **dict(reversed(OURS.items()))}, settings()
    )
    assert first == fresh and again is first  # other annotations and order do not matter
    assert calls == [1]
    assert (len(PARSED), PARSED.held) == (1, sum(len(k) + len(v) for k, v in OURS.items()))
    assert (PARSED.entries, PARSED.chars) == (256, 4 * 1024 * 1024)


def test_the_default_vault_and_every_annotation_of_ours_are_part_of_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forget_remembered()
    bare = {k: v for k, v in OURS.items() if k != f"{P}vault-id"}
    one = parse_annotations(bare, settings(default_vault_id="111111111111"))
    other = parse_annotations(bare, settings(default_vault_id="222222222222"))
    assert (one.vault_id, other.vault_id) == ("111111111111", "222222222222")
    pinned = parse_annotations(
        {**bare, f"{P}secret-db": "db@3"}, settings(default_vault_id="1" * 12)
    )
    assert [f.secret for f in pinned.files if f.secret] != [f.secret for f in one.files if f.secret]


def test_a_refused_set_is_refused_each_time_and_the_total_size_always_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forget_remembered()
    calls = counting(monkeypatch)
    wrong = {**OURS, f"{P}file-mode": "999"}
    for _ in range(2):
        with pytest.raises(Denied, match="is not an octal file mode"):
            parse_annotations(wrong, settings())
    assert calls == [1, 1]
    parse_annotations(OURS, settings())
    with pytest.raises(Denied, match="Kubernetes allows"):  # remembered, yet too large in all
        parse_annotations({**OURS, "example.com/big": "x" * 300_000}, settings())
