"""The async Sakura client's reads, callable from the fetch's threads (a service principal).

A principal's Bearer tokens are bought and renewed by a single flight on an event loop
(sakura/bearer.py), so direct mode with one runs the async client on a loop in a thread of its
own, and each read thread waits for its coroutine there: one fetch logic for both kinds of
credentials (sidecar/direct.py), and the tokens shared by all the reads of a round.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sakura import SakuraClient, SakuraConfig
from sakura.ratelimit import RateLimiter
from sakura.reader import SecretInfo, Unveiled

T = TypeVar("T")


class LoopReads:
    def __init__(self, config: SakuraConfig, *, limiter: RateLimiter, deadline: float) -> None:
        self._client = SakuraClient(config, limiter=limiter, deadline=deadline)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sakura-loop", daemon=True
        )
        self._thread.start()

    def unveil(self, vault_id: str, name: str, version: int | None = None) -> Unveiled:
        return self._run(self._client.unveil(vault_id, name, version))

    def list_secrets(self, vault_id: str) -> list[SecretInfo]:
        return self._run(self._client.list_secrets(vault_id))

    def close(self) -> None:
        self._run(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        # The client's deadline bounds each call; the fetch's own guard bounds the wait here.
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()
