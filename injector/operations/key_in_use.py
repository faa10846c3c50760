"""Which Sakura key the injector uses, as Prometheus metrics and in /readyz: the rotation
runbook waits until every replica shows the new key before the old one is revoked
(docs/operations.md), and `doctor` reports each replica's kind of credentials and, for a
service principal, how long its Bearer token has left (never the token).

`sakura_secrets_sakura_key_info{fingerprint="..."} 1` names the key by its fingerprint (12 hex
digits of the SHA-256 of the access token's ID, never the secret: sakura/credentials.py says
why it is safe to show); `sakura_secrets_sakura_key_loaded_timestamp_seconds` says when it was
read. Read at scrape time from the credential source, which looks at the key files then, so a
rotated key shows on the next scrape even with no Sakura traffic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sakura.authorizer import Authorizer, GrantCredentials
from sakura.credentials import CredentialSource

INFO = "sakura_secrets_sakura_key_info"
LOADED = "sakura_secrets_sakura_key_loaded_timestamp_seconds"
TOKEN_EXPIRY = "sakura_secrets_sakura_token_expiry_timestamp_seconds"  # noqa: S105 (a name)


def describe(source: CredentialSource, authorizer: Authorizer | None) -> dict[str, object]:
    """The credentials in use, as /readyz tells `doctor`: their kind, the key's fingerprint and,
    for a service principal, the seconds its current token has left (None: none bought yet)."""
    try:
        key = source.current()
    except ValueError:  # never read yet; the readiness check says why
        return {"kind": "none"}
    if not isinstance(key, GrantCredentials):
        return {"kind": "api-key", "fingerprint": key.fingerprint}
    left = authorizer.expires_in() if authorizer is not None else None
    return {
        "kind": "service-principal",
        "fingerprint": key.fingerprint,
        "token_expires_in_seconds": None if left is None else int(left),
    }


log = logging.getLogger(__name__)


class KeyInUse(Collector):
    """The gauges of the key in use; none while no key was ever read (and no token expiry
    while no Bearer token is held)."""

    def __init__(self, source: CredentialSource, authorizer: Authorizer | None = None) -> None:
        self.source = source
        self.authorizer = authorizer

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            INFO,
            "The Sakura key in use, by fingerprint (SHA-256 of the token ID, first 12 hex)",
            labels=["fingerprint"],
        )
        loaded = GaugeMetricFamily(LOADED, "When the Sakura key in use was read (POSIX seconds)")
        try:
            key = self.source.current()
        except ValueError as error:  # never read yet; the readiness check says why
            log.debug("no Sakura key to report: %s", error)
        else:
            info.add_metric([key.fingerprint], 1)
            loaded.add_metric([], self.source.loaded_at)
        yield info
        yield loaded
        expiry = GaugeMetricFamily(
            TOKEN_EXPIRY,
            "When the service principal's current Bearer token expires (POSIX seconds); absent "
            "for an API key and before the first token",
        )
        left = self.authorizer.expires_in() if self.authorizer is not None else None
        if left is not None:
            expiry.add_metric([], time.time() + left)
        yield expiry
