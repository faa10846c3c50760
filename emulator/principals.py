"""Sakura IAM service principals as the emulator plays them: keys, the JWT exchange, Bearer tokens.

A service principal holds public keys, each named by its `kid` (uploaded by the user, who
keeps the private half). A client signs a JWT with a private key and exchanges it at the token
endpoint (RFC 7523) for a Bearer token that Secret Manager then accepts until it expires.
Everything Sakura checks is checked here, so a client's mistakes fail in tests as they would
in production: RS256 only, a known and enabled `kid`, `iss` = `sub` = the key's principal,
`aud` = the token endpoint's URL, `iat` not in the future and `exp` not past (with
`CLOCK_SKEW`), and `exp` at most `MAX_ASSERTION_LIFETIME` after `iat`.

The official mock (sakumock's iam) answers any request with a token; ours refuses what Sakura
would refuse, each with its own `detail`, in the RFC 7807 shape of the published definition.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

MAX_ASSERTION_LIFETIME = 300.0
"""Seconds from `iat` to `exp` a signed assertion may span (Sakura: at most 5 minutes)."""
CLOCK_SKEW = 60.0
"""Seconds the client's clock may be off before `iat`/`exp` are refused."""
MAX_TOKENS = 100_000
"""Bearer tokens remembered at once; expired ones go first."""
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class Refused(Exception):
    """An exchange Sakura would refuse: answered as RFC 7807 problem JSON."""

    def __init__(self, status: int, title: str, detail: str, field: str = "") -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.field = status, title, detail, field

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "about:blank",
            "status": self.status,
            "title": self.title,
            "detail": self.detail,
        }
        if self.status == 400:  # the definition's 400 carries the field errors
            body["errors"] = {
                self.field or "non_field_errors": [{"message": self.detail, "code": self.title}]
            }
        return body


@dataclass
class _Key:
    principal_id: str
    public_key: RSAPublicKey
    enabled: bool = True


@dataclass(frozen=True)
class Issued:
    """A Bearer token handed out, and when it stops working (Unix seconds)."""

    access_token: str
    principal_id: str
    expires_at: float


class Principals:
    """The service principals' keys and the Bearer tokens issued for them (thread-safe: the
    server thread and the test that drives it share it)."""

    def __init__(
        self, *, token_lifetime: float = 3600.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}
        self._tokens: dict[str, Issued] = {}
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.exchanges = 0

    # -- keys ----------------------------------------------------------------------------

    def add_key(self, principal_id: str, kid: str, public_key_pem: str) -> None:
        """Accept `kid` for `principal_id` from now on (as Sakura's `upload-key` does)."""
        if not principal_id or not kid:
            raise ValueError("a key needs a service principal ID and a kid")
        try:
            key = load_pem_public_key(public_key_pem.encode())
        except ValueError:
            raise ValueError(f"key {kid!r}: public_key is not a PEM public key") from None
        if not isinstance(key, RSAPublicKey) or not 2048 <= key.key_size <= 4096:
            raise ValueError(f"key {kid!r}: Sakura takes RSA public keys of 2048 to 4096 bits")
        with self._lock:
            self._keys[kid] = _Key(principal_id, key)

    def set_enabled(self, kid: str, enabled: bool) -> None:
        """Disable (or enable again) a key: a disabled key's assertions are refused."""
        with self._lock:
            if kid not in self._keys:
                raise KeyError(kid)
            self._keys[kid].enabled = enabled

    def expire_tokens(self) -> int:
        """Make every Bearer token issued so far expire now (a test of renewal); how many."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
            return count

    # -- the exchange --------------------------------------------------------------------

    def exchange(self, form: Mapping[str, str], audience: str) -> Issued:
        """A Bearer token for a valid grant sent to the endpoint at URL `audience`."""
        grant_type = form.get("grant_type", "")
        if grant_type != GRANT_TYPE:
            raise Refused(400, "invalid", f"grant_type must be {GRANT_TYPE}", "grant_type")
        assertion = form.get("assertion", "")
        if not assertion:
            raise Refused(400, "required", "assertion is required: a signed JWT", "assertion")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            raise _failed("the assertion is not a JWT") from None
        if header.get("alg") != "RS256":
            raise _failed(f"the assertion must be signed with RS256, not {header.get('alg')!r}")
        kid = header.get("kid")
        with self._lock:
            key = self._keys.get(str(kid)) if kid is not None else None  # PyJWT: text or absent
        if key is None:
            raise _failed(f"no service principal key has kid {kid!r}")
        if not key.enabled:
            raise _failed(f"service principal key {kid!r} is disabled")
        now = self.clock()
        claims = self._verify(assertion, key, audience, now)
        if claims.get("iss") != key.principal_id or claims.get("sub") != key.principal_id:
            raise _failed(
                f"iss and sub must both be the service principal ID of key {kid!r} "
                f"({key.principal_id})"
            )
        issued = Issued(secrets.token_urlsafe(32), key.principal_id, now + self.token_lifetime)
        with self._lock:
            self.exchanges += 1
            if len(self._tokens) >= MAX_TOKENS:
                self._forget_expired(now)
            self._tokens[issued.access_token] = issued
        return issued

    def _verify(self, assertion: str, key: _Key, audience: str, now: float) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key.public_key,
                algorithms=["RS256"],
                options={
                    "require": ["iss", "sub", "aud", "iat", "exp"],
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise _failed("the assertion's signature does not match the key's public key") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _failed(f"the assertion has no {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise _failed("the assertion is not a valid JWT") from None
        aud = claims["aud"]
        if audience not in ([aud] if isinstance(aud, str) else aud):
            raise _failed(f"aud must be the token endpoint's URL, {audience}")
        iat, exp = claims["iat"], claims["exp"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (iat, exp)):
            raise _failed("iat and exp must be numbers (Unix seconds)")
        if iat > now + CLOCK_SKEW:
            raise _failed("the assertion's iat is in the future: check the client's clock")
        if exp < now - CLOCK_SKEW:
            raise _failed("the assertion has expired (exp is past): check the client's clock")
        if exp - iat > MAX_ASSERTION_LIFETIME:
            raise _failed("the assertion's exp must be at most 5 minutes after its iat")
        return claims

    # -- Secret Manager's side -----------------------------------------------------------

    def accepts(self, access_token: str) -> bool:
        """Whether a Bearer token was issued here and has not expired."""
        with self._lock:
            issued = self._tokens.get(access_token)
            return issued is not None and issued.expires_at > self.clock()

    def _forget_expired(self, now: float) -> None:
        for token in [t for t, i in self._tokens.items() if i.expires_at <= now]:
            del self._tokens[token]
        while len(self._tokens) >= MAX_TOKENS:
            del self._tokens[next(iter(self._tokens))]

    def stats(self) -> dict[str, object]:
        """Keys (kid, principal, enabled) and counts; never a token."""
        with self._lock:
            now = self.clock()
            return {
                "keys": [
                    {"kid": kid, "service_principal_id": k.principal_id, "enabled": k.enabled}
                    for kid, k in self._keys.items()
                ],
                "exchanges": self.exchanges,
                "live_tokens": sum(1 for i in self._tokens.values() if i.expires_at > now),
                "token_lifetime": self.token_lifetime,
            }


def _failed(detail: str) -> Refused:
    return Refused(401, "authentication_failed", detail)
