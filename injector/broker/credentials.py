"""Whether Sakura accepts the injector's API key, from the answers it gives.

A rejected key (HTTP 401 or 403) is not an outage: nothing gets better by waiting, and an
operator must act. `CredentialWatch` sits between the Sakura client and its users (the cache,
the vault inventory), remembers whether the last answer was a rejection, and makes /readyz say
so. While rejected, readiness asks Sakura again (one cheap `list_vaults`) at most every
`recheck_every` seconds, so a key fixed on Sakura's side makes the replica ready again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from injector.broker.metrics import counted_as
from sakura import (
    NotFound,
    SakuraError,
    SakuraReader,
    SecretInfo,
    Unauthorized,
    Unveiled,
    VaultInfo,
)
from sakura.ratelimit import Tenant

log = logging.getLogger(__name__)

REJECTED = "Sakura rejected the injector's credentials"
"""The phrase every user-facing message about a rejected key starts with."""
HOW_TO_FIX = (
    "fix SAKURA_ACCESS_TOKEN/SAKURA_ACCESS_TOKEN_SECRET in the sakura-api-key Secret (or the "
    "key's Secret Manager permissions) and restart the injector"
)

T = TypeVar("T")


class CredentialWatch:
    """A SakuraReader that passes every call through and remembers a rejection."""

    def __init__(
        self,
        client: SakuraReader,
        *,
        recheck_every: float = 30.0,
        recheck_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.recheck_every = recheck_every
        self.recheck_timeout = recheck_timeout
        self._clock = clock
        self._rejection: Unauthorized | None = None
        self._checked_at = float("-inf")
        self._recheck: asyncio.Task[None] | None = None

    @property
    def rejection(self) -> Unauthorized | None:
        """Sakura's last rejection, None while the last answer accepted the key."""
        return self._rejection

    async def unveil(
        self, vault_id: str, name: str, version: int | None = None, *, tenant: Tenant = None
    ) -> Unveiled:
        return await self._watched(self.client.unveil(vault_id, name, version, tenant=tenant))

    async def list_secrets(self, vault_id: str, *, tenant: Tenant = None) -> list[SecretInfo]:
        return await self._watched(self.client.list_secrets(vault_id, tenant=tenant))

    async def list_vaults(self) -> list[VaultInfo]:
        return await self._watched(self.client.list_vaults())

    def readiness(self) -> str | None:
        """None unless the last Sakura answer rejected the key (for /readyz)."""
        rejection = self._rejection
        if rejection is None:
            return None
        now = self._clock()
        idle = self._recheck is None or self._recheck.done()
        if idle and now - self._checked_at >= self.recheck_every:
            self._checked_at = now
            self._recheck = asyncio.get_running_loop().create_task(self._ask_again())
        return f"{REJECTED} ({rejection.message}); {HOW_TO_FIX}"

    async def _ask_again(self) -> None:
        try:
            with counted_as("recheck"):
                await asyncio.wait_for(self.list_vaults(), self.recheck_timeout)
        except (SakuraError, TimeoutError) as error:
            log.info("Sakura still refuses the injector's credentials or did not answer: %s", error)
        else:
            log.info("Sakura accepts the injector's credentials again")

    async def _watched(self, call: Awaitable[T]) -> T:
        try:
            result = await call
        except Unauthorized as error:
            if self._rejection is None:
                log.error("%s: %s; %s", REJECTED, error.message, HOW_TO_FIX)
            self._rejection = error
            raise
        except NotFound:
            self._rejection = None  # Sakura looked: it accepted the key
            raise
        self._rejection = None
        return result
