"""The two reads of Secret Manager, as requests to send and answers to check.

Shared by the async client and the init container's sync reader, so both ask the same thing
and trust the same shapes. Shape errors name the field, never the value.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import httpx

from sakura import wire
from sakura.errors import BadResponse, NotFoundKind
from sakura.reader import SecretInfo, Unveiled


@dataclass(frozen=True)
class Read:
    """One read: what to send, and what a 404 means (`missing`)."""

    method: str
    path: str
    what: str
    missing: tuple[NotFoundKind, str]
    vault_id: str
    json: Any = field(default=None)


def unveiling(vault_id: str, name: str, version: int | None) -> Read:
    """A value: the latest version, or `version` when pinned."""
    label = name if version is None else f"{name}@{version}"
    body: dict[str, Any] = {"Name": name}
    if version is not None:
        body["Version"] = version
    return Read(
        "POST",
        f"/secretmanager/vaults/{segment(vault_id)}/secrets/unveil",
        f"reading secret {label!r} from vault {vault_id}",
        ("secret", name),
        vault_id,
        {"Secret": body},
    )


def unveiled(response: httpx.Response, read: Read, name: str, version: int | None) -> Unveiled:
    what = read.what
    secret = wire.json_object(response, what).get("Secret")
    if not isinstance(secret, dict):
        raise BadResponse(f"{what}: Sakura's answer has no object 'Secret'", status=200)
    value = wire.field_of(secret, "Value", str, what, 200)
    got = secret.get("Version")
    if got is None and version is not None:
        got = version
    if not isinstance(got, int) or isinstance(got, bool):
        raise BadResponse(f"{what}: Sakura's answer has no integer 'Version'", status=200)
    return Unveiled(name=name, version=got, value=value)


def listing(vault_id: str) -> Read:
    """Names and latest versions of a vault's secrets (never values)."""
    return Read(
        "GET",
        f"/secretmanager/vaults/{segment(vault_id)}/secrets",
        f"listing secrets of vault {vault_id}",
        ("vault", vault_id),
        vault_id,
    )


def listed(response: httpx.Response, read: Read) -> list[SecretInfo]:
    what = read.what
    items = wire.field_of(wire.json_object(response, what), "Secrets", list, what, 200)
    result = []
    for item in items:
        if not isinstance(item, dict):
            raise BadResponse(f"{what}: an entry of 'Secrets' is not an object", status=200)
        result.append(
            SecretInfo(
                name=wire.field_of(item, "Name", str, what, 200),
                latest_version=wire.field_of(item, "LatestVersion", int, what, 200),
            )
        )
    return result


def segment(text: str) -> str:
    """A vault ID as one path segment, whatever it holds."""
    return urllib.parse.quote(text, safe="")
