"""Fixtures of the Sakura client tests; defined in support.sakura_kit beside its helpers."""

from support.sakura_kit import emu, make_client, url

__all__ = ["emu", "make_client", "url"]
