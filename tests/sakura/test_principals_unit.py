"""The emulator's service-principal checks without HTTP: each boundary, on a hand clock."""

from __future__ import annotations

import pytest
from support.clock import HandClock
from support.principal_kit import KID, PRINCIPAL_ID, assertion, public_pem, rsa_key

from emulator.principals import CLOCK_SKEW, GRANT_TYPE, Principals, Refused

AUD = "http://emulator/service-principals/oauth2/token"


@pytest.fixture
def clock() -> HandClock:
    return HandClock(1_700_000_000.0)


@pytest.fixture
def principals(clock: HandClock) -> Principals:
    p = Principals(clock=clock)
    p.add_key(PRINCIPAL_ID, KID, public_pem(rsa_key()))
    return p


def exchange(p: Principals, jwt_text: str | None, **form: str) -> str:
    fields = {"grant_type": GRANT_TYPE} | ({"assertion": jwt_text} if jwt_text else {}) | form
    return p.exchange(fields, AUD).access_token


def refusal(p: Principals, jwt_text: str | None, **form: str) -> tuple[int, str, str, str]:
    with pytest.raises(Refused) as caught:
        exchange(p, jwt_text, **form)
    r = caught.value
    return r.status, r.title, r.detail, r.field


def test_the_default_lifetime_is_an_hour(principals: Principals, clock: HandClock) -> None:
    token = exchange(principals, assertion(AUD, iat=clock.now))
    issued = principals._tokens[token]
    assert issued.principal_id == PRINCIPAL_ID
    assert issued.expires_at == clock.now + 3600
    clock.now += 3599.5
    assert principals.accepts(token)
    clock.now += 0.5
    assert not principals.accepts(token)


def test_iat_and_exp_boundaries_allow_the_skew(principals: Principals, clock: HandClock) -> None:
    now = clock.now
    assert exchange(principals, assertion(AUD, iat=now + CLOCK_SKEW, lifetime=300))
    assert refusal(principals, assertion(AUD, iat=now + CLOCK_SKEW + 1))[2] == (
        "the assertion's iat is in the future: check the client's clock"
    )
    assert exchange(principals, assertion(AUD, iat=now - 300, exp=now - CLOCK_SKEW))
    assert refusal(principals, assertion(AUD, iat=now - 300, exp=now - CLOCK_SKEW - 1))[2] == (
        "the assertion has expired (exp is past): check the client's clock"
    )
    assert exchange(principals, assertion(AUD, iat=now, lifetime=300))


def test_a_list_audience_holding_ours_is_accepted(principals: Principals, clock: HandClock) -> None:
    import jwt

    token = jwt.encode(
        {
            "iss": PRINCIPAL_ID,
            "sub": PRINCIPAL_ID,
            "aud": ["x", AUD],
            "iat": int(clock.now),
            "exp": int(clock.now) + 60,
        },
        rsa_key(),
        "RS256",
        headers={"kid": KID},
    )
    assert exchange(principals, token)


def test_non_numeric_times_and_a_broken_jwt_are_named(
    principals: Principals, clock: HandClock
) -> None:
    import jwt

    claims = {"iss": PRINCIPAL_ID, "sub": PRINCIPAL_ID, "aud": AUD, "iat": "now", "exp": True}
    token = jwt.encode(claims, rsa_key(), "RS256", headers={"kid": KID})
    assert refusal(principals, token)[2] in {
        "iat and exp must be numbers (Unix seconds)",
        "the assertion is not a valid JWT",
    }
    not_json = jwt.api_jws.encode(b"not json", rsa_key(), "RS256", headers={"kid": KID})
    assert refusal(principals, not_json) == (
        401,
        "authentication_failed",
        "the assertion is not a valid JWT",
        "",
    )


def test_a_malformed_form_names_its_field(principals: Principals) -> None:
    assert refusal(principals, "x", grant_type="password") == (
        400,
        "invalid",
        f"grant_type must be {GRANT_TYPE}",
        "grant_type",
    )
    with pytest.raises(Refused) as caught:
        principals.exchange({}, AUD)
    assert caught.value.field == "grant_type"
    assert refusal(principals, None) == (
        400,
        "required",
        "assertion is required: a signed JWT",
        "assertion",
    )


def test_key_sizes_sakura_takes(principals: Principals) -> None:
    principals.add_key("p", "big", public_pem(rsa_key("large", 4096)))
    with pytest.raises(ValueError, match="Sakura takes RSA public keys of 2048 to 4096 bits"):
        principals.add_key("p", "small", public_pem(rsa_key("small", 1024)))
    with pytest.raises(KeyError):
        principals.set_enabled("nope", False)


def test_tokens_expiring_exactly_now_are_forgotten_first(clock: HandClock) -> None:
    import emulator.principals as module

    p = Principals(token_lifetime=10, clock=clock)
    p.add_key(PRINCIPAL_ID, KID, public_pem(rsa_key()))
    old = module.MAX_TOKENS
    module.MAX_TOKENS = 3
    try:
        first = exchange(p, assertion(AUD, iat=clock.now))
        clock.now += 5
        second = exchange(p, assertion(AUD, iat=clock.now))
        third = exchange(p, assertion(AUD, iat=clock.now))
        clock.now += 5  # `first` expires exactly now
        fourth = exchange(p, assertion(AUD, iat=clock.now))
        assert list(p._tokens) == [second, third, fourth]
        fifth = exchange(p, assertion(AUD, iat=clock.now))  # none expired: the oldest goes
        assert list(p._tokens) == [third, fourth, fifth]
        assert first not in p._tokens
    finally:
        module.MAX_TOKENS = old
