"""The webhook's TLS as the API server sees it: does the caBundle verify the certificate the
replicas present (else the TLS Secret's), for the Service's name, and when does it expire."""

from __future__ import annotations

import base64
import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from injector.operations.doctor.facts import CERTS, TLS_SECRET, Facts
from injector.operations.doctor.install import our_webhook
from injector.operations.doctor.results import Finding, Result, Status, judged

SERVING_WARN_DAYS = 20
"""The certs loop renews 30 days ahead (certs.RENEW_BEFORE); under 20 left, it is not doing so."""
CA_WARN_DAYS = 180
"""The certs loop rotates the CA with a year left; under half of that, it is not doing so."""


def _logs(facts: Facts) -> str:
    return f"kubectl -n {facts.install.namespace} logs deploy/{CERTS}"


def served(facts: Facts) -> list[tuple[str, x509.Certificate]]:
    """The certificates the replicas presented, else the TLS Secret's, with where each is from."""
    found = [(p.where, x509.load_der_x509_certificate(p.der)) for p in facts.presented if p.der]
    if found:
        return found
    if facts.tls_certificate:
        try:
            pem = facts.tls_certificate.encode("ascii")
            return [(f"Secret {TLS_SECRET}", x509.load_pem_x509_certificate(pem))]
        except ValueError:
            return []
    return []


def bundle(facts: Facts) -> list[x509.Certificate]:
    """The webhook's caBundle, decoded (empty when absent or not PEM certificates)."""
    hook = our_webhook(facts) or {}
    encoded = hook.get("clientConfig", {}).get("caBundle") or ""
    try:
        return x509.load_pem_x509_certificates(base64.b64decode(encoded))
    except ValueError:
        return []


def ca_bundle(facts: Facts) -> Result:
    check = "ca-bundle"
    ns = facts.install.namespace
    renew = (
        f"kubectl -n {ns} rollout restart deploy/{CERTS} (at start it stores the pair and "
        "patches the caBundle)"
    )
    if our_webhook(facts) is None:
        return Result(check, Status.FAIL, "not checked: no webhook configuration", renew)
    cas = bundle(facts)
    if not cas:
        return Result(
            check,
            Status.FAIL,
            "the webhook's caBundle is empty or not PEM: the API server cannot verify the "
            "injector and refuses opted-in pods",
            renew,
        )
    certificates = served(facts)
    if not certificates:
        unreachable = "; ".join(f"{p.where}: {p.error}" for p in facts.presented if p.error)
        return Result(
            check,
            Status.FAIL,
            f"no certificate to verify: Secret {ns}/{TLS_SECRET} has no tls.crt"
            + (f" and no replica answered ({unreachable})" if unreachable else ""),
            f"{_logs(facts)}; {renew}",
        )
    findings = []
    for where, certificate in certificates:
        if not any(_signed_by(certificate, ca) for ca in cas):
            findings.append(
                Finding(
                    Status.FAIL,
                    f"the caBundle does not verify the certificate of {where} (the API server "
                    "fails with x509: certificate signed by unknown authority)",
                    renew,
                )
            )
        if facts.install.host not in _dns_names(certificate):
            findings.append(
                Finding(
                    Status.FAIL,
                    f"the certificate of {where} does not name {facts.install.host}",
                    f"kubectl -n {ns} exec deploy/{CERTS} -- sakura-secrets-injector certs "
                    "--once --renew-before 99999",
                )
            )
    wheres = ", ".join(where for where, _ in certificates)
    return judged(
        check,
        findings,
        f"the caBundle verifies the certificate of {wheres} for {facts.install.host}",
    )


def _signed_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _dns_names(certificate: x509.Certificate) -> list[str]:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(names.value.get_values_for_type(x509.DNSName))


def certificate_expiry(facts: Facts) -> Result:
    check = "certificate-expiry"
    ns = facts.install.namespace
    now = datetime.datetime.fromtimestamp(facts.now, datetime.UTC)
    certificates = served(facts)
    cas = bundle(facts)
    if not certificates and not cas:
        return Result(check, Status.FAIL, "no certificate found", _logs(facts))
    findings = []
    command = f"kubectl -n {ns} exec deploy/{CERTS} -- sakura-secrets-injector certs"
    renew, rotate = f"{_logs(facts)}; {command} --once", f"{command} --rotate-ca"
    shown = []
    for what, certificate, warn_days, fix in [
        *((f"serving ({where})", c, SERVING_WARN_DAYS, renew) for where, c in certificates[:1]),
        *(("CA", c, CA_WARN_DAYS, rotate) for c in cas[:1]),
    ]:
        left = certificate.not_valid_after_utc - now
        until = certificate.not_valid_after_utc.strftime("%Y-%m-%d")
        shown.append(f"{what} until {until} ({left.days} days)")
        if left.total_seconds() <= 0:
            findings.append(Finding(Status.FAIL, f"the {what} certificate expired on {until}", fix))
        elif left.days < warn_days:
            findings.append(
                Finding(Status.WARN, f"the {what} certificate expires in {left.days} days", fix)
            )
    return judged(check, findings, "; ".join(shown))
