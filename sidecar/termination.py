"""The one line Kubernetes shows for a failed init container (`kubectl describe pod`).

Written to the termination-message file and to stderr. Reasons are built without values; as a
second guard every fetched value (and every extracted key value) is cut out of the line anyway.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from contract.pod import INIT_CONTAINER, REFRESH_CONTAINER

# Kubernetes keeps at most 4096 bytes of a termination message; one line stays well below.
MAX_LENGTH = 1024
# Shorter values would cut ordinary words out of the message; they are not worth hiding.
MIN_REDACTED_LENGTH = 4
PREFIX = f"{INIT_CONTAINER}: "
REFRESH_PREFIX = f"{REFRESH_CONTAINER}: "
"""Of the refresh container's lines; its record's `last_error` has no prefix."""


def one_line(reason: str, secrets: Iterable[str] = (), prefix: str = PREFIX) -> str:
    """Collapse whitespace, hide any secret value, cap the length (the prefix included)."""
    text = _collapsed(reason)
    # The line's whitespace is collapsed, so a multi-line value (a PEM) is looked for collapsed
    # too; the longest first, so a value inside a longer one cannot leave the rest showing.
    for value in sorted({_collapsed(s) for s in secrets}, key=len, reverse=True):
        if len(value) >= MIN_REDACTED_LENGTH:
            text = text.replace(value, "<redacted>")
    text = prefix + text
    if len(text) > MAX_LENGTH:
        text = text[: MAX_LENGTH - 3] + "..."
    return text


def _collapsed(text: str) -> str:
    return " ".join(text.split())


def report(
    reason: str,
    *,
    path: str,
    secrets: Iterable[str] = (),
    stderr: TextIO | None = None,
    prefix: str = PREFIX,
) -> str:
    """Write the line to `path` (best effort: it may not exist outside a pod) and to stderr."""
    line = one_line(reason, secrets, prefix)
    try:
        with open(path, "w", encoding="utf-8") as sink:
            sink.write(line + "\n")
    except OSError:
        pass
    print(line, file=stderr or sys.stderr, flush=True)
    return line


def secret_texts(values: Iterable[str]) -> set[str]:
    """Every text that must not be shown: each value and, for JSON objects, each key's value."""
    texts: set[str] = set()
    for value in values:
        texts.add(value)
        texts.update(_key_values(value))
    return texts


def _key_values(value: str) -> list[str]:
    import json  # only on the failure path

    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    return [
        item
        if isinstance(item, str)
        else json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        for item in data.values()
    ]
