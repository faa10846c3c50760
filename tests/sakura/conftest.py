"""Fixtures live in sakura_testkit (a unique module name, so no clash with other conftests)."""

from support.sakura_kit import emu, make_client, url

__all__ = ["emu", "make_client", "url"]
