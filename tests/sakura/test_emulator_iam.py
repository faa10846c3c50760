"""The emulator's IAM token endpoint over HTTP: what Sakura accepts, what it refuses and why.

Every refusal is a 401 (or 400 for a malformed form) with its own `detail`, so a client's
mistake shows in a test as it would against Sakura; Secret Manager then takes the Bearer token
until it expires.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.emulator import EmulatorHandle, serve_emulator
from support.principal_kit import (
    KID,
    PRINCIPAL_ID,
    assertion,
    ec_key,
    public_pem,
    rsa_key,
    seed_principal,
)

from emulator import Emulator, EmulatorConfig
from emulator.principals import GRANT_TYPE, MAX_TOKENS, Principals, Refused
from emulator.seed import SeedError, load_seed
from emulator.store import Store

VAULT = "110000000001"
PATH = "/service-principals/oauth2/token"


@pytest.fixture
def iam() -> Iterator[EmulatorHandle]:
    seed = {
        "vaults": [{"id": VAULT, "secrets": {"db": "pw"}}],
        "service_principals": [seed_principal()],
    }
    app = Emulator(EmulatorConfig(access_token="t", access_token_secret="s", seed=seed))
    with serve_emulator(app) as handle:
        yield handle


def grant(url: str, jwt_text: str, **extra: str) -> httpx.Response:
    return httpx.post(url, data={"grant_type": GRANT_TYPE, "assertion": jwt_text, **extra})


def test_a_signed_grant_buys_a_bearer_token_secret_manager_accepts(iam: EmulatorHandle) -> None:
    token_url = iam.url + PATH
    answer = grant(token_url, assertion(token_url))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["token_expired_at"].endswith("+00:00")
    assert answer.headers["cache-control"] == "no-store"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    unveil = httpx.post(
        f"{iam.url}/secretmanager/vaults/{VAULT}/secrets/unveil",
        json={"Secret": {"Name": "db"}},
        headers=bearer,
    )
    assert unveil.status_code == 200 and unveil.json()["Secret"]["Value"] == "pw"
    assert iam.knobs.calls["token"] == 1
    assert iam.app.principals.stats()["exchanges"] == 1


def test_the_production_prefix_serves_the_same_endpoint(iam: EmulatorHandle) -> None:
    token_url = iam.url + "/cloud/api/iam/1.0" + PATH
    assert grant(token_url, assertion(token_url)).status_code == 200


def test_an_expired_or_unknown_bearer_token_is_refused(iam: EmulatorHandle) -> None:
    now = [time.time()]
    iam.app.principals.clock = lambda: now[0]
    iam.app.principals.token_lifetime = 60
    token_url = iam.url + PATH
    token = grant(token_url, assertion(token_url)).json()["access_token"]
    list_url = f"{iam.url}/secretmanager/vaults"
    assert httpx.get(list_url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    now[0] += 61
    expired = httpx.get(list_url, headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401
    assert expired.json()["error_msg"] == "invalid or expired bearer token"
    wrong = httpx.get(list_url, headers={"Authorization": "Bearer made-up"})
    assert wrong.status_code == 401


def test_expire_tokens_knob_ends_every_token_now(iam: EmulatorHandle) -> None:
    token_url = iam.url + PATH
    token = grant(token_url, assertion(token_url)).json()["access_token"]
    knob = httpx.post(iam.url + "/_emulator/principals", json={"expire_tokens": True})
    assert knob.status_code == 200 and knob.json()["live_tokens"] == 0
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{iam.url}/secretmanager/vaults", headers=headers).status_code == 401


def _refusals(token_url: str) -> list[tuple[str, str, str]]:
    now = time.time()
    other = rsa_key("other")
    return [
        (
            "unknown kid",
            assertion(token_url, kid="nope"),
            "no service principal key has kid 'nope'",
        ),
        ("no kid", assertion(token_url, kid=None), "no service principal key has kid None"),
        (
            "another key's signature",
            assertion(token_url, key=other),
            "the assertion's signature does not match the key's public key",
        ),
        (
            "another principal",
            assertion(token_url, iss="113000000999", sub="113000000999"),
            f"iss and sub must both be the service principal ID of key '{KID}' ({PRINCIPAL_ID})",
        ),
        (
            "sub differs",
            assertion(token_url, sub="113000000999"),
            f"iss and sub must both be the service principal ID of key '{KID}' ({PRINCIPAL_ID})",
        ),
        ("no iss", assertion(token_url, iss=None), "the assertion has no 'iss' claim"),
        (
            "wrong aud",
            assertion("https://elsewhere.example/token"),
            f"aud must be the token endpoint's URL, {token_url}",
        ),
        (
            "expired",
            assertion(token_url, iat=now - 600, lifetime=120),
            "the assertion has expired (exp is past): check the client's clock",
        ),
        (
            "from the future",
            assertion(token_url, iat=now + 600),
            "the assertion's iat is in the future: check the client's clock",
        ),
        (
            "too long",
            assertion(token_url, lifetime=301),
            "the assertion's exp must be at most 5 minutes after its iat",
        ),
        (
            "HS256",
            assertion(token_url, key="shared-secret-of-32-bytes-or-more!", algorithm="HS256"),
            "the assertion must be signed with RS256, not 'HS256'",
        ),
        ("not a JWT", "abc.def", "the assertion is not a JWT"),
    ]


@pytest.mark.parametrize("case", range(12))
def test_each_wrong_grant_is_refused_with_its_own_detail(iam: EmulatorHandle, case: int) -> None:
    token_url = iam.url + PATH
    name, jwt_text, detail = _refusals(token_url)[case]
    answer = grant(token_url, jwt_text)
    assert answer.status_code == 401, name
    assert answer.json() == {
        "type": "about:blank",
        "status": 401,
        "title": "authentication_failed",
        "detail": detail,
    }, name


def test_a_disabled_key_is_refused_and_enabled_again(iam: EmulatorHandle) -> None:
    token_url = iam.url + PATH
    httpx.post(iam.url + "/_emulator/principals", json={"disable": [KID]})
    refused = grant(token_url, assertion(token_url))
    assert refused.status_code == 401
    assert refused.json()["detail"] == f"service principal key '{KID}' is disabled"
    httpx.post(iam.url + "/_emulator/principals", json={"enable": [KID]})
    assert grant(token_url, assertion(token_url)).status_code == 200


@pytest.mark.parametrize(
    ("data", "field", "detail"),
    [
        ({"grant_type": "client_credentials", "assertion": "x"}, "grant_type", "grant_type must"),
        ({"grant_type": GRANT_TYPE}, "assertion", "assertion is required"),
    ],
)
def test_a_malformed_form_is_a_400_naming_the_field(
    iam: EmulatorHandle, data: dict[str, str], field: str, detail: str
) -> None:
    answer = httpx.post(iam.url + PATH, data=data)
    assert answer.status_code == 400
    body = answer.json()
    assert body["detail"].startswith(detail)
    assert body["errors"][field][0]["message"] == body["detail"]


def test_a_json_body_is_refused_as_not_a_form(iam: EmulatorHandle) -> None:
    answer = httpx.post(iam.url + PATH, json={"grant_type": GRANT_TYPE, "assertion": "x"})
    assert answer.status_code == 400
    assert answer.json()["errors"]["non_field_errors"][0]["message"] == (
        "the body must be application/x-www-form-urlencoded"
    )


def test_an_oversized_form_is_refused(iam: EmulatorHandle) -> None:
    answer = httpx.post(iam.url + PATH, data={"grant_type": GRANT_TYPE, "assertion": "x" * 70_000})
    assert answer.status_code == 400
    assert "larger than 65536 bytes" in answer.json()["detail"]


def test_the_exchange_is_rate_limited_and_faulted_like_any_call(iam: EmulatorHandle) -> None:
    token_url = iam.url + PATH
    httpx.post(iam.url + "/_emulator/knobs", json={"rate_limit": 1, "rate_limit_window": 60})
    assert grant(token_url, assertion(token_url)).status_code == 200
    throttled = grant(token_url, assertion(token_url))
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    body = throttled.json()
    assert body["title"] == "throttled" and body["status"] == 429
    assert (
        body["detail"]
        == f"too many requests: try again in {throttled.headers['retry-after']} seconds"
    )
    httpx.post(iam.url + "/_emulator/knobs", json={"rate_limit": None})
    iam.knobs.fail_next(503, 1)
    faulted = grant(token_url, assertion(token_url))
    assert faulted.status_code == 503 and faulted.json()["status"] == 503
    assert grant(token_url, assertion(token_url)).status_code == 200


def test_keys_added_at_run_time_and_bad_keys_named(iam: EmulatorHandle) -> None:
    token_url = iam.url + PATH
    second = rsa_key("second")
    added = httpx.post(
        iam.url + "/_emulator/principals",
        json={
            "add": [
                {
                    "service_principal_id": "113000000002",
                    "kid": "k2",
                    "public_key": public_pem(second),
                }
            ]
        },
    )
    assert {"kid": "k2", "service_principal_id": "113000000002", "enabled": True} in added.json()[
        "keys"
    ]
    ok = grant(
        token_url,
        assertion(token_url, key=second, kid="k2", iss="113000000002", sub="113000000002"),
    )
    assert ok.status_code == 200
    bad = httpx.post(
        iam.url + "/_emulator/principals",
        json={
            "add": [{"service_principal_id": "1", "kid": "k3", "public_key": public_pem(ec_key())}]
        },
    )
    assert bad.status_code == 400
    assert "Sakura takes RSA public keys of 2048 to 4096 bits" in bad.json()["error"]
    assert "access_token" not in str(httpx.get(iam.url + "/_emulator/principals").json())


def test_tokens_are_bounded_and_expired_ones_go_first() -> None:
    now = [1000.0]
    principals = Principals(token_lifetime=10, clock=lambda: now[0])
    principals.add_key(PRINCIPAL_ID, KID, public_pem(rsa_key()))
    audience = "http://token"
    first = principals.exchange(
        {"grant_type": GRANT_TYPE, "assertion": assertion(audience, iat=now[0])}, audience
    )
    principals._tokens.update(
        {f"t{i}": type(first)(f"t{i}", PRINCIPAL_ID, now[0] + 100) for i in range(MAX_TOKENS - 1)}
    )
    now[0] += 11  # `first` has expired; the fillers have not
    fresh = principals.exchange(
        {"grant_type": GRANT_TYPE, "assertion": assertion(audience, iat=now[0])}, audience
    )
    assert len(principals._tokens) == MAX_TOKENS
    assert first.access_token not in principals._tokens
    assert principals.accepts(fresh.access_token) and principals.accepts("t0")


@pytest.mark.parametrize(
    ("principals", "message"),
    [
        ({"id": "1"}, None),
        ([{"keys": []}], 'service_principals[0] must be an object with a string "id"'),
        ([{"id": "1", "keys": {}}], "service_principals[0].keys must be a list"),
        ([{"id": "1", "keys": ["k"]}], "service_principals[0].keys[0] is not an object"),
        (
            [{"id": "1", "keys": [{"kid": "k", "public_key": "nope"}]}],
            "service_principals[0].keys[0]: key 'k': public_key is not a PEM public key",
        ),
        (
            [{"id": "1", "keys": [{"public_key": "x"}]}],
            "service_principals[0].keys[0]: a key needs a service principal ID and a kid",
        ),
    ],
)
def test_seed_errors_name_the_entry(principals: Any, message: str | None) -> None:
    with pytest.raises(SeedError) as caught:
        load_seed({"vaults": [], "service_principals": principals}, Store(), Principals())
    assert str(caught.value) == (message or '"service_principals" must be a list')


def test_refused_problem_shapes() -> None:
    assert Refused(401, "authentication_failed", "d").problem() == {
        "type": "about:blank",
        "status": 401,
        "title": "authentication_failed",
        "detail": "d",
    }
    assert Refused(400, "invalid", "d", "assertion").problem()["errors"] == {
        "assertion": [{"message": "d", "code": "invalid"}]
    }
