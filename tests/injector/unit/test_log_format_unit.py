"""The injector's log lines: one JSON object per line by default (time, level, logger,
message and the record's fields), text with `key=value` on request, and the flag that
chooses, from the command line or the environment."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from random import Random

import pytest

from injector.operations.cli import build_parser
from injector.operations.errors import UsageError
from injector.operations.flags import configure_logging
from injector.operations.log_format import JsonFormatter, TextFormatter, fields_of, rfc3339

SERVE = ["serve", "--init-image", "i", "--tls-cert-file", "c", "--tls-key-file", "k"]


def record(msg: str = "admission %s", *args: object, **fields: object) -> logging.LogRecord:
    made = logging.getLogger("injector.admission").makeRecord(
        "injector.admission", logging.WARNING, "f.py", 1, msg, args, None, extra=fields
    )
    made.created = 1_767_000_000.0456
    return made


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level put back after the test."""
    logger = logging.getLogger()
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_a_json_line_has_time_level_logger_message_and_the_fields_in_order() -> None:
    line = JsonFormatter().format(record("admission %s", "denied", namespace="shop", code=403))
    assert line == (
        '{"time": "2025-12-29T09:20:00.045Z", "level": "warning", "logger": '
        '"injector.admission", "message": "admission denied", "namespace": "shop", "code": 403}'
    )


def test_json_escapes_what_could_break_the_line_or_forge_a_field() -> None:
    hostile = 'x"\n{"level": "info", "forged": 1}\x1b[31m'
    line = JsonFormatter().format(record("%s", hostile, pod=hostile, time="mine"))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == parsed["pod"] == hostile
    assert "forged" not in parsed and parsed["level"] == "warning"
    assert parsed["field_time"] == "mine" and parsed["time"].endswith("Z")


def test_json_carries_lists_odd_types_and_the_traceback() -> None:
    try:
        raise RuntimeError("kaboom")
    except RuntimeError:
        failed = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, "f.py", 1, "failed", (), sys.exc_info()
        )
    failed.__dict__.update(served=[{"name": "db", "version": 2}], path=Path("/p"))
    parsed = json.loads(JsonFormatter().format(failed))
    assert parsed["served"] == [{"name": "db", "version": 2}] and parsed["path"] == "/p"
    assert (
        parsed["exception"].startswith("Traceback")
        and "RuntimeError: kaboom" in parsed["exception"]
    )


def test_a_text_line_appends_the_fields_quoting_what_is_not_a_plain_word() -> None:
    fields = {"namespace": "shop", "pod": "web *", "code": 403, "dry": None, "served": ["a"]}
    line = TextFormatter().format(record("admission %s", "denied", **fields))
    head, _, tail = line.partition(" injector.admission: ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING", head)
    assert tail == (
        'admission denied namespace=shop pod="web *" code=403 dry=null served="[\\"a\\"]"'
    )
    assert TextFormatter().format(record("plain")).endswith("injector.admission: plain")


def test_fields_are_what_extra_added_and_times_are_utc_with_milliseconds() -> None:
    assert fields_of(record(uid="u", outcome="injected")) == {"uid": "u", "outcome": "injected"}
    assert fields_of(record()) == {}
    assert rfc3339(0.5) == "1970-01-01T00:00:00.500Z"


def test_the_time_reads_as_datetime_writes_it_at_every_edge_of_a_second() -> None:
    # the second's text is remembered; the milliseconds round as datetime rounds them
    random = Random(20261205)
    edges = (0.0, 0.0005, 0.0009995, 0.001, 0.4995, 0.9995, 0.999999, 0.9999996)
    times = [random.uniform(0, 4e9) for _ in range(2000)]
    times += [random.randrange(4 * 10**9) + edge for edge in edges for _ in range(250)]
    for moment in times:
        written = datetime.fromtimestamp(moment, UTC)
        wanted = written.strftime("%Y-%m-%dT%H:%M:%S.") + f"{written.microsecond // 1000:03d}Z"
        assert rfc3339(moment) == wanted, moment


def test_json_is_the_default_and_text_is_a_flag_or_the_environment() -> None:
    assert build_parser({}).parse_args(SERVE).log_format == "json"
    env = {"SAKURA_SECRETS_LOG_FORMAT": "text"}
    assert build_parser(env).parse_args(SERVE).log_format == "text"
    assert build_parser(env).parse_args([*SERVE, "--log-format", "json"]).log_format == "json"
    assert build_parser({}).parse_args(["certs", "--log-format", "text"]).log_format == "text"


def test_configure_logging_writes_json_lines_to_stderr(
    root: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", "json")
    logging.getLogger("injector.audit").info("served", extra={"vault_id": "1"})
    logging.getLogger("injector.audit").debug("hidden")
    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line)["vault_id"] == "1"
    configure_logging("debug", "text")  # replaces the handler: one line per record still
    logging.getLogger("injector.serving.server").debug("started")
    assert capsys.readouterr().err.endswith("DEBUG injector.serving.server: started\n")


@pytest.mark.parametrize(
    ("level", "log_format", "message"),
    [
        ("info", "xml", "--log-format 'xml' must be one of json, text"),
        ("loud", "json", "--log-level 'loud' must be debug, info, warning, error or critical"),
    ],
)
def test_a_bad_log_flag_is_a_usage_error_naming_it(
    root: logging.Logger, level: str, log_format: str, message: str
) -> None:
    with pytest.raises(UsageError) as refused:
        configure_logging(level, log_format)
    assert str(refused.value) == message
