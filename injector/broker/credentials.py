"""Whether Sakura accepts the injector's API key, from the answers it gives.

A rejected key (HTTP 401 or 403) is not an outage: nothing gets better by waiting, and an
operator must act. `CredentialWatch` sits between the Sakura client and its users (the cache,
the vault inventory), remembers whether the last answer was a rejection, and makes /readyz say
so. While rejected, readiness asks Sakura again (one cheap `list_vaults`) at most every
`recheck_every` seconds, so a key fixed on Sakura's side makes the replica ready again.

The key may change under the watch (`credentials`: the mounted Secret's files, re-read on use;
docs/operations.md, "Rotating the injector's Sakura key"). A rejection is remembered with the
key it was given to: when the key changes, readiness asks again at once, with the new key. And
a rejection within `grace` seconds of Sakura's last acceptance keeps the replica ready while it
is rechecked, so revoking the old key a moment before the kubelet delivers the new one does not
take every replica out of the webhook's Service (failurePolicy Fail would refuse every opted-in
pod). Past the grace, a key that stays rejected fails readiness as before.
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
from sakura.credentials import CredentialSource
from sakura.ratelimit import Tenant

log = logging.getLogger(__name__)

REJECTED = "Sakura rejected the injector's credentials"
"""The phrase every user-facing message about a rejected key starts with."""
HOW_TO_FIX = (
    "put a key Sakura accepts into the sakura-api-key Secret (SAKURA_ACCESS_TOKEN, "
    "SAKURA_ACCESS_TOKEN_SECRET), or give the key Secret Manager permissions; the injector "
    "re-reads the mounted Secret within about two minutes, no restart needed (a key given by "
    "environment variables needs a restart)"
)
GRACE = 90.0
"""Seconds after Sakura last accepted a key during which its rejection keeps the replica
ready while it is rechecked: a rotation's revoke-to-new-key gap, bounded."""

T = TypeVar("T")


class CredentialWatch:
    """A SakuraReader that passes every call through and remembers a rejection."""

    def __init__(
        self,
        client: SakuraReader,
        *,
        credentials: CredentialSource | None = None,
        recheck_every: float = 30.0,
        recheck_timeout: float = 5.0,
        grace: float = GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`credentials`: where the client gets its key (None: a key that never changes)."""
        self.client = client
        self.credentials = credentials
        self.recheck_every = recheck_every
        self.recheck_timeout = recheck_timeout
        self.grace = grace
        self._clock = clock
        self._rejection: Unauthorized | None = None
        self._rejected_key = ""
        """The fingerprint of the key the last rejection was given to."""
        self._rechecked_key = ""
        self._accepted_at = float("-inf")
        self._tolerated_after = float("nan")
        """The acceptance whose grace was last logged: one warning per grace, not per probe."""
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
        """None unless Sakura rejected the key, and accepted none within the grace (for
        /readyz). Each call also looks at the key files, so a new key is picked up (and
        shows in the log and the metric) without traffic."""
        key = self._key()
        rejection = self._rejection
        if rejection is None:
            return None
        now = self._clock()
        idle = self._recheck is None or self._recheck.done()
        new_key = key not in (self._rejected_key, self._rechecked_key)
        if idle and (new_key or now - self._checked_at >= self.recheck_every):
            self._checked_at = now
            self._rechecked_key = key
            self._recheck = asyncio.get_running_loop().create_task(self._ask_again())
        since = now - self._accepted_at
        if since <= self.grace:
            if self._tolerated_after != self._accepted_at:
                self._tolerated_after = self._accepted_at
                log.warning(
                    "%s %.0fs after it accepted one; staying ready for up to %gs after that "
                    "while asking again (is the key being rotated?)",
                    REJECTED,
                    since,
                    self.grace,
                )
            return None
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
        key = self._key()  # what the client sends; a key read during the call counts as new
        try:
            result = await call
        except Unauthorized as error:
            if self._rejection is None:
                log.error("%s: %s; %s", REJECTED, error.message, HOW_TO_FIX)
            self._rejection = error
            self._rejected_key = key
            raise
        except NotFound:
            self._accepted()  # Sakura looked: it accepted the key
            raise
        self._accepted()
        return result

    def _accepted(self) -> None:
        self._rejection = None
        self._accepted_at = self._clock()

    def _key(self) -> str:
        """The fingerprint of the key in use ("" for a key that never changes)."""
        if self.credentials is None:
            return ""
        try:
            return self.credentials.current().fingerprint
        except ValueError:  # never read: serve does not start without a key
            return ""
