"""Service-principal credentials: the key checked at start-up, the grant, the answer read."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from support.principal_kit import ec_key, private_pem, public_pem, rsa_key

from sakura.bearer import parse_token_answer
from sakura.config import DEFAULT_TOKEN_ENDPOINT, PrincipalSettings
from sakura.errors import BadResponse, SakuraConfigError
from sakura.principal import ASSERTION_LIFETIME, GRANT_TYPE, ServicePrincipal

SP, KID = "113000000001", "kid-1"


def principal(pem: str | None = None, **kw: str) -> ServicePrincipal:
    return ServicePrincipal(SP, KID, pem if pem is not None else private_pem(rsa_key()), **kw)


def test_the_grant_is_the_jwt_sakura_documents() -> None:
    grant = principal().grant(now=1_700_000_000.7)
    assert grant["grant_type"] == GRANT_TYPE
    token = grant["assertion"]
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": KID, "typ": "JWT"}
    claims = jwt.decode(
        token,
        rsa_key().public_key(),
        algorithms=["RS256"],
        audience=DEFAULT_TOKEN_ENDPOINT,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims == {
        "iss": SP,
        "sub": SP,
        "aud": DEFAULT_TOKEN_ENDPOINT,
        "iat": 1_700_000_000,
        "exp": 1_700_000_000 + ASSERTION_LIFETIME,
    }
    assert ASSERTION_LIFETIME == 300


def test_another_endpoint_is_the_audience() -> None:
    sp = principal(token_endpoint="http://127.0.0.1:9/service-principals/oauth2/token")
    claims = jwt.decode(sp.assertion(0), options={"verify_signature": False})
    assert claims["aud"] == "http://127.0.0.1:9/service-principals/oauth2/token"


def test_repr_and_fingerprint_never_show_the_key() -> None:
    sp = principal()
    assert "BEGIN" not in repr(sp) and private_pem(rsa_key())[40:80] not in repr(sp)
    assert sp.fingerprint == hashlib.sha256(KID.encode()).hexdigest()[:12]
    assert sp.secrets == (private_pem(rsa_key()),)


def _encrypted() -> str:
    return (
        rsa_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        )
        .decode()
    )


HELP = (
    "make one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem` "
    "and upload its public half to the service principal (`openssl pkey -in key.pem -pubout`)"
)


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        ("", "SAKURA_PRIVATE_KEY is empty: give the service principal's private key"),
        (
            "MIIEvQIBADANBg",
            "SAKURA_PRIVATE_KEY is not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' "
            f"line); give the key file's whole text, or {HELP}",
        ),
        (
            None,
            "SAKURA_PRIVATE_KEY is encrypted with a passphrase, which the injector cannot type: "
            "decrypt it (`openssl pkey -in key.pem -out plain.pem`) and keep it in a Secret",
        ),
        (
            "public",
            "SAKURA_PRIVATE_KEY could not be read as a PEM private key (damaged, or a public key "
            f"or certificate instead); {HELP}",
        ),
        (
            "ec",
            "SAKURA_PRIVATE_KEY is not an RSA key (EC or Ed25519, perhaps), and Sakura's service "
            f"principals sign with RSA (RS256) only; {HELP}",
        ),
        (
            "small",
            f"SAKURA_PRIVATE_KEY is a 1024-bit RSA key; Sakura takes 2048 to 4096 bits; {HELP}",
        ),
    ],
)
def test_a_key_that_cannot_work_is_named_at_start_up(pem: str | None, message: str) -> None:
    text = {
        None: _encrypted(),
        "public": public_pem(rsa_key()),
        "ec": private_pem(ec_key()),
        "small": private_pem(rsa_key("small", 1024)),
    }.get(pem, pem)
    with pytest.raises(SakuraConfigError) as caught:
        principal(text)
    assert str(caught.value) == message


def test_the_largest_key_sakura_takes_is_accepted() -> None:
    assert principal(private_pem(rsa_key("large", 4096))).principal_id == SP


def test_the_source_is_named() -> None:
    with pytest.raises(SakuraConfigError, match=r"^/etc/key.pem is empty"):
        principal("  ", source="/etc/key.pem")


@pytest.mark.parametrize(
    ("sp", "kid", "message"),
    [
        (" ", KID, "the service principal ID is empty (SAKURA_SERVICE_PRINCIPAL_ID)"),
        (
            SP,
            "",
            "the service principal key ID is empty (SAKURA_SERVICE_PRINCIPAL_KEY_ID): the ID "
            "Sakura showed when the key was uploaded",
        ),
    ],
)
def test_empty_ids_are_named(sp: str, kid: str, message: str) -> None:
    with pytest.raises(SakuraConfigError) as caught:
        ServicePrincipal(sp, kid, private_pem(rsa_key()))
    assert str(caught.value) == message


def test_the_answer_gives_the_token_and_its_lifetime() -> None:
    answer = {
        "access_token": "tok",
        "token_type": "Bearer",
        "token_expired_at": "2030-01-01T00:00:00+00:00",
        "expires_in": 3600,
    }
    token = parse_token_answer(answer, now=0)
    assert (token.value, token.lifetime) == ("tok", 3600.0)
    assert "tok" not in repr(token)
    without = {"access_token": "tok", "token_expired_at": "2030-01-01T01:00:00+09:00"}
    expiry = datetime(2029, 12, 31, 16, 0, tzinfo=UTC).timestamp()
    assert parse_token_answer(without, now=expiry - 100).lifetime == 100.0


WHAT = "exchanging the service principal's grant for a token: "


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"token_type": "Bearer", "expires_in": 1}, "Sakura's answer has no 'access_token'"),
        ({"access_token": "", "expires_in": 1}, "Sakura's answer has no 'access_token'"),
        ({"access_token": 5, "expires_in": 1}, "Sakura's answer has no 'access_token'"),
        (
            {"access_token": "t", "token_type": "MAC", "expires_in": 1},
            "Sakura issued a 'MAC' token, not a Bearer",
        ),
        (
            {"access_token": "t"},
            "Sakura's answer has neither 'expires_in' nor a readable 'token_expired_at'",
        ),
        ({"access_token": "t", "expires_in": 0}, "Sakura issued a token that has already expired"),
        (
            {"access_token": "t", "expires_in": True, "token_expired_at": "x"},
            "Sakura's answer has neither 'expires_in' nor a readable 'token_expired_at'",
        ),
    ],
)
def test_a_wrong_answer_is_a_bad_response(answer: dict[str, object], message: str) -> None:
    with pytest.raises(BadResponse) as caught:
        parse_token_answer(answer, now=0)
    assert str(caught.value) == WHAT + message
    assert caught.value.status == 200


def test_token_type_may_be_lower_case_or_absent_and_a_second_is_enough() -> None:
    assert parse_token_answer({"access_token": "t", "token_type": "bearer", "expires_in": 1}, 0)
    assert parse_token_answer({"access_token": "t", "expires_in": 1}, 0).lifetime == 1.0


def test_the_settings_become_the_principal_field_by_field() -> None:
    settings = PrincipalSettings(
        SP, KID, private_pem(rsa_key()), "/etc/key.pem", "http://127.0.0.1:9/token"
    )
    principal = ServicePrincipal.from_settings(settings)
    assert principal == ServicePrincipal(
        SP, KID, private_pem(rsa_key()), "http://127.0.0.1:9/token", "/etc/key.pem"
    )
    assert (principal.token_endpoint, principal.source) == (
        "http://127.0.0.1:9/token",
        "/etc/key.pem",
    )


def test_a_principal_never_gives_per_request_auth() -> None:
    with pytest.raises(TypeError) as caught:
        principal().auth()
    assert str(caught.value) == (
        "a service principal authenticates with Bearer tokens, not per request"
    )
