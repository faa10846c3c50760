"""A seeded emulator on a real socket, handed to a test as one value instead of a tuple."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from emulator.app import Emulator
from emulator.knobs import Knobs
from emulator.server import run_in_thread
from emulator.store import Store


@dataclass(frozen=True)
class EmulatorHandle:
    """The emulator a test talks to: its URL, and its store and knobs to arrange a case."""

    url: str
    """Base URL, e.g. http://127.0.0.1:PORT (a SakuraConfig's base_url)."""
    app: Emulator
    """The ASGI app itself (its config: the credentials it accepts)."""

    @property
    def store(self) -> Store:
        """Vaults and secrets: put, delete."""
        return self.app.store

    @property
    def knobs(self) -> Knobs:
        """Faults, latency, rate limits and the count of calls per operation."""
        return self.app.knobs


@contextlib.contextmanager
def serve_emulator(app: Emulator) -> Iterator[EmulatorHandle]:
    """Serve `app` over HTTP on loopback for the block."""
    with run_in_thread(app) as url:
        yield EmulatorHandle(url=url, app=app)
