"""The injector's Sakura key from a mounted Secret: a directory with the files
SAKURA_ACCESS_TOKEN and SAKURA_ACCESS_TOKEN_SECRET (as a Secret volume lays the keys out).

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
from sakura.config import ENV_ACCESS_TOKEN, ENV_ACCESS_TOKEN_SECRET
from sakura.credentials import ApiKey

log = logging.getLogger(__name__)

KEY_FILES = (ENV_ACCESS_TOKEN[0], ENV_ACCESS_TOKEN_SECRET[0])
"""The file names: the Secret's keys, named like the environment variables."""
FLOOR = 1.0
"""Seconds between two looks at the files (a stat each): the files are looked at on each
Sakura call and each readiness probe, and a rotation waits minutes for the kubelet anyway."""


class SakuraKeyFiles:
    """A `sakura.credentials.CredentialSource`: the key the directory holds now."""

    def __init__(
        self, directory: Path, *, floor: float = FLOOR, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.directory = directory
        paths = [directory / name for name in KEY_FILES]
        self._files = RereadFiles(
            paths, _api_key(paths), what=f"the Sakura key in {directory}", floor=floor, clock=clock
        )
        self._announced = ""

    def current(self) -> ApiKey:
        """The key to send now; `Unreadable` (a ValueError) only before a key was read."""
        key = self._files.current()
        if key.fingerprint != self._announced:
            verb = "now uses" if self._announced else "uses"
            log.info(
                "the injector %s Sakura key %s (read from %s)",
                verb,
                key.fingerprint,
                self.directory,
            )
            self._announced = key.fingerprint
        return key

    @property
    def loaded_at(self) -> float:
        """When the key in use was read (Unix seconds)."""
        return self._files.loaded_at or 0.0

    @property
    def problem(self) -> str | None:
        """Why the directory's newest state cannot be read (the last good key is in use)."""
        return self._files.problem


def _api_key(paths: Sequence[Path]) -> Callable[[Sequence[bytes]], ApiKey]:
    def parse(contents: Sequence[bytes]) -> ApiKey:
        texts = []
        for path, content in zip(paths, contents, strict=True):
            text = content.decode("utf-8").strip()
            if not text:
                raise Unreadable(f"{path} is empty")
            texts.append(text)
        return ApiKey(*texts)

    return parse
