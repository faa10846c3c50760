"""A Secret volume written the kubelet's way (its AtomicWriter), for tests of files the injector
re-reads: each version of the data goes into a fresh `..<timestamp>` directory, the `..data`
symlink is swapped to it with one rename, and each key is a symlink `KEY -> ..data/KEY`; the
old directory is then removed. A reader never sees a mix of two versions through `..data`.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

_versions = itertools.count(1)


def write_secret_volume(directory: Path, data: Mapping[str, str]) -> None:
    """Make `directory` hold exactly `data` (key -> text), swapped in atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "..data"
    old = os.readlink(link) if link.is_symlink() else None
    fresh = directory / f"..2026_12_05_00_00_00.{next(_versions)}"
    fresh.mkdir()
    for key, text in data.items():
        (fresh / key).write_text(text, encoding="utf-8")
        fresh.joinpath(key).chmod(0o440)
    staged = directory / "..data_tmp"
    staged.symlink_to(fresh.name)
    os.replace(staged, link)  # the one atomic step
    for key in data:
        entry = directory / key
        if not entry.is_symlink():
            entry.symlink_to(f"..data/{key}")
    for entry in directory.iterdir():  # keys the new version no longer has
        if entry.is_symlink() and entry.name not in data and not entry.name.startswith(".."):
            entry.unlink()
    if old is not None:
        shutil.rmtree(directory / old)
