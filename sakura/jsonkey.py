"""`NAME#KEY` references: one key of a secret whose value is a JSON object."""

from __future__ import annotations

import json

from sakura.errors import SakuraError


class KeyExtractionError(SakuraError, ValueError):
    """The value is not a JSON object or lacks the key; names the ref and key, never the value."""


def extract_key(value: str, key: str, ref: str) -> str:
    """Return `value[key]` as text: strings as they are, other JSON types as compact JSON."""
    try:
        data = json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        raise KeyExtractionError(
            f"secret {ref!r}: key {key!r} was asked for, but the value is not JSON; "
            "store a JSON object or drop the '#KEY'"
        ) from None
    if not isinstance(data, dict):
        raise KeyExtractionError(
            f"secret {ref!r}: key {key!r} was asked for, but the value is a JSON "
            f"{_json_type(data)}, not an object"
        )
    if key not in data:
        raise KeyExtractionError(
            f"secret {ref!r} has no key {key!r} (it has {len(data)} keys); "
            "check the spelling, keys are case-sensitive"
        )
    item = data[key]
    if isinstance(item, str):
        return item
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def _json_type(data: object) -> str:
    if isinstance(data, list):
        return "array"
    if isinstance(data, str):
        return "string"
    if isinstance(data, bool):
        return "boolean"
    if data is None:
        return "null"
    return "number"
