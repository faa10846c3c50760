"""The names a file may have on disk, beyond what an annotation key can spell (`file-name-FILE`).

A key's FILE part must start and end with a letter or digit within 63 characters, so `.pgpass`
or a long `credentials.json` cannot be one; a chosen name can. It stays one plain name in the
secrets directory: no '/', no NUL, printable, at most the file system's 255 bytes. The writer's
own entries there (`..data`, the hidden `..YYYY_…` sets, `..NAME.tmp`) all start with '..', and
the record is `RECORD_NAME`: no chosen name may take either.
"""

from __future__ import annotations

from contract.errors import PlanError

MAX_NAME_BYTES = 255
"""NAME_MAX of Linux file systems (tmpfs included), in bytes of UTF-8."""
RECORD_NAME = ".sakura-secrets.json"
"""The init container's record of the loaded versions (sidecar/record.py), beside the files."""


def check_chosen_name(name: str) -> None:
    """Refuse a name that is not one plain file of the secrets directory; PlanError says why."""
    what = _fault(name)
    if what is not None:
        raise PlanError(f"file name {name!r} {what}")


def _fault(name: str) -> str | None:
    if not isinstance(name, str) or not name:
        return "is empty; write a file name such as .pgpass"
    if name in (".", ".."):
        return "is a directory, not a file name; write a file name such as .pgpass"
    if "/" in name or "\0" in name:
        return "contains '/' or NUL; write one file name, not a path"
    if not name.isprintable() or name != name.strip():
        return (
            "contains a control character, a line break or surrounding whitespace; "
            "write a name that shows as it is"
        )
    if name.startswith(".."):
        return "starts with '..', which the injector keeps for its own entries; start it otherwise"
    if name == RECORD_NAME:
        return "is the injector's record of the loaded versions; choose another name"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return f"has {size} bytes, more than the {MAX_NAME_BYTES} a file name may have; shorten it"
    return None
