"""Service-principal keys and signed assertions for tests (PyJWT signs, as a client would)."""

from __future__ import annotations

import functools
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PRINCIPAL_ID = "113000000001"
KID = "key-1"


@functools.cache
def rsa_key(name: str = "one", bits: int = 2048) -> rsa.RSAPrivateKey:
    """One RSA key per name for the whole run (generating one takes tens of milliseconds)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def seed_principal(
    key: rsa.RSAPrivateKey | None = None, *, principal_id: str = PRINCIPAL_ID, kid: str = KID
) -> dict[str, Any]:
    """The `service_principals` entry of an emulator seed for one key."""
    return {"id": principal_id, "keys": [{"kid": kid, "public_key": public_pem(key or rsa_key())}]}


def assertion(
    audience: str,
    *,
    key: Any = None,
    kid: str | None = KID,
    iss: str | None = PRINCIPAL_ID,
    sub: str | None = PRINCIPAL_ID,
    iat: float | None = None,
    exp: float | None = None,
    lifetime: float = 300,
    algorithm: str = "RS256",
) -> str:
    """A signed JWT grant as Sakura's token endpoint wants it; each part can be made wrong."""
    now = time.time() if iat is None else iat
    claims: dict[str, Any] = {"aud": audience, "iat": int(now)}
    claims["exp"] = int(now + lifetime) if exp is None else int(exp)
    if iss is not None:
        claims["iss"] = iss
    if sub is not None:
        claims["sub"] = sub
    headers = {"typ": "JWT"} | ({"kid": kid} if kid is not None else {})
    return jwt.encode(claims, key if key is not None else rsa_key(), algorithm, headers=headers)
