"""What admission learns from a template's text alone, remembered for the next pod with it.

A template's jinja2 tokens and the `secret(...)` references it reads depend on its text and
nothing else, and a Deployment's pods all carry the same text: lexing and parsing it again for
each pod was most of a review's CPU time for pods with templates (docs/webhook.md,
"Performance"). So the answer, or the refusal, is kept in a least-recently-used table keyed by
the text, bounded both in entries (`MAX_ENTRIES`) and in the characters of the texts it holds
(`MAX_CHARS`), whichever is reached first. A cached answer is the one a fresh analysis gives.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from contract import PlanError, SecretRef
from contract.template import template_refs, template_tokens

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
    """The bounded table: `analysis(text)` answers from it or analyses and remembers."""

    def __init__(self, limit: int, *, entries: int = MAX_ENTRIES, chars: int = MAX_CHARS) -> None:
        """`limit`: the token count no template may pass (counting stops just past it)."""
        self.limit = limit
        self.entries = entries
        self.chars = chars
        self._table: OrderedDict[str, Analysis] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._table)

    @property
    def held(self) -> int:
        """Characters of template text the table holds now."""
        return self._held

    def clear(self) -> None:
        """Forget every answer: the next review of each template is a first one (what the
        bounds tests and benchmarks/admission_size.py measure)."""
        with self._lock:
            self._table.clear()
            self._held = 0

    def analysis(self, text: str) -> Analysis:
        with self._lock:
            known = self._table.get(text)
            if known is not None:
                self._table.move_to_end(text)
                return known
        fresh = analyse(text, self.limit)
        if len(text) <= self.chars:
            with self._lock:
                self._remember(text, fresh)
        return fresh

    def _remember(self, text: str, answer: Analysis) -> None:
        if text not in self._table:
            self._held += len(text)
        self._table[text] = answer
        self._table.move_to_end(text)
        while len(self._table) > self.entries or self._held > self.chars:
            forgotten, _ = self._table.popitem(last=False)
            self._held -= len(forgotten)


def analyse(text: str, limit: int) -> Analysis:
    """A fresh analysis: the tokens first (a template over `limit` is not parsed at all)."""
    tokens = template_tokens(text, limit)
    if tokens > limit:
        return Analysis(tokens, (), None)
    try:
        return Analysis(tokens, template_refs(text), None)
    except PlanError as error:
        return Analysis(tokens, (), str(error))
