"""The broker's request and answer bodies (see the wire protocol in docs/broker.md).

Pure: bytes in, typed values out, with a 400-worthy message naming what is wrong; typed values
in, the answer's bytes out, bounded by `MAX_ANSWER_BYTES`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from contract import MAX_SECRETS, PlanError, SecretRef, SecretVersion

MAX_BODY_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""One answer, JSON-encoded: 100 secrets of Sakura's largest value (64 KiB) of text fit, as
they fit the secrets volume's default 8 MiB; a value of control characters costs six bytes a
character in JSON, so a pod of such values must read fewer per request (see docs/broker.md)."""
VAULT_ID = re.compile(r"^[0-9]{12}$")


class BadRequest(ValueError):
    """The body is not a valid secrets request; the message names the field and the fix."""


class AnswerTooLarge(ValueError):
    """The answer would pass `MAX_ANSWER_BYTES`; the message says how to split the request."""


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


@dataclass(frozen=True)
class Answer:
    """What the broker serves one request: the items, and whose namespace pays for sending
    them (`namespace`, the verified token's)."""

    namespace: str
    items: tuple[FetchedSecret, ...]


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
    secrets = tuple(_item(i, item) for i, item in enumerate(items))
    first: dict[SecretVersion, int] = {}
    for index, secret in enumerate(secrets):
        earlier = first.setdefault(secret, index)
        if earlier != index:
            raise BadRequest(
                f"secrets[{index}] repeats secrets[{earlier}] ({str(secret)!r}); list each name "
                "and version once (the same name at another version is allowed)"
            )
    return SecretRequest(vault_id, secrets)


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


def answer_floor(items: tuple[FetchedSecret, ...]) -> int:
    """Bytes the encoded answer takes at least (one per character), known without encoding."""
    return len(_OPEN) + len(_CLOSE) + sum(len(s.name) + len(s.value) + 1 for s in items)


def encode_answer(items: tuple[FetchedSecret, ...], limit: int = MAX_ANSWER_BYTES) -> list[bytes]:
    """The answer's JSON as UTF-8 pieces, one per item (a large answer is never joined into
    one copy); AnswerTooLarge as soon as the pieces pass `limit` bytes.

    Non-ASCII characters stay UTF-8 (`ensure_ascii=False`): escaped, each would cost six
    bytes. One `json.dumps` per item keeps each C call short, so a thread encoding a large
    answer lets the event loop take the GIL between items.
    """
    pieces = [_OPEN]
    size = len(_OPEN) + len(_CLOSE)
    for index, s in enumerate(items):
        item = {
            "name": s.name,
            "requested_version": s.requested_version,
            "version": s.version,
            "value": s.value,
        }
        piece = ("," if index else "").encode() + json.dumps(
            item, ensure_ascii=False, separators=(",", ":")
        ).encode()
        size += len(piece)
        if size > limit:
            raise AnswerTooLarge(too_large(items, limit))
        pieces.append(piece)
    pieces.append(_CLOSE)
    return pieces


_OPEN = b'{"secrets":['
_CLOSE = b"]}"


def too_large(items: tuple[FetchedSecret, ...], limit: int) -> str:
    return (
        f"the answer for these {len(items)} secrets would be larger than {limit} bytes "
        f"({limit >> 20} MiB), the broker's bound on one answer (values JSON-encoded: a control "
        "character takes 6 bytes); split the pod's secrets between pods, so each reads fewer "
        "or smaller values, or store binary values base64-encoded"
    )
