"""What a fetch returns, in either mode: for each distinct (name, requested version) of the
plan, the value read for it (`contract.broker.FetchedSecret`, whose docstring draws the stages
of a value on its way to the file)."""

from __future__ import annotations

from contract import SecretVersion
from contract.broker import FetchedSecret

Values = dict[SecretVersion, FetchedSecret]
"""Every `plan.secrets()` entry mapped to what was read for it."""
