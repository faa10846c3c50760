"""Where a refresh reads: the broker (change-only reads) or Sakura itself (direct mode).

Each answers two questions: every value of the plan (once, at start), and, of the secrets held
at the latest version, those with a newer version (every round). Pinned versions (`NAME@3`)
never change, so they are never asked again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from contract import Plan, SecretVersion
from contract.broker import FetchedSecret, SecretRequest
from sakura import SakuraConfig
from sidecar import broker_client
from sidecar.config import BrokerSettings, FetchConfig
from sidecar.fetched import Values


class Source(Protocol):
    def fetch(self) -> Values:
        """Every `plan.secrets()` entry; raises FetchError."""
        ...

    def changes(self, held: Mapping[str, int]) -> Values:
        """Of the names held at the latest (name -> version held), the newer values only."""
        ...


def held_latest(values: Values) -> dict[str, int]:
    """The names read at the latest and the version held of each: what a round asks about."""
    return {wanted.name: item.version for wanted, item in values.items() if wanted.version is None}


@dataclass(frozen=True)
class BrokerSource:
    """One POST per round with the versions held; the broker answers `Unchanged` for those
    still current (an older broker answers them with their value: the same version, taken as
    unchanged)."""

    plan: Plan
    settings: BrokerSettings
    deadline: float
    transport: httpx.BaseTransport | None = None

    def fetch(self) -> Values:
        return broker_client.fetch(
            self.plan, self.settings, deadline=self.deadline, transport=self.transport
        )

    def changes(self, held: Mapping[str, int]) -> Values:
        request = SecretRequest(
            self.plan.vault_id, tuple(SecretVersion(name) for name in sorted(held)), dict(held)
        )
        items = broker_client.exchange(
            request, self.settings, deadline=self.deadline, transport=self.transport
        )
        # Only a newer version: a broker replica whose cache lags must not take the files back.
        return {
            item.requested: item
            for item in items
            if isinstance(item, FetchedSecret) and item.version > held[item.name]
        }


@dataclass(frozen=True)
class DirectSource:
    """The pod's own Sakura key: one listing of the vault per round, and an unveil of each
    newer version only."""

    plan: Plan
    config: SakuraConfig
    deadline: float
    transport: httpx.BaseTransport | None = None

    def fetch(self) -> Values:
        from sidecar import direct

        return direct.fetch(
            self.plan, self.config, deadline=self.deadline, transport=self.transport
        )

    def changes(self, held: Mapping[str, int]) -> Values:
        from sidecar import direct

        return direct.changes(
            self.plan, self.config, held, deadline=self.deadline, transport=self.transport
        )


def of(settings: FetchConfig, *, deadline: float) -> Source:
    """The source the plan's mode names (config.load chose the settings by it)."""
    if isinstance(settings.source, BrokerSettings):
        return BrokerSource(settings.plan, settings.source, deadline)
    return DirectSource(settings.plan, settings.source, deadline)
