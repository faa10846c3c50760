"""The broker's request parsing and answer body, pure: each refusal names the field and fix.

test_broker_http.py sends the same bodies to the broker over TLS; these pin every message.
"""

from __future__ import annotations

import json

import pytest
from support.values import VAULT

from contract import SecretVersion
from contract.broker import (
    ANSWER_TOO_LARGE,
    CREDENTIALS_REJECTED,
    MAX_ANSWER_BYTES,
    MAX_BODY_BYTES,
    MAX_SECRETS,
    REASONS,
    SECRETS_PATH,
    FetchedSecret,
    Refusal,
    SecretRequest,
    Unchanged,
    answer_floor,
    encode_answer,
    parse_answer,
    parse_refresh_answer,
    parse_refusal,
    parse_request,
)
from contract.errors import AnswerTooLarge, BadRequest, InvalidAnswer


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
    assert refusal(raw) == "unknown field 'alpha'; only 'vault_id', 'secrets' and 'held' exist"


@pytest.mark.parametrize(
    "vault_id", [None, 110000000001, "11000000000", "1100000000012", "abc", "110000000001\n"]
)
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


def test_a_repeated_name_and_version_is_refused_naming_both_items() -> None:
    """Case 3 of issue 15: one value named 100 times bought a 100-fold answer."""
    secrets = [{"name": "db", "version": 1}, {"name": "db"}, {"name": "api"}, {"name": "db"}]
    assert refusal(body(vault_id=VAULT, secrets=secrets)) == (
        "secrets[3] repeats secrets[1] ('db'); list each name and version once (the same "
        "name at another version is allowed)"
    )
    pinned = [{"name": "db"}, {"name": "db", "version": 2}, {"name": "db", "version": 2}]
    assert "secrets[2] repeats secrets[1] ('db@2')" in refusal(body(vault_id=VAULT, secrets=pinned))
    assert parse_request(body(vault_id=VAULT, secrets=secrets[:3])).secrets == (
        SecretVersion("db", 1),
        SecretVersion("db"),
        SecretVersion("api"),
    )


def test_the_answer_carries_each_item_in_order_and_repr_hides_values() -> None:
    items = (
        FetchedSecret("db", None, 3, "v-db"),
        FetchedSecret("api", 1, 1, "v-api"),
    )
    pieces = encode_answer(items)
    assert len(pieces) == 4  # the opening, one per item, the closing: never joined
    assert json.loads(b"".join(pieces)) == {
        "secrets": [
            {"name": "db", "requested_version": None, "version": 3, "value": "v-db"},
            {"name": "api", "requested_version": 1, "version": 1, "value": "v-api"},
        ]
    }
    assert b"".join(pieces) == (
        b'{"secrets":[{"name":"db","requested_version":null,"version":3,"value":"v-db"},'
        b'{"name":"api","requested_version":1,"version":1,"value":"v-api"}]}'
    )
    assert "v-db" not in repr(items[0])


def test_the_answer_keeps_text_as_utf8_and_escapes_what_json_must() -> None:
    value = 'パスワード"\\\n\x01'
    (opening, item, closing) = encode_answer((FetchedSecret("jp", None, 1, value),))
    assert "パスワード".encode() in item  # 15 bytes, not 30 of \\uXXXX escapes
    assert json.loads(opening + item + closing)["secrets"][0]["value"] == value
    assert len(item) == len(b'{"name":"jp","requested_version":null,"version":1,"value":""}') + len(
        "パスワード".encode()
    ) + len(b'\\"\\\\\\n\\u0001')


def test_the_floor_is_a_byte_per_character_and_never_above_the_encoding() -> None:
    items = (FetchedSecret("db", None, 3, "v" * 10), FetchedSecret("a", 1, 1, "\x00" * 7))
    assert answer_floor(items) == len(b'{"secrets":[') + len(b"]}") + (2 + 10 + 1) + (1 + 7 + 1)
    assert answer_floor(items) <= len(b"".join(encode_answer(items)))
    assert answer_floor(()) == len(b'{"secrets":[]}') == len(b"".join(encode_answer(())))


def test_an_answer_over_the_limit_is_refused_naming_it_and_the_way_out() -> None:
    assert MAX_ANSWER_BYTES == 8 * 1024 * 1024
    items = (FetchedSecret("a", None, 1, "x"), FetchedSecret("b", None, 1, "y"))
    size = len(b"".join(encode_answer(items)))
    assert len(b"".join(encode_answer(items, limit=size))) == size
    with pytest.raises(AnswerTooLarge) as caught:
        encode_answer(items, limit=size - 1)
    assert str(caught.value) == (
        f"the answer for these 2 secrets would be larger than {size - 1} bytes (0 MiB), the "
        "broker's bound on one answer (values JSON-encoded: a control character takes 6 bytes); "
        "split the pod's secrets between pods, so each reads fewer or smaller values, or store "
        "binary values base64-encoded"
    )
    # 64 KiB of control characters: six bytes each in JSON, so 21 such values pass 8 MiB
    control = tuple(FetchedSecret(f"s{i}", None, 1, "\x01" * 65536) for i in range(22))
    with pytest.raises(AnswerTooLarge, match="larger than 8388608 bytes \\(8 MiB\\)"):
        encode_answer(control)
    assert len(b"".join(encode_answer(control[:21]))) < MAX_ANSWER_BYTES
    text = tuple(FetchedSecret(f"s{i}", None, 1, "t" * 65536) for i in range(MAX_SECRETS))
    assert len(b"".join(encode_answer(text))) < MAX_ANSWER_BYTES  # 100 values of 64 KiB fit


# --- both ends: the init container's request, the broker's answer and refusal --------------


def test_the_names_both_ends_agree_on() -> None:
    assert SECRETS_PATH == "/v1/secrets"
    assert (CREDENTIALS_REJECTED, ANSWER_TOO_LARGE) == ("credentials_rejected", "answer_too_large")
    assert REASONS == (CREDENTIALS_REJECTED, ANSWER_TOO_LARGE)


def test_a_request_the_init_container_builds_is_what_the_broker_parses() -> None:
    request = SecretRequest(VAULT, (SecretVersion("db"), SecretVersion("api", 2)))
    assert json.loads(request.to_json()) == {
        "vault_id": VAULT,
        "secrets": [{"name": "db", "version": None}, {"name": "api", "version": 2}],
    }
    assert parse_request(request.to_json()) == request


WANTED = (SecretVersion("api", 1), SecretVersion("db"))


def answer_body(*items: object) -> bytes:
    return json.dumps({"secrets": list(items)}).encode()


def item(name: str, requested: int | None, version: object, value: object) -> dict[str, object]:
    return {"name": name, "requested_version": requested, "version": version, "value": value}


def answer_problem(raw: bytes) -> str:
    with pytest.raises(InvalidAnswer) as caught:
        parse_answer(raw, WANTED)
    return str(caught.value)


def test_an_answer_is_read_back_into_the_items_the_broker_encoded() -> None:
    items = (FetchedSecret("api", 1, 1, "v-api"), FetchedSecret("db", None, 3, "v-db"))
    assert parse_answer(b"".join(encode_answer(items)), WANTED) == items
    assert [i.requested for i in items] == list(WANTED)
    without = answer_body({"name": "api", "version": 1, "value": "a"}, item("db", None, 3, "d"))
    assert parse_answer(without, WANTED)[0] == FetchedSecret("api", 1, 1, "a")


@pytest.mark.parametrize("raw", [b"<html>ok</html>", b"", b'{"secrets": ["\xff"]}', b"[" * 10**5])
def test_an_answer_that_is_not_json_is_named_so(raw: bytes) -> None:
    assert answer_problem(raw) == "the broker answered 200 with a body that is not JSON"


@pytest.mark.parametrize(
    "raw",
    [b"{}", b"[]", b'{"secrets": {}}', answer_body(item("api", 1, 1, "a")), answer_body()],
)
def test_an_answer_without_one_item_per_secret_is_named_so(raw: bytes) -> None:
    assert answer_problem(raw) == (
        "the broker answered 200 without one entry per requested secret (2 asked); the init "
        "image and the injector may be different versions"
    )


@pytest.mark.parametrize(
    ("first", "problem"),
    [
        ("api", "is not an object"),
        ({**item("api", 1, 1, "a"), "name": "db"}, "names another secret"),
        (item("api", None, 1, "a"), "answers another requested version"),
        (item("api", 1, "1", "a"), "has no whole-number version"),
        (item("api", 1, True, "a"), "has no whole-number version"),
        (item("api", 1, 2, "a"), "carries version 2, not the pinned one"),
        (item("api", 1, 1, None), "has no text value"),
    ],
)
def test_an_item_that_is_not_what_was_asked_is_named(first: object, problem: str) -> None:
    assert answer_problem(answer_body(first, item("db", None, 3, "d"))) == (
        f"the broker's answer for secret 'api@1' {problem}; the init image and the injector "
        "may be different versions"
    )
    latest = parse_answer(answer_body(item("api", 1, 1, "a"), item("db", None, 7, "d")), WANTED)
    assert latest[1].version == 7  # the latest may carry any version


def test_a_refusal_carries_its_reason_only_when_it_has_one() -> None:
    assert Refusal("no such secret").to_json() == b'{"error":"no such secret"}'
    assert Refusal("ключ", CREDENTIALS_REJECTED).to_json() == (
        '{"error":"ключ","reason":"credentials_rejected"}'.encode()
    )
    assert parse_refusal(Refusal("ключ", CREDENTIALS_REJECTED).to_json()) == Refusal(
        "ключ", CREDENTIALS_REJECTED
    )


@pytest.mark.parametrize(
    ("raw", "read"),
    [
        (b'{"error": "busy"}', Refusal("busy")),
        (b'{"error": 42, "reason": "credentials_rejected"}', Refusal("", CREDENTIALS_REJECTED)),
        (b'{"error": "busy", "reason": ["credentials_rejected"]}', Refusal("busy")),
        (b'["the error"]', Refusal("")),
        (b"<html>502 Bad Gateway</html>", Refusal("")),
        (b'{"error": "\xff"}', Refusal("")),
        (b"[" * 10**5, Refusal("")),
    ],
)
def test_a_refusal_is_read_from_whatever_body_came_back(raw: bytes, read: Refusal) -> None:
    assert parse_refusal(raw) == read


# Change-only reads: a refresh holds versions, and an unchanged latest comes back without a value


def test_a_refresh_request_carries_the_versions_it_holds() -> None:
    request = SecretRequest(VAULT, (SecretVersion("api", 2), SecretVersion("db")), {"db": 3})
    assert json.loads(request.to_json())["held"] == {"db": 3}
    assert parse_request(request.to_json()) == request
    assert "held" not in json.loads(SecretRequest(VAULT, (SecretVersion("db"),)).to_json())


@pytest.mark.parametrize(
    ("held", "message"),
    [
        ([], "'held' must be an object of secret name -> version held"),
        (
            {"api": 2},
            "'held' names 'api', which 'secrets' does not ask for at the latest version "
            "(version null); hold only what you ask to refresh",
        ),
        (
            {"other": 1},
            "'held' names 'other', which 'secrets' does not ask for at the latest version "
            "(version null); hold only what you ask to refresh",
        ),
        ({"db": 0}, "held['db'] must be a whole number >= 1, the version held"),
        ({"db": True}, "held['db'] must be a whole number >= 1, the version held"),
        ({"db": "3"}, "held['db'] must be a whole number >= 1, the version held"),
    ],
)
def test_held_versions_are_checked_against_the_request(held: object, message: str) -> None:
    secrets = [{"name": "api", "version": 2}, {"name": "db", "version": None}]
    assert refusal(body(vault_id=VAULT, secrets=secrets, held=held)) == message


def test_an_unchanged_item_has_the_held_version_and_no_value() -> None:
    items = (FetchedSecret("api", 1, 1, "v-api"), Unchanged("db", 3))
    raw = b"".join(encode_answer(items))
    assert json.loads(raw)["secrets"][1] == {
        "name": "db",
        "requested_version": None,
        "version": 3,
        "unchanged": True,
    }
    assert parse_refresh_answer(raw, WANTED, {"db": 3}) == items
    assert Unchanged("db", 3).requested == SecretVersion("db")
    assert answer_floor((Unchanged("db", 3),)) == len('{"secrets":[]}') + 3


@pytest.mark.parametrize(
    ("entry", "held", "problem"),
    [
        (
            {"name": "db", "version": 3, "unchanged": True},
            {},
            "for a version the request did not hold",
        ),
        (
            {"name": "db", "version": 2, "unchanged": True},
            {"db": 3},
            "not at the held version 3 alone",
        ),
        (
            {"name": "db", "version": 3, "unchanged": True, "value": "x"},
            {"db": 3},
            "not at the held version 3 alone",
        ),
        ({"name": "db", "version": 3, "unchanged": 1}, {"db": 3}, "is not a well-formed"),
        ({"name": "dx", "version": 3, "unchanged": True}, {"db": 3}, "is not a well-formed"),
    ],
)
def test_an_unchanged_item_that_does_not_fit_the_request_is_refused(
    entry: dict[str, object], held: dict[str, int], problem: str
) -> None:
    raw = answer_body(item("api", 1, 1, "a"), entry)
    with pytest.raises(InvalidAnswer, match=problem):
        parse_refresh_answer(raw, WANTED, held)


def test_a_fetch_that_held_nothing_refuses_an_unchanged_item() -> None:
    raw = answer_body(item("api", 1, 1, "a"), {"name": "db", "version": 3, "unchanged": True})
    assert "did not hold" in answer_problem(raw)
    pinned = answer_body({"name": "api", "version": 1, "unchanged": True}, item("db", None, 3, "d"))
    with pytest.raises(InvalidAnswer, match="did not hold"):
        parse_refresh_answer(pinned, WANTED, {"api": 1})
