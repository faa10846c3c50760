"""The broker's wire protocol, for both ends (see docs/broker.md): the route
(injector/serving/broker_routes.py) and the init container's client (sidecar/broker_client.py).

`POST SECRETS_PATH` with a `SecretRequest` as JSON; the answer is 200 with one `FetchedSecret`
per requested secret, in order, or an error status with a `Refusal` (`{"error", "reason"}`).

Change-only reads (the refresh container): a request may say which latest version it already
holds of a name it asks for at the latest (`held`); when that is still the latest, the item
is `Unchanged` (the version, no value), so an unchanged refresh moves no value and costs the
broker no unveil.

Pure: typed values in, bytes out; bytes in, typed values out, or an error whose message names
what is wrong. Answers are bounded by `MAX_ANSWER_BYTES`.

A secret's value on its way to the file has one carrier type per stage:
`sakura.Unveiled` (what Sakura answered one unveil with; the broker's cache holds it) ->
`FetchedSecret` (the value read for one requested name and version: the broker's answer item,
and what the init container's fetch returns in either mode) -> `sidecar.writer.FileContent`
(a file's bytes, after keys are extracted and templates rendered).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contract import MAX_SECRETS, SecretRef, SecretVersion
from contract.errors import AnswerTooLarge, BadRequest, InvalidAnswer, PlanError
from contract.plan import VAULT_ID

SECRETS_PATH = "/v1/secrets"
"""The broker's one route, on its own TLS port."""
CREDENTIALS_REJECTED = "credentials_rejected"
"""`reason` of a 503 when Sakura refused the injector's key: retrying will not help, the
injector's operator must fix the key (the init container exits with its own code)."""
ANSWER_TOO_LARGE = "answer_too_large"
"""`reason` of the 422 for an answer over `MAX_ANSWER_BYTES`: asking again will not help."""
REASONS = (CREDENTIALS_REJECTED, ANSWER_TOO_LARGE)
"""Every `reason` the broker answers with; a refusal without one is told by its status."""

MAX_BODY_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""One answer, JSON-encoded: 100 secrets of Sakura's largest value (64 KiB) of text fit, as
they fit the secrets volume's default 8 MiB; a value of control characters costs six bytes a
character in JSON, so a pod of such values must read fewer per request (see docs/broker.md)."""
_MISMATCH = "the init image and the injector may be different versions"


@dataclass(frozen=True)
class SecretRequest:
    """What an init container asks for: values of a vault's secrets, in this order."""

    vault_id: str
    secrets: tuple[SecretVersion, ...]
    held: Mapping[str, int] = field(default_factory=dict, hash=False)
    """Of names asked for at the latest: the version the caller holds (a refresh)."""

    def to_json(self) -> bytes:
        """The body the init container sends; `parse_request` reads it back."""
        secrets = [{"name": s.name, "version": s.version} for s in self.secrets]
        body: dict[str, Any] = {"vault_id": self.vault_id, "secrets": secrets}
        if self.held:
            body["held"] = dict(self.held)
        return json.dumps(body).encode()


@dataclass(frozen=True)
class FetchedSecret:
    """The value read for one requested secret; repr leaves the value out so it cannot reach
    a log by accident. `version` is the resolved one even when the latest was asked for."""

    name: str
    requested_version: int | None
    version: int
    value: str = field(repr=False)

    @property
    def requested(self) -> SecretVersion:
        """What was asked for: the key of this value in the init container's fetch."""
        return SecretVersion(self.name, self.requested_version)


@dataclass(frozen=True)
class Unchanged:
    """A secret asked for at the latest whose latest version is still the one the caller
    holds (`SecretRequest.held`): the version only, no value."""

    name: str
    version: int
    requested_version: None = None

    @property
    def requested(self) -> SecretVersion:
        return SecretVersion(self.name, None)


AnswerItem = FetchedSecret | Unchanged
"""One item of an answer: a value, or (for a held latest version) the news it is unchanged."""


@dataclass(frozen=True)
class Answer:
    """What the broker serves one request: the items, and whose namespace pays for sending
    them (`namespace`, the verified token's)."""

    namespace: str
    items: tuple[AnswerItem, ...]


@dataclass(frozen=True)
class Refusal:
    """An error answer's body: one line for people, and a machine-readable `reason` (one of
    `REASONS`) when the status alone does not say what the init container should do."""

    error: str
    reason: str | None = None

    def to_json(self) -> bytes:
        body = {"error": self.error}
        if self.reason is not None:
            body["reason"] = self.reason
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


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
    unknown = sorted(set(data) - {"vault_id", "secrets", "held"})
    if unknown:
        raise BadRequest(
            f"unknown field {unknown[0]!r}; only 'vault_id', 'secrets' and 'held' exist"
        )
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
    return SecretRequest(vault_id, secrets, _held(data.get("held", {}), secrets))


def _held(held: Any, secrets: tuple[SecretVersion, ...]) -> dict[str, int]:
    if not isinstance(held, dict):
        raise BadRequest("'held' must be an object of secret name -> version held")
    latest = {s.name for s in secrets if s.version is None}
    for name, version in held.items():
        if name not in latest:
            raise BadRequest(
                f"'held' names {name!r}, which 'secrets' does not ask for at the latest "
                "version (version null); hold only what you ask to refresh"
            )
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise BadRequest(f"held[{name!r}] must be a whole number >= 1, the version held")
    return dict(held)


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


def parse_answer(body: bytes, wanted: Sequence[SecretVersion]) -> tuple[FetchedSecret, ...]:
    """The items of a 200 answer to a request for `wanted`, checked item by item against it;
    InvalidAnswer naming the first that does not fit."""
    items = parse_refresh_answer(body, wanted, {})
    return tuple(i for i in items if isinstance(i, FetchedSecret))


def parse_refresh_answer(
    body: bytes, wanted: Sequence[SecretVersion], held: Mapping[str, int]
) -> tuple[AnswerItem, ...]:
    """`parse_answer` for a request that held versions: an item may be `Unchanged`, and only
    for a held name at exactly the held version."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidAnswer("the broker answered 200 with a body that is not JSON") from None
    items = data.get("secrets") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != len(wanted):
        raise InvalidAnswer(
            f"the broker answered 200 without one entry per requested secret "
            f"({len(wanted)} asked); {_MISMATCH}"
        )
    return tuple(_answer_item(w, item, held) for w, item in zip(wanted, items, strict=True))


def _answer_item(requested: SecretVersion, item: Any, held: Mapping[str, int]) -> AnswerItem:
    problem = None
    if isinstance(item, dict) and "unchanged" in item:
        return _unchanged_item(requested, item, held)
    if not isinstance(item, dict):
        problem = "is not an object"
    elif item.get("name") != requested.name:
        problem = "names another secret"
    elif item.get("requested_version", requested.version) != requested.version:
        problem = "answers another requested version"
    elif not isinstance(item.get("version"), int) or isinstance(item.get("version"), bool):
        problem = "has no whole-number version"
    elif requested.version is not None and item["version"] != requested.version:
        problem = f"carries version {item['version']}, not the pinned one"
    elif not isinstance(item.get("value"), str):
        problem = "has no text value"
    if problem is not None:
        raise InvalidAnswer(
            f"the broker's answer for secret {str(requested)!r} {problem}; {_MISMATCH}"
        )
    return FetchedSecret(requested.name, requested.version, item["version"], item["value"])


def _unchanged_item(
    requested: SecretVersion, item: dict[str, Any], held: Mapping[str, int]
) -> Unchanged:
    version = held.get(requested.name) if requested.version is None else None
    if item.get("unchanged") is not True or item.get("name") != requested.name:
        problem = "is not a well-formed 'unchanged' item for it"
    elif version is None:
        problem = "says 'unchanged' for a version the request did not hold"
    elif item.get("version") != version or "value" in item:
        problem = f"says 'unchanged' but not at the held version {version} alone"
    else:
        return Unchanged(requested.name, version)
    raise InvalidAnswer(f"the broker's answer for secret {str(requested)!r} {problem}; {_MISMATCH}")


def parse_refusal(body: bytes) -> Refusal:
    """The refusal in an error answer's body; its parts empty where the body has none (a
    gateway's page, say): the caller then describes the status instead."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        data = None
    if not isinstance(data, dict):
        return Refusal("")
    error, reason = data.get("error"), data.get("reason")
    return Refusal(
        error if isinstance(error, str) else "", reason if isinstance(reason, str) else None
    )


def answer_floor(items: tuple[AnswerItem, ...]) -> int:
    """Bytes the encoded answer takes at least (one per character), known without encoding."""
    return len(_OPEN) + len(_CLOSE) + sum(len(s.name) + len(_value(s)) + 1 for s in items)


def _value(item: AnswerItem) -> str:
    return item.value if isinstance(item, FetchedSecret) else ""


def encode_answer(items: tuple[AnswerItem, ...], limit: int = MAX_ANSWER_BYTES) -> list[bytes]:
    """The answer's JSON as UTF-8 pieces, one per item (a large answer is never joined into
    one copy); AnswerTooLarge as soon as the pieces pass `limit` bytes.

    Non-ASCII characters stay UTF-8 (`ensure_ascii=False`): escaped, each would cost six
    bytes. One `json.dumps` per item keeps each C call short, so a thread encoding a large
    answer lets the event loop take the GIL between items.
    """
    pieces = [_OPEN]
    size = len(_OPEN) + len(_CLOSE)
    for index, s in enumerate(items):
        item: dict[str, Any] = {
            "name": s.name,
            "requested_version": s.requested_version,
            "version": s.version,
        }
        if isinstance(s, FetchedSecret):
            item["value"] = s.value
        else:
            item["unchanged"] = True
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


def too_large(items: tuple[AnswerItem, ...], limit: int) -> str:
    return (
        f"the answer for these {len(items)} secrets would be larger than {limit} bytes "
        f"({limit >> 20} MiB), the broker's bound on one answer (values JSON-encoded: a control "
        "character takes 6 bytes); split the pod's secrets between pods, so each reads fewer "
        "or smaller values, or store binary values base64-encoded"
    )
