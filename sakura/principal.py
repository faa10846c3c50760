"""A Sakura IAM service principal: the key that signs a JWT grant, and the token it buys.

Sakura's own tools "prefer bearer": a service principal's key signs a short JWT (RS256, `kid`
= the key's ID, `iss` = `sub` = the principal's ID, `aud` = the token endpoint, at most
5 minutes long), which the token endpoint (RFC 7523) exchanges for a Bearer token of about an
hour. Sakura never holds the private half when the user uploads the public one, and a leaked
Bearer token dies within the hour, which is why it is preferred to an API key pair.

The key is checked when the credentials are built, so a key that cannot work (not PEM,
encrypted, not RSA, too small) is a start-up error naming the variable to fix, not a 401
later. PyJWT (with cryptography) signs; nothing here is hand-rolled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from sakura.config import DEFAULT_TOKEN_ENDPOINT, PrincipalSettings
from sakura.errors import SakuraConfigError

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 300
"""Seconds from `iat` to `exp` of a grant: the most Sakura accepts (5 minutes)."""
MIN_KEY_BITS, MAX_KEY_BITS = 2048, 4096
KEY_HELP = (
    "make one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem` "
    "and upload its public half to the service principal (`openssl pkey -in key.pem -pubout`)"
)


@dataclass(frozen=True)
class ServicePrincipal:
    """The credentials of a service principal; repr and messages never show the key."""

    principal_id: str
    key_id: str
    private_key_pem: str = field(repr=False)
    token_endpoint: str = DEFAULT_TOKEN_ENDPOINT
    source: str = "SAKURA_PRIVATE_KEY"
    """Where the key came from (a variable, a file, a profile field): named in key errors."""
    _key: RSAPrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.principal_id.strip():
            raise SakuraConfigError(
                "the service principal ID is empty (SAKURA_SERVICE_PRINCIPAL_ID)"
            )
        if not self.key_id.strip():
            raise SakuraConfigError(
                "the service principal key ID is empty (SAKURA_SERVICE_PRINCIPAL_KEY_ID): the "
                "ID Sakura showed when the key was uploaded"
            )
        object.__setattr__(self, "_key", load_signing_key(self.private_key_pem, self.source))

    @classmethod
    def from_settings(cls, settings: PrincipalSettings) -> ServicePrincipal:
        return cls(
            settings.principal_id,
            settings.key_id,
            settings.private_key,
            settings.token_endpoint,
            settings.key_source,
        )

    @property
    def fingerprint(self) -> str:
        """12 hex digits of SHA-256 of the key ID: names the key in metrics and logs (the
        key ID alone authenticates nothing)."""
        return hashlib.sha256(self.key_id.encode("utf-8")).hexdigest()[:12]

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.private_key_pem,)

    def assertion(self, now: float) -> str:
        """The signed JWT grant, valid from `now` (Unix seconds) for ASSERTION_LIFETIME."""
        issued = int(now)
        claims = {
            "iss": self.principal_id,
            "sub": self.principal_id,
            "aud": self.token_endpoint,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
        }
        headers = {"kid": self.key_id, "typ": "JWT"}
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)

    def auth(self) -> httpx.Auth:
        """Never used: a service principal's requests carry a Bearer token (authorizer.py)."""
        raise TypeError("a service principal authenticates with Bearer tokens, not per request")

    def grant(self, now: float) -> dict[str, str]:
        """The token endpoint's form body."""
        return {"grant_type": GRANT_TYPE, "assertion": self.assertion(now)}


def load_signing_key(pem: str, source: str) -> RSAPrivateKey:
    """The RSA private key in `pem`, or SakuraConfigError saying what is wrong with it."""
    text = pem.strip()
    if not text:
        raise SakuraConfigError(f"{source} is empty: give the service principal's private key")
    if "-----BEGIN" not in text:
        raise SakuraConfigError(
            f"{source} is not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' line); "
            f"give the key file's whole text, or {KEY_HELP}"
        )
    try:
        key = load_pem_private_key(text.encode("utf-8"), password=None)
    except TypeError:
        raise SakuraConfigError(
            f"{source} is encrypted with a passphrase, which the injector cannot type: "
            "decrypt it (`openssl pkey -in key.pem -out plain.pem`) and keep it in a Secret"
        ) from None
    except ValueError:
        raise SakuraConfigError(
            f"{source} could not be read as a PEM private key (damaged, or a public key or "
            f"certificate instead); {KEY_HELP}"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise SakuraConfigError(
            f"{source} is not an RSA key (EC or Ed25519, perhaps), and Sakura's service "
            f"principals sign with RSA (RS256) only; {KEY_HELP}"
        )
    if not MIN_KEY_BITS <= key.key_size <= MAX_KEY_BITS:
        raise SakuraConfigError(
            f"{source} is a {key.key_size}-bit RSA key; Sakura takes {MIN_KEY_BITS} to "
            f"{MAX_KEY_BITS} bits; {KEY_HELP}"
        )
    return key
