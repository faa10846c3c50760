"""The injector's CA over time: which CA signs the serving certificate, which CAs are trusted.

Pure: stored material and a moment in, what to store out. Every injected pod carries the CA
bundle of its admission time, so the rules keep that bundle working:

- Renewing the serving certificate never changes the CA: the CA key is kept (in its own
  Secret), and the new certificate is signed by the same CA.
- A CA rotation (the CA nears its end, an operator asks for one, or there is no CA key to use:
  a fresh install, or an upgrade from an injector that did not keep its key) makes a new CA and
  trusts it next to the old one at once, while the certificate signed by the old CA keeps being
  served for `overlap`. Pods admitted before the rotation trust only the old CA; pods admitted
  during the overlap trust both; the served certificate switches to the new CA when the overlap
  is over. Retired CAs stay in the bundle until they expire.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from injector.operations.certs import (
    BACKDATE,
    RENEW_BEFORE,
    KeyPair,
    cert_pem,
    generate_ca,
    issue_serving_cert,
    reissue_reason,
    signed_by,
)
from injector.setting import OutOfRange

CA_RENEW_BEFORE = datetime.timedelta(days=365)
"""A CA with less than this left is rotated (leaving room for the overlap and renewals)."""
OVERLAP = datetime.timedelta(days=30)
"""How long the old CA's serving certificate is still served after a CA rotation."""


@dataclass(frozen=True)
class Policy:
    """When to renew and rotate, checked when built; the `certs` subcommand's flags set these."""

    renew_before: datetime.timedelta = RENEW_BEFORE
    ca_renew_before: datetime.timedelta = CA_RENEW_BEFORE
    overlap: datetime.timedelta = OVERLAP

    def __post_init__(self) -> None:
        for name in ("renew_before", "ca_renew_before"):
            if not getattr(self, name) > datetime.timedelta(0):
                raise OutOfRange(name, "must be above 0 days")
        if self.overlap < datetime.timedelta(0):
            raise OutOfRange("overlap", "must be 0 days or more")


@dataclass(frozen=True)
class Authority:
    """The issuing CA (certificate and key) and the earlier CAs still trusted (certificates)."""

    issuer: KeyPair
    retired: bytes = b""

    def bundle(self, now: datetime.datetime) -> bytes:
        """What clients trust: the issuing CA first, then every unexpired retired CA."""
        return self.issuer.cert_pem + b"".join(
            cert_pem(c) for c in _certs(self.retired) if c.not_valid_after_utc > now
        )


@dataclass(frozen=True)
class Decision:
    """What to store: the authority, the serving pair and the bundle, and why they changed."""

    authority: Authority
    serving: KeyPair
    bundle: bytes
    authority_changed: bool
    serving_changed: bool
    reason: str


def decide(
    stored: Authority | None,
    serving: KeyPair | None,
    stored_bundle: bytes,
    dns_names: Sequence[str],
    *,
    now: datetime.datetime,
    policy: Policy | None = None,
    rotate_ca: bool = False,
) -> Decision:
    """The next state from what is stored (None: nothing stored, or unusable)."""
    rules = policy or Policy()
    reasons: list[str] = []
    authority, why = _next_authority(stored, stored_bundle, now, rules, rotate_ca)
    if why:
        reasons.append(why)
    bundle = authority.bundle(now)
    renew = _renew_reason(authority, serving, bundle, dns_names, now, rules)
    if renew is not None or serving is None:
        serving = issue_serving_cert(authority.issuer, dns_names)
        reasons.append(f"issued a serving certificate ({renew})")
    else:
        reasons.append("serving certificate reused")
    return Decision(
        authority=authority,
        serving=serving,
        bundle=bundle,
        authority_changed=authority != stored,
        serving_changed=renew is not None,
        reason="; ".join(reasons),
    )


def authority_problem(authority: Authority) -> str | None:
    """Why a stored CA cannot sign (None when it can)."""
    try:
        cert = x509.load_pem_x509_certificate(authority.issuer.cert_pem)
        key = serialization.load_pem_private_key(authority.issuer.key_pem, password=None)
    except (ValueError, TypeError) as error:
        return f"the stored CA or its key does not parse ({error})"
    if key.public_key() != cert.public_key():
        return "the stored CA key does not belong to the stored CA certificate"
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "the stored CA certificate is not a CA"
    if not constraints.ca:
        return "the stored CA certificate is not a CA"
    return None


def _next_authority(
    stored: Authority | None,
    stored_bundle: bytes,
    now: datetime.datetime,
    rules: Policy,
    rotate_ca: bool,
) -> tuple[Authority, str]:
    if stored is not None:
        problem = authority_problem(stored)
        if problem is None:
            expires = x509.load_pem_x509_certificate(stored.issuer.cert_pem).not_valid_after_utc
            if rotate_ca:
                why = "CA rotation requested"
            elif expires - now <= rules.ca_renew_before:
                why = f"the CA expires {expires:%Y-%m-%d}"
            else:
                return Authority(stored.issuer, _retired(stored.retired, b"", now)), ""
            retired = _retired(stored.issuer.cert_pem + stored.retired, stored_bundle, now)
            return Authority(generate_ca(), retired), f"rotated the CA ({why})"
        reason = problem
    else:
        reason = "no CA key stored (a fresh install, or an upgrade from an injector that kept none)"
    retired = _retired(
        stored.issuer.cert_pem + stored.retired if stored else b"", stored_bundle, now
    )
    return Authority(generate_ca(), retired), f"made a new CA ({reason})"


def _renew_reason(
    authority: Authority,
    serving: KeyPair | None,
    bundle: bytes,
    dns_names: Sequence[str],
    now: datetime.datetime,
    rules: Policy,
) -> str | None:
    if serving is None:
        return "none stored"
    why = reissue_reason(bundle, serving, dns_names, renew_before=rules.renew_before, now=now)
    if why is not None:
        return why
    issuer = x509.load_pem_x509_certificate(authority.issuer.cert_pem)
    leaf = x509.load_pem_x509_certificate(serving.cert_pem)
    if signed_by(leaf, issuer):
        return None
    rotated_at = issuer.not_valid_before_utc + BACKDATE
    if now - rotated_at >= rules.overlap:
        return f"the CA rotation of {rotated_at:%Y-%m-%d} is {rules.overlap.days} days old"
    return None


def _retired(older: bytes, stored_bundle: bytes, now: datetime.datetime) -> bytes:
    """Earlier CAs to keep trusting: unexpired, each once, in order (newest first)."""
    seen: set[bytes] = set()
    out: list[bytes] = []
    for cert in [*_certs(older), *_certs(stored_bundle)]:
        pem = cert_pem(cert)
        if cert.not_valid_after_utc > now and pem not in seen:
            seen.add(pem)
            out.append(pem)
    return b"".join(out)


def _certs(bundle: bytes) -> list[x509.Certificate]:
    if not bundle.strip():
        return []
    try:
        return x509.load_pem_x509_certificates(bundle)
    except ValueError:
        return []
