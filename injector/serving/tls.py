"""Serving TLS that follows the certificate files on disk, so a renewal needs no restart.

The listening socket gets one `ssl.SSLContext` for its whole life. Its `sni_callback` runs
for every handshake (with or without SNI) and hands the connection the context built from
the files as they are now: the files are stat-ed at most once per `check_interval`, and a
context is rebuilt only when their identity (inode, size, mtime) changed. A half-written
pair (new certificate, old key) fails to load; the last good context keeps serving and the
next handshake tries again, so clients never see a broken pair.

With a `client_ca_file` (the webhook port's `--webhook-client-ca-file`), every handshake must
present a client certificate signed by that CA (`ssl.CERT_REQUIRED`): a caller without one is
refused by TLS itself, before any HTTP is read. The CA file is followed like the pair.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

log = logging.getLogger(__name__)

_Identity = tuple[tuple[int, int, int, int], ...]

EXPIRY_WARNING = 30 * 86400.0
"""A served certificate with less than this left is warned about (renewal did not happen)."""


@dataclass(frozen=True)
class LoadedCertificate:
    """What is being served right now, for logs and readiness."""

    serial_number: int
    not_after: float
    """Expiry as a POSIX timestamp."""


class ReloadingTLS:
    """A server-side TLS context backed by a certificate file and a key file."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        *,
        client_ca_file: Path | None = None,
        check_interval: float = 1.0,
        warn_every: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`warn_every`: seconds between warnings while the served certificate nears expiry."""
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca_file = client_ca_file
        self.check_interval = check_interval
        self.warn_every = warn_every
        self._clock = clock
        self._wall_clock = wall_clock
        self._warned_at = float("-inf")
        self._lock = threading.Lock()
        self._current: ssl.SSLContext | None = None
        self._loaded: LoadedCertificate | None = None
        self._identity: _Identity | None = None
        self._checked_at = float("-inf")
        self._problem = "the certificate has not been loaded yet"
        self.context = self._new_context()
        self.context.sni_callback = self._on_client_hello
        self.refresh(force=True)

    @property
    def loaded(self) -> LoadedCertificate | None:
        """The certificate currently served, or None when none could be loaded yet."""
        return self._loaded

    def readiness(self) -> str | None:
        """None when a certificate is being served, else why not (for /readyz)."""
        self.refresh()
        if self._loaded is None:
            return f"TLS: {self._problem}"
        return None

    def refresh(self, *, force: bool = False) -> None:
        """Rebuild the serving context if the files changed since the last look."""
        now = self._clock()
        if not force and now - self._checked_at < self.check_interval:
            return
        with self._lock:
            self._checked_at = now
            self._load_if_changed(force)
            self._warn_if_expiring(now)

    def _load_if_changed(self, force: bool) -> None:
        try:
            identity = self._file_identity()
        except OSError as error:
            self._problem = f"cannot read {error.filename}: {error.strerror}"
            return
        if identity == self._identity and not force:
            return
        try:
            context, loaded = self._load()
        except (OSError, ssl.SSLError, ValueError) as error:
            # keep serving the last good pair; a renewal may be half written
            self._problem = (
                f"cannot load {self.cert_file} with {self.key_file}: {error}; "
                "they must be a PEM certificate and its unencrypted private key"
            )
            if self.client_ca_file is not None:
                self._problem += f", and {self.client_ca_file} a PEM CA bundle"
            log.warning("TLS reload failed, still serving the previous certificate: %s", error)
            return
        self._identity = identity
        self._current = context
        changed = self._loaded is not None and self._loaded != loaded
        self._loaded = loaded
        if changed:
            log.info("TLS certificate reloaded, serial %x", loaded.serial_number)

    def _warn_if_expiring(self, now: float) -> None:
        """Every `warn_every` seconds while the certificate has less than 30 days left."""
        loaded = self._loaded
        if loaded is None or loaded.not_after - self._wall_clock() >= EXPIRY_WARNING:
            return
        if now - self._warned_at < self.warn_every:
            return
        self._warned_at = now
        left = max(0.0, loaded.not_after - self._wall_clock()) / 86400
        log.warning(
            "the served TLS certificate (serial %x) expires in %.1f days and has not been "
            "renewed; check the sakura-secrets-certs Deployment's log",
            loaded.serial_number,
            left,
        )

    def _on_client_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        self.refresh()
        current = self._current
        if current is None:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        connection.context = current
        return None

    def _files(self) -> tuple[Path, ...]:
        extra = () if self.client_ca_file is None else (self.client_ca_file,)
        return (self.cert_file, self.key_file, *extra)

    def _file_identity(self) -> _Identity:
        stats = [os.stat(path) for path in self._files()]
        return tuple((s.st_ino, s.st_dev, s.st_size, s.st_mtime_ns) for s in stats)

    def _load(self) -> tuple[ssl.SSLContext, LoadedCertificate]:
        cert_pem = self.cert_file.read_bytes()
        context = self._new_context()
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            # the handshake checks the client's chain against this (the connection's) context
            context.load_verify_locations(cafile=self.client_ca_file)
        if self.cert_file.read_bytes() != cert_pem:
            # replaced while loading: report nothing we cannot vouch for, retry next handshake
            raise ValueError("the certificate file changed while it was being loaded")
        cert = x509.load_pem_x509_certificate(cert_pem)
        return context, LoadedCertificate(cert.serial_number, cert.not_valid_after_utc.timestamp())

    def _new_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        if self.client_ca_file is not None:
            # set on the listening context too: OpenSSL keeps the verify mode of the context a
            # connection started with when the SNI callback swaps in the loaded one
            context.verify_mode = ssl.CERT_REQUIRED
        return context
