"""Which Sakura key the injector uses, as Prometheus metrics: the rotation runbook waits until
every replica shows the new key before the old one is revoked (docs/operations.md).

`sakura_secrets_sakura_key_info{fingerprint="..."} 1` names the key by its fingerprint (12 hex
digits of the SHA-256 of the access token's ID, never the secret: sakura/credentials.py says
why it is safe to show); `sakura_secrets_sakura_key_loaded_timestamp_seconds` says when it was
read. Read at scrape time from the credential source, which looks at the key files then, so a
rotated key shows on the next scrape even with no Sakura traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sakura.credentials import CredentialSource

INFO = "sakura_secrets_sakura_key_info"
LOADED = "sakura_secrets_sakura_key_loaded_timestamp_seconds"
log = logging.getLogger(__name__)


class KeyInUse(Collector):
    """The two gauges of the key in use; none while no key was ever read."""

    def __init__(self, source: CredentialSource) -> None:
        self.source = source

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
