"""`.sakura-secrets.json`: which secret versions this pod loaded and how its refreshes go; no
values, for people, probes and tools.

It is a file of its own beside the sets, not one of a set: a refresh that fails, or finds
nothing new, changes only the record's status, and switching a whole new set for that would
make every app that watches `..data` reload for nothing. So the record is replaced on its own
(written to a temporary name, then renamed over the old one) after every switch and every
refresh, and names the set it describes (`set`, the directory `..data` leads to when written).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contract import Plan, file_names
from sidecar import writer
from sidecar.fetched import Values
from sidecar.writer import FileContent

RECORD_NAME = file_names.RECORD_NAME  # written once: no chosen file name may take it
RECORD_FORMAT = 1
# Names and versions only: readable by the app whatever user it runs as.
RECORD_MODE = 0o444
MAX_RECORD_BYTES = 1 << 20
"""A record longer than this is not ours (100 secrets take a few KiB): it is not read."""

Loaded = dict[str, Any]
"""The part of the record that describes a set: its name, when it was loaded, the versions."""


@dataclass(frozen=True)
class Status:
    """How the refreshes go: the part of the record that changes without a new set."""

    last_success: datetime | None
    last_error: str | None = None
    """Why the last attempt failed: one line, redacted like a termination message; None once
    an attempt succeeds (the log keeps the history)."""
    last_error_at: datetime | None = None
    consecutive_failures: int = 0


def loaded(plan: Plan, values: Values, *, set_name: str, loaded_at: datetime) -> Loaded:
    """What a set holds: its name, when it was written, and `secrets`."""
    return {
        "set": set_name,
        "loaded_at": _time(loaded_at),
        "mode": plan.mode.name,
        "vault_id": plan.vault_id,
        "secrets": secrets(plan, values),
    }


def secrets(plan: Plan, values: Values) -> list[dict[str, Any]]:
    """Every secret of the plan with the version read and the files made from it."""
    files_of: dict[str, list[str]] = {}
    for spec in plan.files:
        for ref in spec.refs:
            names = files_of.setdefault(str(ref.fetch), [])
            if spec.name not in names:
                names.append(spec.name)
    return [
        {
            "name": requested.name,
            "requested_version": requested.version,
            "version": values[requested].version,
            "files": files_of.get(str(requested), []),
        }
        for requested in plan.secrets()
    ]


def build(described: Loaded, status: Status, *, refresh_interval: int | None) -> FileContent:
    """The record as a file ready for `write`."""
    document = {
        "format": RECORD_FORMAT,
        **described,
        "refresh_interval": refresh_interval,
        "last_success": _time(status.last_success),
        "last_error": status.last_error,
        "last_error_at": _time(status.last_error_at),
        "consecutive_failures": status.consecutive_failures,
    }
    data = json.dumps(document, indent=2, sort_keys=True) + "\n"
    return FileContent(RECORD_NAME, RECORD_MODE, data.encode("utf-8"))


def write(plan: Plan, item: FileContent) -> None:
    """Replace the record beside the sets; WriteFailed if it cannot be."""
    writer.replace_file(plan.directory, item, uid=plan.uid, gid=plan.gid)


def read(directory: str) -> Loaded | None:
    """The previous record's description of the current set, or None when there is no record,
    it is not ours, or it describes another set than the one `..data` leads to."""
    current = writer.current_set(directory)
    try:
        with open(f"{directory}/{RECORD_NAME}", "rb") as source:
            data = json.loads(source.read(MAX_RECORD_BYTES))  # cut short: not JSON
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or current is None or data.get("set") != current:
        return None
    return {key: data.get(key) for key in ("set", "loaded_at", "mode", "vault_id", "secrets")}


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")
