"""The broker's request and answer bodies (see the wire protocol in docs/broker.md).

Pure: bytes in, typed values out, with a 400-worthy message naming what is wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from plan import MAX_SECRETS, PlanError, SecretRef, SecretVersion

MAX_BODY_BYTES = 64 * 1024
VAULT_ID = re.compile(r"^[0-9]{12}$")


class BadRequest(ValueError):
    """The body is not a valid secrets request; the message names the field and the fix."""


@dataclass(frozen=True)
class SecretRequest:
    """What an init container asks for: values of a vault's secrets, in this order."""

    vault_id: str
    secrets: tuple[SecretVersion, ...]


@dataclass(frozen=True)
class FetchedSecret:
    """One answer item; repr leaves the value out so it cannot reach a log by accident."""

    name: str
    requested_version: int | None
    version: int
    value: str = field(repr=False)


def parse_request(body: bytes) -> SecretRequest:
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes; ask for fewer secrets")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise BadRequest(
            'the body is not JSON; send {"vault_id": "...", "secrets": [{"name": ..., '
            '"version": null}]}'
        ) from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object with 'vault_id' and 'secrets'")
    unknown = sorted(set(data) - {"vault_id", "secrets"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; only 'vault_id' and 'secrets' exist")
    vault_id = data.get("vault_id")
    if not isinstance(vault_id, str) or not VAULT_ID.match(vault_id):
        raise BadRequest(f"'vault_id' must be the 12-digit Sakura vault ID, not {vault_id!r}")
    items = data.get("secrets")
    if not isinstance(items, list) or not items:
        raise BadRequest('\'secrets\' must be a non-empty list of {"name", "version"} objects')
    if len(items) > MAX_SECRETS:
        raise BadRequest(f"'secrets' lists {len(items)} items; at most {MAX_SECRETS} are allowed")
    return SecretRequest(vault_id, tuple(_item(i, item) for i, item in enumerate(items)))


def _item(index: int, item: Any) -> SecretVersion:
    where = f"secrets[{index}]"
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object with 'name' and 'version'")
    unknown = sorted(set(item) - {"name", "version"})
    if unknown:
        raise BadRequest(f"{where} has unknown field {unknown[0]!r}; use 'name' and 'version'")
    name = item.get("name")
    version = item.get("version")
    if not isinstance(name, str):
        raise BadRequest(f"{where}.name must be the secret's name as a string")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise BadRequest(f"{where}.version must be null (latest) or a whole number >= 1")
    try:
        SecretRef(name, version)
    except PlanError as exc:
        raise BadRequest(f"{where}: {exc}") from None
    return SecretVersion(name, version)


def answer_body(items: tuple[FetchedSecret, ...]) -> dict[str, Any]:
    return {
        "secrets": [
            {
                "name": s.name,
                "requested_version": s.requested_version,
                "version": s.version,
                "value": s.value,
            }
            for s in items
        ]
    }
