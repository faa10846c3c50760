"""Values the tests of several parts share: the vault IDs, in Sakura's 12-digit form."""

VAULT = "110000000001"
"""The vault the tests' secrets are seeded in."""
OTHER_VAULT = "110000000002"
"""A second vault: a grant or a secret of VAULT must not reach into it."""
