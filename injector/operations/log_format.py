"""How the injector's processes write their logs: one JSON object per line (the default, for
log collectors) or a line of text for a person at a terminal (`--log-format`).

A record's structured fields are what its call passed as `extra=` (`log.info("admission",
extra={"namespace": ...})`): JSON puts each beside `time`, `level`, `logger` and `message`;
text appends them as `key=value`. docs/operations.md ("Logs") lists the fields of the
admission and audit lines. `json.dumps` does every escape, so a field holding a quote, a
newline or a control character cannot break a line or forge a field.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("json", "text")

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",  # Python 3.12+
}
"""The attributes every LogRecord has: anything else on a record came from `extra=`."""


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The record's structured fields (its `extra=`), in the order they were given."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k[0] != "_"}


def rfc3339(created: float) -> str:
    """`2026-12-05T07:02:24.123Z`: UTC with milliseconds, what log collectors parse."""
    second = int(created)
    micro = round((created - second) * 1e6)  # as datetime rounds
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    return f"{_second(second)}{micro // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _second(second: int) -> str:
    """The line's time up to the second: a busy process writes many lines a second."""
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, then the fields (a field
    named like one of the four keeps its place as `field_NAME`), and `exception` when the
    record carries a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            line[f"field_{key}" if key in line else key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: message key=value ...`; a value that is not a plain word is
    written as a JSON string, so the line stays one line and splits back into its fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = fields_of(record)
        if not fields:
            return text
        head, newline, rest = text.partition("\n")  # the traceback stays below the line
        pairs = " ".join(f"{key}={_word(value)}" for key, value in fields.items())
        return f"{head} {pairs}{newline}{rest}"


def _word(value: Any) -> str:
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return json.dumps(text, ensure_ascii=False)


def configure(level: str, log_format: str = "json") -> None:
    """Every record of the process to stderr in `log_format`, from `level` up (replacing
    whatever handlers the root logger had)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r} must be one of {', '.join(FORMATS)}")
    # nothing either format writes needs the caller's frame, thread or process: the logging
    # HOWTO's "Optimization" switches, a fifth of each line's cost
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
