"""A bounded least-recently-used table of answers that depend only on annotation text.

A Deployment's pods all carry the same annotations, so what admission derives from their text
alone (a template's analysis, the parsed `sakura-secrets.io/` annotations) is the same for
every pod of a rollout. The table keeps such answers keyed by the text, bounded both in entries
and in the characters of the keys it holds, whichever is reached first; a key larger than the
character bound is answered fresh each time and never held. Answers must be immutable: every
pod with that text gets the same object.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class TextMemo(Generic[T]):
    """`memo.get(key, size, compute)`: the remembered answer for `key`, else `compute()`'s."""

    def __init__(self, *, entries: int, chars: int) -> None:
        self.entries = entries
        self.chars = chars
        self._table: OrderedDict[Hashable, tuple[T, int]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._table)

    @property
    def held(self) -> int:
        """Characters of the keys held now."""
        return self._held

    def clear(self) -> None:
        """Forget every answer (the bounds tests and benchmarks/admission_size.py measure
        first reviews)."""
        with self._lock:
            self._table.clear()
            self._held = 0

    def get(self, key: Hashable, size: int, compute: Callable[[], T]) -> T:
        """`size`: the characters of text `key` stands for, what the `chars` bound counts."""
        with self._lock:
            known = self._table.get(key)
            if known is not None:
                self._table.move_to_end(key)
                return known[0]
        fresh = compute()
        if size <= self.chars:
            with self._lock:
                self._remember(key, fresh, size)
        return fresh

    def _remember(self, key: Hashable, answer: T, size: int) -> None:
        if key in self._table:  # remembered meanwhile (another thread computed it too)
            self._table.move_to_end(key)
            return
        self._table[key] = (answer, size)
        self._held += size
        while len(self._table) > self.entries or self._held > self.chars:
            oldest = next(iter(self._table))
            self._held -= self._table.pop(oldest)[1]
