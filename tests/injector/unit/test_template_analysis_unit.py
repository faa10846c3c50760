"""The template analysis table: a remembered answer is the fresh one, and its bounds hold."""

from __future__ import annotations

from typing import Any

import pytest

from contract import PlanError, SecretRef
from contract import template as template_module
from injector.webhook import files
from injector.webhook.errors import Denied
from injector.webhook.files import MAX_TEMPLATE_TOKENS, parse_files
from injector.webhook.template_analysis import (
    MAX_CHARS,
    MAX_ENTRIES,
    Analysis,
    TemplateAnalyses,
    analyse,
)

P = "sakura-secrets.io/"
GOOD = '{{ secret("db", key="user") }}:{{ secret("pw@2") }}'
TEXTS = [
    GOOD,
    "plain text and no secret",  # refused: reads no secret
    "{{ secret(name) }}",  # refused: not a constant
    "{% if %}",  # refused: does not parse
    '{{ x }}{% set x = secret("a") %}',
    "{{ 1 }}" * 40,  # over a limit of 100 tokens: counted, never parsed
]


def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each jinja2 parse of a template."""
    seen: list[str] = []
    parse = template_module._ENV.parse

    def counting(source: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(source)
        return parse(source, *args, **kwargs)

    monkeypatch.setattr(template_module._ENV, "parse", counting)
    return seen


@pytest.mark.parametrize("text", TEXTS)
def test_a_remembered_answer_is_the_fresh_one(text: str) -> None:
    table = TemplateAnalyses(100)
    first, again = table.analysis(text), table.analysis(text)
    assert first == again == analyse(text, 100)
    assert len(table) == 1


def test_the_fresh_answer_is_what_contract_template_says() -> None:
    assert analyse(GOOD, 100) == Analysis(
        template_module.template_tokens(GOOD, 100),
        (SecretRef("db", None, "user"), SecretRef("pw", 2)),
        None,
    )
    with pytest.raises(PlanError) as fresh:
        template_module.template_refs("{{ secret(name) }}")
    remembered = TemplateAnalyses(100).analysis("{{ secret(name) }}")
    with pytest.raises(PlanError) as cached:
        remembered.secret_refs()
    assert str(cached.value) == str(fresh.value)
    over = analyse("{{ 1 }}" * 40, 100)
    assert over == Analysis(101, (), None)  # counted to the limit + 1, not parsed
    refused = analyse("{{ secret(name) }}", 100)
    assert refused == Analysis(template_module.template_tokens("{{ secret(name) }}", 100), (), (
        str(fresh.value)
    ))  # fmt: skip
    at_limit = '{{ secret("a") }}' + "{{ 1 }}" * 5  # 6 + 5 * 3 tokens
    tokens = template_module.template_tokens(at_limit, 1000)
    assert analyse(at_limit, tokens) == Analysis(tokens, (SecretRef("a"),), None)  # parsed


def test_a_second_pod_with_the_same_template_is_not_parsed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files.TEMPLATES.clear()  # whatever ran before in this process
    seen = parses(monkeypatch)
    text = '{{ secret("db") }} # unique to this test 1f3a'
    ours = {f"{P}template-a": text}
    first = parse_files(ours)
    assert parse_files(ours) == first
    assert seen == [text]


def test_the_entry_bound_forgets_the_least_recently_used() -> None:
    table = TemplateAnalyses(100, entries=3)
    texts = [f'{{{{ secret("s{i}") }}}}' for i in range(5)]
    for text in texts[:3]:
        table.analysis(text)
    table.analysis(texts[0])  # used again: now the most recent
    table.analysis(texts[3])  # forgets texts[1], the least recently used
    assert len(table) == 3
    assert table.held == sum(len(texts[i]) for i in (0, 2, 3))
    for text in texts:
        table.analysis(text)
        assert len(table) <= 3


def test_the_char_bound_holds_and_a_text_larger_than_it_is_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = TemplateAnalyses(10_000, entries=100, chars=100)
    texts = [f'{{{{ secret("s{i}") }}}}' + " " * 20 for i in range(10)]  # 39 chars each
    for text in texts:
        table.analysis(text)
        assert table.held <= 100
    assert len(table) == 2
    large = '{{ secret("big") }}' + " " * 200
    seen = parses(monkeypatch)
    assert table.analysis(large).refs == (SecretRef("big"),)
    assert table.analysis(large).refs == (SecretRef("big"),)
    assert seen == [large, large]  # analysed each time, never held
    assert len(table) == 2 and table.held <= 100


def test_the_webhook_table_is_bounded_and_counts_to_the_pods_budget() -> None:
    assert (files.TEMPLATES.entries, files.TEMPLATES.chars) == (MAX_ENTRIES, MAX_CHARS)
    assert files.TEMPLATES.limit == MAX_TEMPLATE_TOKENS


def test_the_budget_is_shared_by_a_pods_templates_whatever_was_remembered() -> None:
    """Counted once to the pod's whole budget, a template's tokens still add up per pod."""
    tail = '{% set x = secret("db") %}'
    half = "{{x}}" * ((MAX_TEMPLATE_TOKENS // 2 - 10) // 3) + tail
    alone = {f"{P}template-a": half}
    assert parse_files(alone)  # remembered: fits the budget on its own
    with pytest.raises(Denied, match=f"more than {MAX_TEMPLATE_TOKENS} jinja2 tokens together"):
        parse_files({**alone, f"{P}template-b": half, f"{P}template-c": half})
