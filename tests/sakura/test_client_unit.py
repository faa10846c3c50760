"""The client on answers the emulator cannot give: crafted statuses, bodies, headers, faults.

httpx.MockTransport stands in for Sakura (the real-server tests beside these are in
test_sakura_client.py); a HandClock runs the deadline, the limiter and the waits between
retries, so each test says how long the client waited and what it sent, attempt by attempt.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import certifi
import httpx
import pytest
from support.clock import HandClock
from support.sakura_kit import SECRET, TOKEN, VAULT

from sakura import (
    Backoff,
    BadResponse,
    Crowded,
    NotFound,
    RateLimiter,
    Rejected,
    SakuraClient,
    SakuraConfig,
    SakuraError,
    SecretInfo,
    Throttled,
    Unauthorized,
    Unavailable,
    Unveiled,
    VaultInfo,
)
from sakura.attempts import USER_AGENT
from sakura.attempts import tls as _tls
from sakura.credentials import ApiKey, Credentials

BASE = "https://sakura.test/cloud/zone/tk1a/api/cloud/1.1"
UNVEIL = f"/cloud/zone/tk1a/api/cloud/1.1/secretmanager/vaults/{VAULT}/secrets/unveil"
SECRETS = f"/cloud/zone/tk1a/api/cloud/1.1/secretmanager/vaults/{VAULT}/secrets"
Reply = httpx.Response | Exception
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class Sakura:
    """Answers requests from a script, in order (the last one repeats); records each request."""

    def __init__(self, *replies: Reply, clock: HandClock | None = None) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []
        self.clock = clock
        self.late_by = 0.0
        """Hand-clock seconds each answer takes (a slow Sakura, without real waiting)."""

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.clock is not None:
            self.clock.now += self.late_by
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def client(
    sakura: Handler,
    clock: HandClock | None = None,
    *,
    per_minute: float = 60_000,
    **kwargs: Any,
) -> SakuraClient:
    clock = clock if clock is not None else HandClock()
    kwargs.setdefault(
        "limiter", RateLimiter(per_minute=per_minute, burst=100, clock=clock, sleep=clock.sleep)
    )
    kwargs.setdefault("backoff", Backoff(base=0.02, cap=0.2, rng=random.Random(7)))
    return SakuraClient(
        SakuraConfig(TOKEN, SECRET, base_url=BASE),
        transport=httpx.MockTransport(sakura),
        clock=clock,
        sleep=clock.sleep,
        **kwargs,
    )


async def failure(call: Awaitable[object]) -> SakuraError:
    try:
        await call
    except SakuraError as exc:
        return exc
    raise AssertionError("no SakuraError")


READ = f"reading secret 'db' from vault {VAULT}"


# -- what the client sends ------------------------------------------------------------------


async def test_every_request_carries_the_sdks_headers_and_basic_auth() -> None:
    sakura = Sakura(answer(200, {"Secret": {"Name": "db", "Version": 1, "Value": "v"}}))
    async with client(sakura) as c:
        await c.unveil(VAULT, "db")
    sent = sakura.requests[0].headers
    assert sent["Content-Type"] == "application/json"
    assert sent["Accept"] == "application/json"
    assert sent["X-Requested-With"] == "XMLHttpRequest"
    assert sent["X-Sakura-Bigint-As-Int"] == "1"
    assert sent["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("sakura-secrets-injector/")
    basic = base64.b64encode(f"{TOKEN}:{SECRET}".encode()).decode()
    assert sent["Authorization"] == f"Basic {basic}"


class Rotating:
    """A credential source whose key a test changes between requests."""

    def __init__(self, key: ApiKey) -> None:
        self.key = key
        self.loaded_at = 0.0

    def current(self) -> Credentials:
        return self.key


def basic(token: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{token}:{secret}".encode()).decode()


async def test_each_attempt_sends_the_key_its_source_gives_then() -> None:
    source = Rotating(ApiKey("key-1", "secret-1"))
    sakura = Sakura(answer(200, {"Vaults": []}))
    async with client(sakura, credentials=source) as c:
        await c.list_vaults()
        source.key = ApiKey("key-2", "secret-2")  # between two calls
        await c.list_vaults()
        sakura.replies = [answer(503), answer(200, {"Vaults": []})]
        source.key = ApiKey("key-3", "secret-3")

        async def rotate(request: httpx.Request) -> httpx.Response:
            source.key = ApiKey("key-4", "secret-4")  # while the first attempt is out
            return await sakura(request)

        c._http._transport = httpx.MockTransport(rotate)
        await c.list_vaults()
    sent = [r.headers["Authorization"] for r in sakura.requests]
    assert sent == [basic(f"key-{n}", f"secret-{n}") for n in (1, 2, 3, 4)]
    assert TOKEN not in "".join(sent)  # the config's own key is not used when a source is given


async def test_every_key_a_call_sent_is_scrubbed_from_its_error() -> None:
    source = Rotating(ApiKey("key-1", "secret-1"))
    echo = {"error": "no key-1 secret-1 key-2 secret-2"}
    sakura = Sakura(answer(503, echo), answer(401, echo))

    async def rotate(request: httpx.Request) -> httpx.Response:
        source.key = ApiKey("key-2", "secret-2")
        return await sakura(request)

    async with client(rotate, credentials=source, max_retries=1) as c:
        err = await failure(c.list_vaults())
    assert err.sakura_text == "no <redacted> <redacted> <redacted> <redacted>"
    assert len(sakura.requests) == 2


async def test_without_a_source_the_configs_key_is_sent() -> None:
    sakura = Sakura(answer(200, {"Vaults": []}))
    async with client(sakura) as c:
        await c.list_vaults()
        assert c.credentials.current() == ApiKey(TOKEN, SECRET)
    assert sakura.requests[0].headers["Authorization"] == basic(TOKEN, SECRET)


async def test_unveil_sends_the_name_and_a_pinned_version_only_when_pinned() -> None:
    sakura = Sakura(answer(200, {"Secret": {"Name": "db", "Version": 3, "Value": "v3"}}))
    async with client(sakura) as c:
        latest = await c.unveil(VAULT, "db")
        pinned = await c.unveil(VAULT, "db", 3)
    assert [(r.method, r.url.path) for r in sakura.requests] == [("POST", UNVEIL)] * 2
    assert sakura.bodies() == [
        {"Secret": {"Name": "db"}},
        {"Secret": {"Name": "db", "Version": 3}},
    ]
    assert latest == pinned == Unveiled(name="db", version=3, value="v3")


async def test_a_vault_id_is_one_path_segment() -> None:
    sakura = Sakura(answer(200, {"Secrets": []}))
    async with client(sakura) as c:
        await c.list_secrets("a/../b?c")
    assert sakura.requests[0].url.raw_path.decode().endswith("/vaults/a%2F..%2Fb%3Fc/secrets")


async def test_each_attempt_is_bounded_by_the_timeout_or_the_time_left() -> None:
    sakura = Sakura(answer(503), answer(200, {"Secrets": []}))
    clock = HandClock()
    async with client(sakura, clock, timeout=4.0, deadline=10.0) as c:
        sakura.clock, sakura.late_by = clock, 7.0  # the first answer takes 7 s
        await c.list_secrets(VAULT)
    timeouts = [r.extensions["timeout"]["read"] for r in sakura.requests]
    assert timeouts[0] == 4.0
    assert timeouts[1] == pytest.approx(10.0 - 7.0 - clock.waits[0])


async def test_list_create_delete_send_what_the_api_wants() -> None:
    sakura = Sakura(
        answer(200, {"Secrets": []}),
        answer(201, {"Secret": {"Name": "n", "LatestVersion": 4}}),
        answer(200, {}),
        answer(200, {"Vaults": []}),
    )
    async with client(sakura) as c:
        await c.list_secrets(VAULT)
        assert await c.create(VAULT, "n", "val") == 4
        assert await c.delete(VAULT, "n") is None
        await c.list_vaults()
    sent = [(r.method, r.url.path) for r in sakura.requests]
    assert sent == [
        ("GET", SECRETS),
        ("POST", SECRETS),
        ("DELETE", SECRETS),
        ("GET", "/cloud/zone/tk1a/api/cloud/1.1/secretmanager/vaults"),
    ]
    assert sakura.bodies() == [
        None,
        {"Secret": {"Name": "n", "Value": "val"}},
        {"Secret": {"Name": "n"}},
        None,
    ]


async def test_a_redirect_is_not_followed() -> None:
    sakura = Sakura(httpx.Response(302, headers={"Location": "https://elsewhere.test/"}))
    async with client(sakura) as c:
        err = await failure(c.list_secrets(VAULT))
    assert isinstance(err, BadResponse) and err.status == 302
    assert str(err) == (
        f"listing secrets of vault {VAULT}: Sakura answered HTTP 302 with a body that is not JSON"
    )
    assert len(sakura.requests) == 1


# -- the shape of the answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "complaint"),
    [
        (None, "has no object 'Secret'"),
        ("text", "has no object 'Secret'"),
        ({"Version": 1}, "has no str field 'Value'"),
        ({"Version": 1, "Value": 5}, "has no str field 'Value'"),
        ({"Value": "v"}, "has no integer 'Version'"),
        ({"Value": "v", "Version": "1"}, "has no integer 'Version'"),
        ({"Value": "v", "Version": True}, "has no integer 'Version'"),
    ],
)
async def test_an_unveil_answer_of_another_shape_is_a_bad_response_that_shows_no_value(
    secret: Any, complaint: str
) -> None:
    sakura = Sakura(answer(200, {"Secret": secret, "Other": "hunter2-value"}))
    async with client(sakura) as c:
        err = await failure(c.unveil(VAULT, "db"))
    assert isinstance(err, BadResponse) and err.status == 200
    assert str(err) == f"{READ}: Sakura's answer {complaint}"
    assert "hunter2" not in str(err)


async def test_a_pinned_unveil_without_a_version_in_the_answer_is_that_version() -> None:
    sakura = Sakura(answer(200, {"Secret": {"Name": "db", "Value": "v2", "Version": None}}))
    async with client(sakura) as c:
        assert await c.unveil(VAULT, "db", 2) == Unveiled("db", 2, "v2")


async def test_the_answer_must_be_a_json_object() -> None:
    async with client(Sakura(httpx.Response(200, content=b"[1, 2]"))) as c:
        err = await failure(c.list_vaults())
    assert str(err) == "listing vaults: Sakura answered HTTP 200 with JSON that is not an object"
    assert err.status == 200


@pytest.mark.parametrize(
    ("items", "complaint"),
    [
        ("x", "has no list field 'Secrets'"),
        (["x"], "an entry of 'Secrets' is not an object"),
        ([{"Name": 1, "LatestVersion": 1}], "Sakura's answer has no str field 'Name'"),
        (
            [{"Name": "a", "LatestVersion": True}],
            "Sakura's answer has no int field 'LatestVersion'",
        ),
        ([{"Name": "a"}], "Sakura's answer has no int field 'LatestVersion'"),
    ],
)
async def test_a_listing_of_another_shape_is_a_bad_response(items: Any, complaint: str) -> None:
    async with client(Sakura(answer(200, {"Secrets": items}))) as c:
        err = await failure(c.list_secrets(VAULT))
    assert isinstance(err, BadResponse) and err.status == 200
    assert str(err).startswith(f"listing secrets of vault {VAULT}: ")
    assert str(err).endswith(complaint)


async def test_a_listing_reads_names_and_latest_versions() -> None:
    items = [{"Name": "a", "LatestVersion": 2, "Value": "x"}, {"Name": "b", "LatestVersion": 1}]
    async with client(Sakura(answer(200, {"Secrets": items}))) as c:
        assert await c.list_secrets(VAULT) == [SecretInfo("a", 2), SecretInfo("b", 1)]


async def test_vaults_are_read_field_by_field_and_tolerate_missing_extras() -> None:
    vaults = [
        {
            "ID": 110000000001,
            "Name": "demo",
            "Description": "d",
            "KmsKeyID": "k",
            "Tags": ["t", 1],
            "CreatedAt": "c",
            "ModifiedAt": "m",
        },
        {"ID": "110000000002", "Name": "bare", "Description": 5, "Tags": "nope"},
        {"ID": "110000000003", "Name": "none", "Tags": None},
    ]
    async with client(Sakura(answer(200, {"Vaults": vaults}))) as c:
        got = await c.list_vaults()
    assert got == [
        VaultInfo("110000000001", "demo", "d", "k", ("t", "1"), "c", "m"),
        VaultInfo("110000000002", "bare"),
        VaultInfo("110000000003", "none"),
    ]


@pytest.mark.parametrize(
    ("items", "complaint"),
    [
        (None, "has no list field 'Vaults'"),
        ([1], "an entry of 'Vaults' is not an object"),
        ([{"ID": True, "Name": "x"}], "has no str or int field 'ID'"),
        ([{"ID": 1.5, "Name": "x"}], "has no str or int field 'ID'"),
        ([{"ID": "1"}], "has no str field 'Name'"),
    ],
)
async def test_a_vault_listing_of_another_shape_is_a_bad_response(
    items: Any, complaint: str
) -> None:
    async with client(Sakura(answer(200, {"Vaults": items}))) as c:
        err = await failure(c.list_vaults())
    assert isinstance(err, BadResponse) and err.status == 200
    assert str(err).startswith("listing vaults: ") and str(err).endswith(complaint)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({}, "Sakura's answer has no object 'Secret'"),
        ({"Secret": {"LatestVersion": "4"}}, "Sakura's answer has no int field 'LatestVersion'"),
    ],
)
async def test_a_create_answer_of_another_shape_names_its_status(body: Any, complaint: str) -> None:
    async with client(Sakura(answer(201, body))) as c:
        err = await failure(c.create(VAULT, "n", "val"))
    assert isinstance(err, BadResponse) and err.status == 201
    assert str(err) == f"creating a version of secret 'n' in vault {VAULT}: {complaint}"


# -- errors a user can act on --------------------------------------------------------------


async def test_401_names_the_variables_to_set_and_is_not_retried() -> None:
    sakura = Sakura(answer(401, {"error_msg": "invalid access token or secret"}))
    async with client(sakura) as c:
        err = await failure(c.unveil(VAULT, "db"))
    assert isinstance(err, Unauthorized) and err.status == 401
    assert str(err) == (
        f"{READ}: Sakura refused the credentials (HTTP 401: invalid access token or secret); "
        "check SAKURA_ACCESS_TOKEN and SAKURA_ACCESS_TOKEN_SECRET"
    )
    assert err.sakura_text == "invalid access token or secret"
    assert len(sakura.requests) == 1


async def test_403_says_to_grant_access() -> None:
    async with client(Sakura(answer(403, {"error": "forbidden"}))) as c:
        err = await failure(c.list_vaults())
    assert isinstance(err, Unauthorized) and err.status == 403
    assert str(err) == (
        "listing vaults: the access token may not do this (HTTP 403: forbidden); "
        "grant it Secret Manager access"
    )


async def test_404_of_a_secret_names_it_and_its_vault() -> None:
    async with client(Sakura(answer(404, {"error": 'secret "db" not found'}))) as c:
        err = await failure(c.unveil(VAULT, "db"))
    assert isinstance(err, NotFound) and (err.kind, err.name, err.status) == ("secret", "db", 404)
    assert str(err) == (
        f"{READ}: secret 'db' not found in vault {VAULT} (HTTP 404: secret \"db\" not found)"
    )


async def test_404_that_says_vault_is_the_vault_even_for_a_secret_call() -> None:
    async with client(Sakura(answer(404, {"error": "Vault not found"}))) as c:
        err = await failure(c.delete(VAULT, "db"))
    assert isinstance(err, NotFound) and (err.kind, err.name) == ("vault", VAULT)
    assert str(err) == (
        f"deleting secret 'db' from vault {VAULT}: vault {VAULT} not found "
        "(HTTP 404: Vault not found)"
    )


async def test_404_naming_both_a_vault_and_a_secret_is_the_secret() -> None:
    async with client(Sakura(answer(404, {"error": "secret not in vault"}))) as c:
        err = await failure(c.delete(VAULT, "db"))
    assert isinstance(err, NotFound) and (err.kind, err.name) == ("secret", "db")


async def test_404_without_text_or_vault() -> None:
    async with client(Sakura(httpx.Response(404))) as c:
        err = await failure(c.list_vaults())
    assert isinstance(err, NotFound) and (err.kind, err.name) == ("vault", "")
    assert str(err) == "listing vaults: vault  not found (HTTP 404)"
    assert err.sakura_text == ""


async def test_404_of_a_listing_is_the_vault() -> None:
    async with client(Sakura(answer(404, {"error": "not found"}))) as c:
        err = await failure(c.list_secrets(VAULT))
    assert isinstance(err, NotFound) and (err.kind, err.name) == ("vault", VAULT)
    assert str(err) == (
        f"listing secrets of vault {VAULT}: vault {VAULT} not found (HTTP 404: not found)"
    )


async def test_a_missing_pinned_version_is_told_from_a_missing_secret() -> None:
    sakura = Sakura(
        answer(404, {"error": 'secret "db" not found'}),
        answer(200, {"Secrets": [{"Name": "other", "LatestVersion": 9}, _latest("db", 2)]}),
    )
    async with client(sakura) as c:
        err = await failure(c.unveil(VAULT, "db", 7, tenant="ns"))
    assert isinstance(err, NotFound) and (err.kind, err.name) == ("version", "db@7")
    assert str(err) == (
        f"secret 'db' has no version 7 in vault {VAULT} (latest is 2): secret \"db\" not found"
    )
    assert [r.method for r in sakura.requests] == ["POST", "GET"]


async def test_a_missing_pinned_version_of_a_missing_secret_is_the_secret() -> None:
    sakura = Sakura(
        answer(404, {"error": 'secret "db" not found'}),
        answer(200, {"Secrets": [_latest("other", 3)]}),
    )
    async with client(sakura) as c:
        err = await failure(c.unveil(VAULT, "db", 7))
    assert isinstance(err, NotFound) and (err.kind, err.name) == ("secret", "db")
    assert str(err) == (
        f"reading secret 'db@7' from vault {VAULT}: secret 'db' not found in vault {VAULT} "
        '(HTTP 404: secret "db" not found)'
    )


async def test_a_missing_pinned_version_when_the_listing_fails_says_both_are_possible() -> None:
    sakura = Sakura(answer(404, {"error": 'secret "db" not found'}), answer(403, {}))
    async with client(sakura) as c:
        err = await failure(c.unveil(VAULT, "db", 7))
    assert isinstance(err, NotFound) and (err.kind, err.name) == ("version", "db@7")
    assert str(err) == (
        f"secret 'db' version 7 not found in vault {VAULT} (or the secret does not exist): "
        'secret "db" not found'
    )


async def test_a_missing_vault_or_latest_needs_no_listing() -> None:
    sakura = Sakura(answer(404, {"error": "vault not found"}))
    async with client(sakura) as c:
        vault = await failure(c.unveil(VAULT, "db", 7))
        latest = await failure(c.unveil(VAULT, "db"))
    assert isinstance(vault, NotFound) and vault.kind == "vault"
    assert isinstance(latest, NotFound) and latest.kind == "vault"
    assert [r.method for r in sakura.requests] == ["POST", "POST"]


def _latest(name: str, version: int) -> dict[str, Any]:
    return {"Name": name, "LatestVersion": version}


@pytest.mark.parametrize(
    ("status", "kind", "said"),
    [
        (400, Rejected, "Sakura rejected the request"),
        (409, Rejected, "Sakura rejected the request"),
        (499, Rejected, "Sakura rejected the request"),
        (500, Unavailable, "Sakura failed"),
        (599, Unavailable, "Sakura failed"),
    ],
)
async def test_other_statuses(status: int, kind: type[SakuraError], said: str) -> None:
    async with client(Sakura(answer(status, {"message": "why"}))) as c:
        err = await failure(c.create(VAULT, "n", "val"))
    assert type(err) is kind and err.status == status
    assert (
        str(err)
        == f"creating a version of secret 'n' in vault {VAULT}: {said} (HTTP {status}: why)"
    )
    assert err.sakura_text == "why"


async def test_429_without_retry_after_backs_off_and_holds_nobody_else() -> None:
    clock = HandClock()
    sakura = Sakura(answer(429, {"error": "slow down"}), answer(200, {"Vaults": []}))
    async with client(sakura, clock) as c:
        assert await c.list_vaults() == []
        assert c.limiter.next_slot_in() == 0  # no hold-off for the others
    assert len(clock.waits) == 1 and 0.01 <= clock.waits[0] <= 0.02  # the first backoff step


async def test_429_message_and_retry_after() -> None:
    async with client(Sakura(answer(429, {"error": "slow down"})), max_retries=0) as c:
        bare = await failure(c.list_vaults())
    async with client(
        Sakura(answer(429, {"error": "slow down"}, **{"Retry-After": "2.5"})), max_retries=0
    ) as c:
        timed = await failure(c.list_vaults())
    assert isinstance(bare, Throttled) and (bare.status, bare.retry_after) == (429, None)
    assert str(bare) == "listing vaults: Sakura is throttling requests (HTTP 429: slow down)"
    assert isinstance(timed, Throttled) and (timed.status, timed.retry_after) == (429, 2.5)
    assert str(timed) == (
        "listing vaults: Sakura is throttling requests (HTTP 429: slow down); "
        "Sakura asks to retry after 2.5s"
    )


async def test_a_429s_retry_after_is_waited_once_in_the_limiter_then_shared() -> None:
    clock = HandClock()
    sakura = Sakura(answer(429, {}, **{"Retry-After": "3"}), answer(200, {"Vaults": []}))
    async with client(sakura, clock) as c:
        assert await c.list_vaults() == []
    assert clock.waits == [pytest.approx(3.0)]  # the limiter's hold-off, not a second sleep


async def test_a_5xx_retry_after_replaces_the_backoff_but_holds_nobody_else() -> None:
    clock = HandClock()
    sakura = Sakura(answer(503, {}, **{"Retry-After": "4"}), answer(200, {"Vaults": []}))
    async with client(sakura, clock) as c:
        assert await c.list_vaults() == []
        assert clock.waits == [4.0]
        assert c.limiter.next_slot_in() == 0


# -- the request loop ---------------------------------------------------------------------


async def test_a_safe_call_is_retried_up_to_max_retries() -> None:
    clock = HandClock()
    sakura = Sakura(answer(502, {"error": "bad gateway"}))
    async with client(sakura, clock, max_retries=3) as c:
        err = await failure(c.unveil(VAULT, "db"))
    assert len(sakura.requests) == 4 and len(clock.waits) == 3
    assert str(err) == f"{READ}: Sakura failed (HTTP 502: bad gateway)"  # no deadline note


async def test_no_retries_at_all() -> None:
    sakura = Sakura(answer(503))
    async with client(sakura, max_retries=0) as c:
        await failure(c.unveil(VAULT, "db"))
    assert len(sakura.requests) == 1


async def test_the_backoff_doubles_between_attempts() -> None:
    clock = HandClock()
    sakura = Sakura(answer(500))
    backoff = Backoff(base=1.0, cap=4.0, rng=random.Random(3))
    async with client(sakura, clock, max_retries=4, backoff=backoff, deadline=60.0) as c:
        await failure(c.list_vaults())
    steps = [1.0, 2.0, 4.0, 4.0]
    assert [s / 2 <= got <= s for s, got in zip(steps, clock.waits, strict=True)] == [True] * 4


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 501])
async def test_a_status_that_will_not_change_is_not_retried(status: int) -> None:
    sakura = Sakura(answer(status))
    async with client(sakura) as c:
        await failure(c.list_vaults())
    assert len(sakura.requests) == 1


async def test_unsafe_calls_are_never_retried_and_say_they_may_have_taken_effect() -> None:
    sakura = Sakura(httpx.ConnectError("refused"))
    async with client(sakura) as c:
        created = await failure(c.create(VAULT, "n", "val"))
        deleted = await failure(c.delete(VAULT, "n"))
        read = await failure(c.list_vaults())
    may = "; it may or may not have taken effect, list the secrets to check"
    assert str(created) == (
        f"creating a version of secret 'n' in vault {VAULT}: cannot reach {BASE} "
        f"(ConnectError: refused){may}"
    )
    assert str(deleted).endswith(may)
    assert str(read) == f"listing vaults: cannot reach {BASE} (ConnectError: refused)"
    assert [r.method for r in sakura.requests[:2]] == ["POST", "DELETE"]
    assert len(sakura.requests) == 2 + 7  # the listing was retried: max_retries=6


async def test_a_timeout_of_an_unsafe_call() -> None:
    sakura = Sakura(httpx.ReadTimeout("slow"), answer(201, {"Secret": {"LatestVersion": 1}}))
    async with client(sakura, timeout=3.0) as c:
        err = await failure(c.create(VAULT, "n", "val"))
    assert isinstance(err, Unavailable) and err.status is None
    assert str(err) == (
        f"creating a version of secret 'n' in vault {VAULT}: Sakura did not answer within 3s; "
        "it may or may not have taken effect, list the secrets to check"
    )
    assert len(sakura.requests) == 1


async def test_timeouts_of_a_safe_call_are_retried() -> None:
    clock = HandClock()
    sakura = Sakura(httpx.ReadTimeout("slow"), TimeoutError(), answer(200, {"Vaults": []}))
    async with client(sakura, clock, timeout=3.0) as c:
        assert await c.list_vaults() == []
    assert len(sakura.requests) == 3 and len(clock.waits) == 2


async def test_a_timeout_when_the_deadline_cut_it_short_reports_the_failure_before_it() -> None:
    clock = HandClock()
    sakura = Sakura(answer(503, {"error": "maintenance"}), httpx.ReadTimeout("slow"))
    async with client(sakura, clock, deadline=2.0, timeout=5.0) as c:
        err = await failure(c.unveil(VAULT, "db"))
    assert isinstance(err, Unavailable) and err.status == 503
    assert str(err) == (
        f"{READ}: Sakura failed (HTTP 503: maintenance) "
        "(gave up after 2 attempts: the 2s deadline ran out)"
    )


async def test_a_first_timeout_is_reported_as_such_even_near_the_deadline() -> None:
    sakura = Sakura(httpx.ReadTimeout("slow"))
    async with client(sakura, deadline=2.0, timeout=5.0, max_retries=0) as c:
        err = await failure(c.unveil(VAULT, "db"))
    assert str(err) == f"{READ}: Sakura did not answer within 2s"


async def test_a_timeout_with_time_left_for_a_whole_attempt_is_its_own_failure() -> None:
    clock = HandClock()
    sakura = Sakura(answer(503), httpx.ReadTimeout("slow"))
    async with client(sakura, clock, deadline=20.0, timeout=5.0, max_retries=1) as c:
        err = await failure(c.unveil(VAULT, "db"))
    assert str(err) == f"{READ}: Sakura did not answer within 5s"


async def test_a_retry_that_would_pass_the_deadline_is_not_waited_for() -> None:
    clock = HandClock()
    sakura = Sakura(answer(503, {}, **{"Retry-After": "9"}))
    async with client(sakura, clock, deadline=9.0) as c:
        err = await failure(c.unveil(VAULT, "db"))
    assert clock.waits == [] and len(sakura.requests) == 1
    assert str(err) == (
        f"{READ}: Sakura failed (HTTP 503) (gave up after 1 attempts: the next retry in 9s "
        "would pass the 9s deadline)"
    )


async def test_a_retry_just_within_the_deadline_is_waited_for() -> None:
    clock = HandClock()
    sakura = Sakura(answer(503, {}, **{"Retry-After": "8.9"}), answer(200, {"Vaults": []}))
    async with client(sakura, clock, deadline=9.0) as c:
        assert await c.list_vaults() == []
    assert clock.waits == [8.9]


async def test_a_late_wake_up_past_the_deadline_sends_nothing_more() -> None:
    clock = HandClock()

    async def oversleep(seconds: float) -> None:  # a machine too busy to wake us in time
        await clock.sleep(seconds * 1000)

    sakura = Sakura(answer(503))
    async with SakuraClient(
        SakuraConfig(TOKEN, SECRET, base_url=BASE),
        transport=httpx.MockTransport(sakura),
        clock=clock,
        sleep=oversleep,
        deadline=1.5,
        backoff=Backoff(base=0.02, cap=0.02),
    ) as c:
        err = await failure(c.unveil(VAULT, "db"))
    assert isinstance(err, Unavailable) and err.status is None
    assert str(err) == f"{READ}: no answer within the 1.5s deadline"
    assert len(sakura.requests) == 1


async def test_the_limiter_is_given_the_time_left_and_the_tenant() -> None:
    seen: list[tuple[float | None, str | None]] = []

    class Recording(RateLimiter):
        async def acquire(
            self, max_wait: float | None = None, *, tenant: str | None = None
        ) -> bool:
            seen.append((max_wait, tenant))
            return await super().acquire(max_wait, tenant=tenant)

    clock = HandClock()
    sakura = Sakura(answer(200, {"Secrets": [], "Vaults": []}))
    limiter = Recording(per_minute=60, burst=5, clock=clock, sleep=clock.sleep)
    async with client(sakura, clock, limiter=limiter, deadline=7.0) as c:
        clock.now += 1  # time passes between calls, not within one
        await c.list_secrets(VAULT, tenant="ns-a")
        await c.list_vaults()
    assert seen == [(7.0, "ns-a"), (7.0, None)]


async def test_no_slot_within_the_deadline_is_throttled_at_once_by_the_client() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=30, burst=1, clock=clock, sleep=clock.sleep)
    sakura = Sakura(answer(200, {"Vaults": []}))
    async with client(sakura, clock, limiter=limiter, deadline=1.5) as c:
        await c.list_vaults()
        err = await failure(c.list_vaults())
    assert isinstance(err, Throttled) and err.status is None and err.retry_after == 2.0
    assert str(err) == (
        "listing vaults: the client-side rate limit (30/min, or a Retry-After from Sakura) "
        "leaves no slot within the 1.5s deadline; the next is in 2s"
    )
    assert clock.waits == [] and len(sakura.requests) == 1


async def test_a_crowded_tenant_is_refused_naming_the_operation() -> None:
    clock = HandClock()
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock, max_waiting=1)
    assert limiter.reserve() == 0
    waiting = asyncio.create_task(limiter.acquire(tenant="ns"))
    await asyncio.sleep(0)
    async with client(Sakura(answer(200, {})), clock, limiter=limiter) as c:
        err = await failure(c.unveil(VAULT, "db", tenant="ns"))
    waiting.cancel()
    assert isinstance(err, Crowded) and err.status is None
    assert (err.retry_after, err.waiting) == (1.0, 1)
    assert str(err) == (
        f"{READ}: this tenant already has 1 call(s) waiting for the client-side rate limit "
        "(60/min), as many as it may"
    )


async def test_the_default_limiter_runs_on_the_clients_clock() -> None:
    clock = HandClock(0.0)
    c = SakuraClient(
        SakuraConfig(TOKEN, SECRET, base_url=BASE),
        transport=httpx.MockTransport(Sakura(answer(200, {"Vaults": []}))),
        clock=clock,
        sleep=clock.sleep,
    )
    async with c:
        assert (c.limiter.per_minute, c.limiter.burst) == (90, 5)
        for _ in range(6):
            await c.list_vaults()
    assert clock.waits == [pytest.approx(60 / 90)]  # the sixth call waited for its slot


async def test_a_retry_is_logged_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sakura.client")
    sakura = Sakura(
        answer(503), httpx.ConnectError(f"refused {SECRET}"), answer(200, {"Vaults": []})
    )
    async with client(sakura, backoff=Backoff(base=2.0, cap=2.0, rng=random.Random(1))) as c:
        await c.list_vaults()
    lines = [r.getMessage() for r in caplog.records if r.name == "sakura.client"]
    assert len(lines) == 2
    assert lines[0].startswith("listing vaults: attempt 1 failed (503), retrying in 1.")
    assert lines[1].startswith("listing vaults: attempt 2 failed (Unavailable), retrying in ")
    assert SECRET not in "".join(lines)


# -- secrecy ----------------------------------------------------------------------------------


async def test_credentials_and_a_created_value_are_scrubbed_from_sakuras_text() -> None:
    said = f"bad {TOKEN} {SECRET} value=never-show-9q"
    sakura = Sakura(answer(400, {"error": said}), httpx.ConnectError(f"{TOKEN} down"))
    async with client(sakura) as c:
        err = await failure(c.create(VAULT, "n", "never-show-9q"))
        unreachable = await failure(c.create(VAULT, "n", "x"))
    assert err.sakura_text == "bad <redacted> <redacted> value=<redacted>"
    assert str(err).endswith("(HTTP 400: bad <redacted> <redacted> value=<redacted>)")
    assert TOKEN not in str(unreachable) and "(ConnectError: <redacted> down)" in str(unreachable)


async def test_an_error_never_echoes_an_unveil_answer() -> None:
    body = {"Secret": {"Name": "db", "Version": "2", "Value": "the-value-7Yq"}}
    async with client(Sakura(answer(200, body))) as c:
        err = await failure(c.unveil(VAULT, "db"))
    assert "the-value-7Yq" not in str(err) and "the-value-7Yq" not in repr(err)


def test_repr_shows_the_endpoint_only() -> None:
    c = client(Sakura(answer(200, {})))
    assert repr(c) == f"SakuraClient(base_url={BASE!r})"
    assert TOKEN not in repr(c) and SECRET not in repr(c)


async def test_leaving_the_block_closes_the_connection_pool() -> None:
    c = client(Sakura(answer(200, {"Vaults": []})))
    async with c as entered:
        assert entered is c
    with pytest.raises(RuntimeError):
        await c.list_vaults()


def test_a_ca_bundle_file_or_directory_becomes_an_ssl_context(tmp_path: Any) -> None:
    assert _tls(True) is True and _tls(False) is False
    from_file = _tls(certifi.where())
    assert isinstance(from_file, ssl.SSLContext) and from_file.get_ca_certs()
    from_dir = _tls(str(tmp_path))
    assert isinstance(from_dir, ssl.SSLContext) and from_dir.get_ca_certs() == []
    assert from_dir.verify_mode == ssl.CERT_REQUIRED


# -- edges the mutation run found -------------------------------------------------------------


async def test_a_get_carries_the_json_content_type_too() -> None:
    sakura = Sakura(answer(200, {"Vaults": []}))
    async with client(sakura) as c:
        await c.list_vaults()
    assert sakura.requests[0].method == "GET" and not sakura.requests[0].content
    assert sakura.requests[0].headers["Content-Type"] == "application/json"


def test_the_default_limits() -> None:
    c = SakuraClient(SakuraConfig(TOKEN, SECRET, base_url=BASE))
    assert (c.deadline, c.timeout, c.max_retries) == (30.0, 10.0, 6)
    assert (c.backoff.base, c.backoff.cap) == (1.0, 64.0)


async def test_the_default_backoff_is_the_sdks() -> None:
    clock = HandClock()
    sakura = Sakura(answer(503), answer(200, {"Vaults": []}))
    c = SakuraClient(
        SakuraConfig(TOKEN, SECRET, base_url=BASE),
        transport=httpx.MockTransport(sakura),
        clock=clock,
        sleep=clock.sleep,
    )
    async with c:
        assert await c.list_vaults() == []
    assert len(clock.waits) == 1 and 0.5 <= clock.waits[0] <= 1.0  # the first step of 1 s


async def test_only_the_credentials_are_scrubbed_from_a_reads_error() -> None:
    async with client(Sakura(answer(400, {"error": "name XXXX is invalid"}))) as c:
        err = await failure(c.list_vaults())
    assert err.sakura_text == "name XXXX is invalid"


async def test_waking_exactly_at_the_deadline_sends_nothing_more() -> None:
    clock = HandClock()
    start = clock.now

    async def to_the_deadline(seconds: float) -> None:
        clock.waits.append(seconds)
        clock.now = start + 1.5

    sakura = Sakura(answer(503))
    async with SakuraClient(
        SakuraConfig(TOKEN, SECRET, base_url=BASE),
        transport=httpx.MockTransport(sakura),
        clock=clock,
        sleep=to_the_deadline,
        deadline=1.5,
        backoff=Backoff(base=0.02, cap=0.02),
    ) as c:
        err = await failure(c.unveil(VAULT, "db"))
    assert str(err) == f"{READ}: no answer within the 1.5s deadline"
    assert len(sakura.requests) == 1


async def test_a_timeout_with_exactly_a_whole_attempt_left_is_its_own_failure() -> None:
    clock = HandClock()
    sakura = Sakura(answer(503, {}, **{"Retry-After": "0"}), httpx.ReadTimeout("slow"))
    async with client(sakura, clock, deadline=5.0, timeout=5.0, max_retries=1) as c:
        err = await failure(c.unveil(VAULT, "db"))
    assert clock.waits == [0.0]
    assert str(err) == f"{READ}: Sakura did not answer within 5s"


async def test_a_429s_wait_is_spent_in_the_limiters_line() -> None:
    """While the Retry-After runs out, the call waits in its tenant's line (other tenants are
    served round-robin with it), not in a sleep of its own before joining."""
    clock = HandClock()
    in_line: list[int] = []
    limiter: RateLimiter

    async def sleep(seconds: float) -> None:
        in_line.append(limiter.waiting("ns"))
        await clock.sleep(seconds)

    limiter = RateLimiter(per_minute=60_000, burst=100, clock=clock, sleep=sleep)
    sakura = Sakura(answer(429, {}, **{"Retry-After": "3"}), answer(200, {"Secrets": []}))
    async with client(sakura, clock, limiter=limiter) as c:
        assert await c.list_secrets(VAULT, tenant="ns") == []
    assert in_line == [1] and clock.waits == [pytest.approx(3.0)]


async def test_telling_a_missing_version_is_the_callers_read_too() -> None:
    seen: list[str | None] = []

    class Recording(RateLimiter):
        async def acquire(
            self, max_wait: float | None = None, *, tenant: str | None = None
        ) -> bool:
            seen.append(tenant)
            return await super().acquire(max_wait, tenant=tenant)

    clock = HandClock()
    sakura = Sakura(answer(404, {"error": "not found"}), answer(200, {"Secrets": []}))
    limiter = Recording(per_minute=60_000, burst=100, clock=clock, sleep=clock.sleep)
    async with client(sakura, clock, limiter=limiter) as c:
        await failure(c.unveil(VAULT, "db", 2, tenant="ns"))
    assert seen == ["ns", "ns"]  # the listing waits in the same tenant's line


async def test_a_404_for_a_create_is_the_vault() -> None:
    async with client(Sakura(answer(404, {"error": "not found"}))) as c:
        err = await failure(c.create(VAULT, "n", "val"))
    assert isinstance(err, NotFound) and (err.kind, err.name) == ("vault", VAULT)
    assert str(err) == (
        f"creating a version of secret 'n' in vault {VAULT}: vault {VAULT} not found "
        "(HTTP 404: not found)"
    )


@pytest.mark.parametrize(
    ("call", "what"),
    [
        ("unveil", READ),
        ("create", f"creating a version of secret 'db' in vault {VAULT}"),
    ],
)
async def test_a_success_that_is_not_json_names_the_operation(call: str, what: str) -> None:
    async with client(Sakura(httpx.Response(200, content=b"<html>"))) as c:
        if call == "unveil":
            err = await failure(c.unveil(VAULT, "db"))
        else:
            err = await failure(c.create(VAULT, "db", "v"))
    assert str(err) == f"{what}: Sakura answered HTTP 200 with a body that is not JSON"


async def test_a_pinned_unveil_reports_the_version_sakura_answered() -> None:
    """The client does not paper over a wrong version: the cache above it checks the pin."""
    sakura = Sakura(answer(200, {"Secret": {"Name": "db", "Version": 3, "Value": "v3"}}))
    async with client(sakura) as c:
        assert (await c.unveil(VAULT, "db", 2)).version == 3
