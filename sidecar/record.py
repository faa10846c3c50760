"""`.sakura-secrets.json`: which secret versions this pod loaded, for people and tools; no values.

It is one more file of the set the writer switches to (the name starts with a dot, which no plan
file may), so it always describes the files next to it.
"""

from __future__ import annotations

import json
from datetime import datetime

from contract import Plan
from sidecar.fetched import Values
from sidecar.writer import FileContent

RECORD_NAME = ".sakura-secrets.json"
RECORD_FORMAT = 1
# Names and versions only: readable by the app whatever user it runs as.
RECORD_MODE = 0o444


def build(plan: Plan, values: Values, *, loaded_at: datetime) -> FileContent:
    """The record as a file ready for the writer."""
    files_of: dict[str, list[str]] = {}
    for spec in plan.files:
        for ref in spec.refs:
            names = files_of.setdefault(str(ref.fetch), [])
            if spec.name not in names:
                names.append(spec.name)
    document = {
        "format": RECORD_FORMAT,
        "loaded_at": loaded_at.isoformat(timespec="seconds"),
        "mode": plan.mode.name,
        "vault_id": plan.vault_id,
        "secrets": [
            {
                "name": requested.name,
                "requested_version": requested.version,
                "version": values[requested].version,
                "files": files_of.get(str(requested), []),
            }
            for requested in plan.secrets()
        ],
    }
    data = json.dumps(document, indent=2, sort_keys=True) + "\n"
    return FileContent(RECORD_NAME, RECORD_MODE, data.encode("utf-8"))
