"""What admission learns from a template's text alone, remembered for the next pod with it.

A template's jinja2 tokens and the `secret(...)` references it reads depend on its text and
nothing else, and a Deployment's pods all carry the same text: lexing and parsing it again for
each pod was most of a review's CPU time for pods with templates (docs/webhook.md,
"Performance"). So the answer, or the refusal, is kept in a least-recently-used table keyed by
the text, bounded both in entries (`MAX_ENTRIES`) and in the characters of the texts it holds
(`MAX_CHARS`), whichever is reached first. A cached answer is the one a fresh analysis gives.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract import PlanError, SecretRef
from contract.template import template_refs, template_tokens
from injector.webhook.text_memo import TextMemo

MAX_ENTRIES = 256
"""Distinct templates remembered: the templates of the Deployments being rolled out at once
in a large cluster, with room to spare; past it the least recently used is forgotten."""
MAX_CHARS = 4 * 1024 * 1024
"""Characters of template text remembered in all (4 Mi: at most 16 pods' worth of the 256 KiB
of annotations a pod may have); the entries' answers are smaller than their texts."""


@dataclass(frozen=True)
class Analysis:
    """A template's tokens (counted up to `limit` + 1) and its references, or why it has none."""

    tokens: int
    refs: tuple[SecretRef, ...]
    error: str | None
    """PlanError's message when the template cannot be analysed (then `refs` is empty)."""

    def secret_refs(self) -> tuple[SecretRef, ...]:
        """The references; raises PlanError when the template has none to give."""
        if self.error is not None:
            raise PlanError(self.error)
        return self.refs


class TemplateAnalyses:
    """The bounded table (`injector.webhook.text_memo`): `analysis(text)` answers from it or
    analyses and remembers."""

    def __init__(self, limit: int, *, entries: int = MAX_ENTRIES, chars: int = MAX_CHARS) -> None:
        """`limit`: the token count no template may pass (counting stops just past it)."""
        self.limit = limit
        self.memo: TextMemo[Analysis] = TextMemo(entries=entries, chars=chars)

    def __len__(self) -> int:
        return len(self.memo)

    @property
    def entries(self) -> int:
        return self.memo.entries

    @property
    def chars(self) -> int:
        return self.memo.chars

    @property
    def held(self) -> int:
        """Characters of template text the table holds now."""
        return self.memo.held

    def clear(self) -> None:
        """Forget every answer: the next review of each template is a first one."""
        self.memo.clear()

    def analysis(self, text: str) -> Analysis:
        return self.memo.get(text, len(text), lambda: analyse(text, self.limit))


def analyse(text: str, limit: int) -> Analysis:
    """A fresh analysis: the tokens first (a template over `limit` is not parsed at all)."""
    tokens = template_tokens(text, limit)
    if tokens > limit:
        return Analysis(tokens, (), None)
    try:
        return Analysis(tokens, template_refs(text), None)
    except PlanError as error:
        return Analysis(tokens, (), str(error))
