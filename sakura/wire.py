"""The JSON shapes of the Secret Manager API: reading success bodies and error text.

Nothing here echoes a response body wholesale: an unveil answer holds a secret value, so
shape errors describe the shape, and error text is shortened and scrubbed of known secrets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx

from sakura.errors import BadResponse

MAX_ERROR_TEXT = 300


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        data = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise BadResponse(
            f"{what}: Sakura answered HTTP {response.status_code} with a body that is not JSON",
            status=response.status_code,
        ) from None
    if not isinstance(data, dict):
        raise BadResponse(
            f"{what}: Sakura answered HTTP {response.status_code} with JSON that is not an object",
            status=response.status_code,
        )
    return data


def field_of(
    data: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str, status: int
) -> Any:
    """`data[key]` checked to be of `kind`; a BadResponse naming the field otherwise."""
    value = data.get(key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise BadResponse(f"{what}: Sakura's answer has no {names} field {key!r}", status=status)
    return value


def optional_text(data: dict[str, Any], key: str) -> str:
    """`data[key]` when it is text, else "" (fields Sakura may leave out or null)."""
    value = data.get(key)
    return value if isinstance(value, str) else ""


def error_text(response: httpx.Response, secrets: Iterable[str]) -> str:
    """Sakura's message from an error body: `error`, the old `error_msg` envelope, or an RFC
    7807 problem's `detail` (the IAM token endpoint)."""
    text = ""
    try:
        data = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        data = None
    if isinstance(data, dict):
        parts = [
            str(data[k])
            for k in ("error", "error_msg", "detail", "message", "error_code")
            if isinstance(data.get(k), str | int) and str(data[k]).strip()
        ]
        text = parts[0] if parts else ""
    elif response.headers.get("content-type", "").startswith("text/"):
        text = response.text
    return scrub(text, secrets)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """One short printable line with every known secret string replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(text) > MAX_ERROR_TEXT:
        text = text[:MAX_ERROR_TEXT] + "..."
    return text
