"""The broker's request parsing and answer body, pure: each refusal names the field and fix.

test_broker_http.py sends the same bodies to the broker over TLS; these pin every message.
"""

from __future__ import annotations

import json

import pytest

from injector.broker.wire import (
    MAX_BODY_BYTES,
    MAX_SECRETS,
    BadRequest,
    FetchedSecret,
    SecretRequest,
    answer_body,
    parse_request,
)
from plan import SecretVersion

VAULT = "110000000001"


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def refusal(raw: bytes) -> str:
    with pytest.raises(BadRequest) as caught:
        parse_request(raw)
    return str(caught.value)


def test_a_request_is_the_vault_and_its_secrets_in_order() -> None:
    raw = body(
        vault_id=VAULT, secrets=[{"name": "db", "version": 2}, {"name": "api", "version": None}]
    )
    assert parse_request(raw) == SecretRequest(
        VAULT, (SecretVersion("db", 2), SecretVersion("api", None))
    )
    assert parse_request(body(vault_id=VAULT, secrets=[{"name": "db"}])).secrets == (
        SecretVersion("db"),
    )


def test_the_body_size_limit() -> None:
    padding = " " * (MAX_BODY_BYTES - len(body(vault_id=VAULT, secrets=[{"name": "db"}])))
    at_limit = body(vault_id=VAULT, secrets=[{"name": "db"}]) + padding.encode()
    assert len(at_limit) == MAX_BODY_BYTES
    assert parse_request(at_limit).vault_id == VAULT
    assert refusal(at_limit + b" ") == (
        f"the body is larger than {MAX_BODY_BYTES} bytes; ask for fewer secrets"
    )
    assert MAX_BODY_BYTES == 64 * 1024


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"[" * 60_000])
def test_a_body_that_is_not_json(raw: bytes) -> None:
    assert refusal(raw) == (
        'the body is not JSON; send {"vault_id": "...", "secrets": [{"name": ..., '
        '"version": null}]}'
    )


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"3", b"null"])
def test_a_body_that_is_not_an_object(raw: bytes) -> None:
    assert refusal(raw) == "the body must be a JSON object with 'vault_id' and 'secrets'"


def test_unknown_fields_are_named_first_in_order() -> None:
    raw = body(vault_id=VAULT, secrets=[{"name": "db"}], zeta=1, alpha=2)
    assert refusal(raw) == "unknown field 'alpha'; only 'vault_id' and 'secrets' exist"


@pytest.mark.parametrize("vault_id", [None, 110000000001, "11000000000", "1100000000012", "abc"])
def test_the_vault_id_must_be_12_digits(vault_id: object) -> None:
    raw = body(vault_id=vault_id, secrets=[{"name": "db"}])
    assert refusal(raw) == f"'vault_id' must be the 12-digit Sakura vault ID, not {vault_id!r}"
    assert refusal(body(secrets=[{"name": "db"}])) == (
        "'vault_id' must be the 12-digit Sakura vault ID, not None"
    )


@pytest.mark.parametrize("secrets", [None, [], {}, "db"])
def test_secrets_must_be_a_non_empty_list(secrets: object) -> None:
    assert refusal(body(vault_id=VAULT, secrets=secrets)) == (
        '\'secrets\' must be a non-empty list of {"name", "version"} objects'
    )
    assert "non-empty list" in refusal(body(vault_id=VAULT))


def test_at_most_100_secrets_per_request() -> None:
    assert MAX_SECRETS == 100
    items = [{"name": f"s{i}"} for i in range(MAX_SECRETS)]
    assert len(parse_request(body(vault_id=VAULT, secrets=items)).secrets) == MAX_SECRETS
    items.append({"name": "one-more"})
    assert refusal(body(vault_id=VAULT, secrets=items)) == (
        "'secrets' lists 101 items; at most 100 are allowed"
    )


def test_each_item_is_checked_and_named_by_its_index() -> None:
    def item_refusal(item: object) -> str:
        return refusal(body(vault_id=VAULT, secrets=[{"name": "ok"}, item]))

    assert item_refusal("db") == "secrets[1] must be an object with 'name' and 'version'"
    assert item_refusal({"name": "db", "key": "k", "alias": 1}) == (
        "secrets[1] has unknown field 'alias'; use 'name' and 'version'"
    )
    assert item_refusal({"version": 1}) == "secrets[1].name must be the secret's name as a string"
    assert item_refusal({"name": 3}) == "secrets[1].name must be the secret's name as a string"
    for version in ("2", 1.0, True, [1]):
        assert item_refusal({"name": "db", "version": version}) == (
            "secrets[1].version must be null (latest) or a whole number >= 1"
        )
    assert item_refusal({"name": "db", "version": 0}) == (
        "secrets[1]: version of secret 'db' must be a whole number >= 1"
    )
    assert item_refusal({"name": "a@b"}).startswith("secrets[1]: secret name 'a@b' must not")


def test_the_answer_body_carries_each_item_and_repr_hides_values() -> None:
    items = (
        FetchedSecret("db", None, 3, "v-db"),
        FetchedSecret("api", 1, 1, "v-api"),
    )
    assert answer_body(items) == {
        "secrets": [
            {"name": "db", "requested_version": None, "version": 3, "value": "v-db"},
            {"name": "api", "requested_version": 1, "version": 1, "value": "v-api"},
        ]
    }
    assert "v-db" not in repr(items[0])
