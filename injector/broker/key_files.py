"""The injector's Sakura credentials from a mounted Secret: a directory with the files
SAKURA_ACCESS_TOKEN and SAKURA_ACCESS_TOKEN_SECRET (an API key), or
SAKURA_SERVICE_PRINCIPAL_ID, SAKURA_SERVICE_PRINCIPAL_KEY_ID and SAKURA_PRIVATE_KEY (a service
principal; an optional SAKURA_TOKEN_ENDPOINT file replaces the token endpoint the
environment gives), as a Secret volume lays the keys out. Which kind is decided by which files are
there, at each look, so an installation moves from a key to a service principal by editing
the Secret; both kinds at once is refused (the last good credentials stay in use).

The files are re-read when they change (`injector.reread`: the kubelet's `..data` swap, a
stat at most once a second), so a key rotated in the Secret is used from the next Sakura
call on, with no restart and the cache kept. A directory the kubelet is half-way through
writing, or one with a file missing or empty, keeps the last good key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from injector.reread import RereadFiles, Unreadable
from sakura.config import (
    DEFAULT_TOKEN_ENDPOINT,
    ENV_ACCESS_TOKEN,
    ENV_ACCESS_TOKEN_SECRET,
    ENV_PRINCIPAL_ID,
    ENV_PRINCIPAL_KEY_ID,
    ENV_PRIVATE_KEY,
    ENV_TOKEN_ENDPOINT,
)
from sakura.credentials import ApiKey, Credentials
from sakura.errors import SakuraConfigError

log = logging.getLogger(__name__)

KEY_FILES = (ENV_ACCESS_TOKEN[0], ENV_ACCESS_TOKEN_SECRET[0])
"""The file names: the Secret's keys, named like the environment variables."""
PRINCIPAL_FILES = (ENV_PRINCIPAL_ID[0], ENV_PRINCIPAL_KEY_ID[0], ENV_PRIVATE_KEY[0])
BOTH_KINDS = (
    "holds both an API key ({}) and a service principal ({}): keep one kind in the Secret"
).format(" and ".join(KEY_FILES), ", ".join(PRINCIPAL_FILES))
FLOOR = 1.0
"""Seconds between two looks at the files (a stat each): the files are looked at on each
Sakura call and each readiness probe, and a rotation waits minutes for the kubelet anyway."""


class SakuraKeyFiles:
    """A `sakura.credentials.CredentialSource`: the credentials the directory holds now."""

    def __init__(
        self,
        directory: Path,
        *,
        token_endpoint: str = DEFAULT_TOKEN_ENDPOINT,
        floor: float = FLOOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        keys = [directory / name for name in KEY_FILES]
        principal = [directory / name for name in PRINCIPAL_FILES]
        self._api = RereadFiles(
            keys, _api_key(keys), what=f"the Sakura key in {directory}", floor=floor, clock=clock
        )
        self._principal = RereadFiles(
            principal,
            _service_principal(principal, token_endpoint),
            what=f"the service principal in {directory}",
            floor=floor,
            clock=clock,
        )
        self._files: RereadFiles[Credentials] = self._api
        self._last: Credentials | None = None
        self._mixed: str | None = None
        self._announced = ""

    def current(self) -> Credentials:
        """The credentials to send now; `Unreadable` (a ValueError) only before any were read."""
        has_key = (self.directory / KEY_FILES[0]).exists()
        has_principal = (self.directory / PRINCIPAL_FILES[0]).exists()
        self._mixed = f"{self.directory} {BOTH_KINDS}" if has_key and has_principal else None
        if self._mixed is not None:
            if self._last is None:
                raise Unreadable(self._mixed)
            return self._last
        self._files = self._principal if has_principal else self._api
        key = self._files.current()
        if key.fingerprint != self._announced:
            verb = "now uses" if self._announced else "uses"
            log.info(
                "the injector %s Sakura %s %s (read from %s)",
                verb,
                "service principal key" if has_principal else "key",
                key.fingerprint,
                self.directory,
            )
            self._announced = key.fingerprint
        self._last = key
        return key

    @property
    def loaded_at(self) -> float:
        """When the credentials in use were read (Unix seconds)."""
        return self._files.loaded_at or 0.0

    @property
    def problem(self) -> str | None:
        """Why the directory's newest state cannot be read (the last good key is in use)."""
        return self._mixed or self._files.problem


def _api_key(paths: Sequence[Path]) -> Callable[[Sequence[bytes]], Credentials]:
    def parse(contents: Sequence[bytes]) -> Credentials:
        return ApiKey(*_texts(paths, contents))

    return parse


def _service_principal(
    paths: Sequence[Path], token_endpoint: str
) -> Callable[[Sequence[bytes]], Credentials]:
    def parse(contents: Sequence[bytes]) -> Credentials:
        from sakura.principal import ServicePrincipal  # PyJWT and cryptography: only for one

        principal_id, key_id, pem = _texts(paths, contents)
        endpoint = _optional_text(paths[0].parent / ENV_TOKEN_ENDPOINT[0]) or token_endpoint
        if not endpoint.startswith(("http://", "https://")):
            raise Unreadable(f"{ENV_TOKEN_ENDPOINT[0]} {endpoint!r} is not an http(s) URL")
        try:
            return ServicePrincipal(principal_id, key_id, pem, endpoint, str(paths[2]))
        except SakuraConfigError as error:  # the key's fault, named; never its content
            raise Unreadable(str(error)) from None

    return parse


def _optional_text(path: Path) -> str:
    """A short optional file's text ("" when absent); read with the files it goes with (the
    kubelet swaps the whole directory at once)."""
    try:
        return path.read_bytes()[:2048].decode("utf-8").strip()
    except FileNotFoundError:
        return ""


def _texts(paths: Sequence[Path], contents: Sequence[bytes]) -> list[str]:
    texts = []
    for path, content in zip(paths, contents, strict=True):
        text = content.decode("utf-8").strip()
        if not text:
            raise Unreadable(f"{path} is empty")
        texts.append(text)
    return texts
