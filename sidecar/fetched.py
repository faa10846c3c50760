"""What a fetch returns: for each distinct (name, requested version), the value and its version."""

from __future__ import annotations

from dataclasses import dataclass, field

from contract import SecretVersion


@dataclass(frozen=True)
class Fetched:
    """One value as read; `version` is the resolved one even when the latest was asked for."""

    requested: SecretVersion
    version: int
    value: str = field(repr=False)


Values = dict[SecretVersion, Fetched]
"""Every `plan.secrets()` entry mapped to what was read for it."""
