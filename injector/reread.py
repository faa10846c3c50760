"""Files the injector re-reads when they change, with no restart: the broker's CA bundle, the
Sakura key from its mounted Secret.

A Secret volume changes the kubelet's way: it writes the new files into a fresh directory and
swaps the `..data` symlink to it in one rename, so the paths then lead to new inodes. Each use
stats the files (at most once per `floor` seconds) and reads them again when an inode, size or
modification time changed. A read that fails, or sees a file change under it, keeps the last
good value and is tried again on a later use; the failure is logged once (the reason and the
path, never the content), and again only after a good read.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Identity = tuple[tuple[int, int, int], ...]


class Unreadable(ValueError):
    """The files give no value: missing, unreadable, or refused by the parser. The message
    names the path and the reason, never the content."""


class RereadFiles(Generic[T]):
    """A value built from files by `parse`, rebuilt when one of them changes.

    `parse` gets the files' bytes in the order of `paths` and raises `Unreadable` (or
    ValueError) to refuse them; `what` names the value in messages ("the broker CA file").
    """

    def __init__(
        self,
        paths: Sequence[Path],
        parse: Callable[[Sequence[bytes]], T],
        *,
        what: str,
        floor: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = tuple(paths)
        self.what = what
        self.floor = floor
        self._parse = parse
        self._clock = clock
        self._value: T | None = None
        self._identity: Identity | None = None
        self._looked_at = float("-inf")
        self._problem: str | None = None
        self.loaded_at: float | None = None
        """Wall-clock time (Unix seconds) the current value was read; None before a read."""

    @property
    def problem(self) -> str | None:
        """Why the files' newest state could not be read; None after a good read."""
        return self._problem

    def current(self) -> T:
        """The value as the files hold it now (the last good one while they cannot be read);
        `Unreadable` only before any good read."""
        now = self._clock()
        if self._value is None or now - self._looked_at >= self.floor:
            self._looked_at = now
            self._refresh()
        if self._value is None:
            raise Unreadable(self._problem or f"{self.what} has not been read")
        return self._value

    def _refresh(self) -> None:
        try:
            before = self._stat()
            if before == self._identity and self._value is not None:
                return
            value = self._parse([path.read_bytes() for path in self.paths])
            if self._stat() != before:
                raise Unreadable(f"{self.what} changed while being read; reading it again soon")
        except (OSError, ValueError) as error:
            self._failed(error)
            return
        self._value, self._identity, self._problem = value, before, None
        self.loaded_at = time.time()

    def _stat(self) -> Identity:
        found = []
        for path in self.paths:
            stat = os.stat(path)  # follows the kubelet's symlinks to the file itself
            found.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return tuple(found)

    def _failed(self, error: Exception) -> None:
        if isinstance(error, UnicodeDecodeError):  # its message quotes a byte of the file
            reason = "is not text in the expected encoding"
        elif isinstance(error, OSError):
            where = f" {error.filename}" if error.filename else ""
            reason = f"cannot read{where}: {error.strerror or type(error).__name__}"
        else:
            reason = str(error)
        problem = f"{self.what}: {reason}"
        if self._problem is None and self._value is not None:
            log.warning("%s; keeping the one read before", problem)
        self._problem = problem
