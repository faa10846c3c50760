"""When the certificates the injector serves and hands out expire, as a Prometheus gauge.

Read at scrape time from what is loaded now (the serving pair) and what pods are given now
(the broker CA bundle), so a renewal shows up on the next scrape with no timer of its own.
Both are handed in by the wiring (`ReloadingTLS` and `BrokerCaFile` of the HTTP shell fit);
this module needs only the two facts it reads, not the shell's modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from cryptography import x509
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

METRIC = "sakura_secrets_certificate_expiry_timestamp_seconds"


class Expiring(Protocol):
    @property
    def not_after(self) -> float: ...


class ServedPair(Protocol):
    """The serving pair as loaded now (None before it could be read)."""

    @property
    def loaded(self) -> Expiring | None: ...


class CaBundle(Protocol):
    """The CA bundle given to pods now; ValueError when it cannot be read."""

    def pem(self) -> str: ...


class CertificateExpiry(Collector):
    """`certificate="serving"`: the served certificate; `certificate="ca"`: the first CA of
    the bundle given to pods (the one that signs). Absent until loaded."""

    def __init__(self, tls: ServedPair, broker_ca: CaBundle | None = None) -> None:
        self.tls = tls
        self.broker_ca = broker_ca

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            METRIC,
            "When a certificate expires (POSIX seconds): the served one, and the CA given to pods",
            labels=["certificate"],
        )
        loaded = self.tls.loaded
        if loaded is not None:
            gauge.add_metric(["serving"], loaded.not_after)
        ca = self._ca_not_after()
        if ca is not None:
            gauge.add_metric(["ca"], ca)
        yield gauge

    def _ca_not_after(self) -> float | None:
        if self.broker_ca is None:
            return None
        try:
            bundle = self.broker_ca.pem().encode("ascii")
            return x509.load_pem_x509_certificate(bundle).not_valid_after_utc.timestamp()
        except ValueError:
            return None
