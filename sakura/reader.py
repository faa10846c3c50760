"""What reading Sakura gives back, and the reads themselves as one protocol.

The broker stacks its layers on these calls (the credential watch, the inventory, the cache each
take a reader and the watch is one itself), and unit tests pass a fake: one protocol, so a
signature changed in the client is changed for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sakura.ratelimit import Tenant


@dataclass(frozen=True)
class Unveiled:
    """One secret version's value; repr leaves the value out."""

    name: str
    version: int
    value: str = field(repr=False)


@dataclass(frozen=True)
class SecretInfo:
    name: str
    latest_version: int


@dataclass(frozen=True)
class VaultInfo:
    id: str
    name: str
    description: str = ""
    kms_key_id: str = ""
    tags: tuple[str, ...] = ()
    created_at: str = ""
    modified_at: str = ""


class SakuraReader(Protocol):
    """The reads of `SakuraClient` (safe to retry, never a value in a listing).

    `tenant`: whose call it is, for the rate limiter's round-robin between tenants.
    """

    async def unveil(
        self, vault_id: str, name: str, version: int | None = None, *, tenant: Tenant = None
    ) -> Unveiled: ...

    async def list_secrets(self, vault_id: str, *, tenant: Tenant = None) -> list[SecretInfo]: ...

    async def list_vaults(self) -> list[VaultInfo]: ...
