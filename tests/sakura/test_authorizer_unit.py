"""What each kind of credentials puts on a request, on a hand clock and a stand-in exchange."""

from __future__ import annotations

import httpx
from support.clock import HandClock
from support.principal_kit import private_pem, rsa_key

from sakura.authorizer import (
    API_KEY_HINT,
    PRINCIPAL_HINT,
    Authorizer,
    GrantCredentials,
    hint_for,
    skew_note,
)
from sakura.bearer import BearerToken
from sakura.credentials import ApiKey
from sakura.principal import ServicePrincipal


def principal(kid: str = "kid-1") -> ServicePrincipal:
    return ServicePrincipal("113000000001", kid, private_pem(rsa_key()))


def sent(auth: httpx.Auth) -> str:
    request = httpx.Request("GET", "https://sakura.example/")
    flow = auth.sync_auth_flow(request)
    return next(flow).headers["Authorization"]


async def test_an_api_key_is_sent_as_basic_and_has_nothing_to_renew() -> None:
    async def never(key: GrantCredentials) -> BearerToken:
        raise AssertionError("an API key is never exchanged")

    authorizer = Authorizer(never)
    authorization = await authorizer.authorize(ApiKey("tok", "sec"))
    assert sent(authorization.auth) == httpx.BasicAuth("tok", "sec")._auth_header
    assert authorization.bearer == ""
    assert authorizer.refused(authorization) is False
    assert authorizer.expires_in() is None and authorizer.bearer_values == ()


async def test_a_principal_is_sent_as_bearer_renewed_per_key_on_the_given_clock() -> None:
    clock, bought = HandClock(), []

    async def exchange(key: GrantCredentials) -> BearerToken:
        bought.append(key.fingerprint)
        return BearerToken(f"token-{len(bought)}", 3600)

    authorizer = Authorizer(exchange, clock=clock)
    first = await authorizer.authorize(principal())
    assert sent(first.auth) == "Bearer token-1" and first.bearer == "token-1"
    clock.now += 100
    assert authorizer.expires_in() == 3500
    assert authorizer.refused(first) is True
    again = await authorizer.authorize(principal())
    assert again.bearer == "token-2"
    rotated = await authorizer.authorize(principal("kid-2"))  # a new key: a token of its own
    assert rotated.bearer == "token-3"
    assert authorizer.bearer_values == ("token-3",)
    assert len(set(bought)) == 2


def test_the_hint_names_what_to_check_for_each_kind() -> None:
    assert hint_for(ApiKey("t", "s")) == API_KEY_HINT
    assert hint_for(principal()) == PRINCIPAL_HINT
    assert "SAKURA_SERVICE_PRINCIPAL_KEY_ID" in PRINCIPAL_HINT
    assert "SAKURA_ACCESS_TOKEN_SECRET" in API_KEY_HINT


def test_the_skew_note_says_how_far_and_which_way_beyond_a_minute() -> None:
    date = "Sat, 05 Dec 2026 11:00:00 GMT"
    sakura_now = 1796468400.0  # that Date, in Unix seconds
    assert skew_note(date, sakura_now + 60) == ""
    assert skew_note(date, sakura_now - 60) == ""
    assert skew_note(date, sakura_now + 61) == (
        "; this host's clock is 61 s ahead of Sakura's: set the node's time right (NTP), a "
        "grant's iat and exp are judged by Sakura's clock"
    )
    assert "600 s behind Sakura's" in skew_note(date, sakura_now - 600)
    assert skew_note(None, sakura_now + 600) == skew_note("not a date", sakura_now) == ""


def test_only_a_principals_hint_carries_the_skew() -> None:
    date = "Sat, 05 Dec 2026 11:00:00 GMT"
    assert hint_for(ApiKey("t", "s"), date, 1796468400.0 + 600) == API_KEY_HINT
    assert hint_for(principal(), date, 1796468400.0 + 600).startswith(PRINCIPAL_HINT + "; ")
    assert hint_for(principal(), date, 1796468400.0) == PRINCIPAL_HINT
