"""`can-i` on the access reviewer's recording fake: the reviews it asks and the lines it prints.

test_broker_admission.py runs it against the local cluster's RBAC (and as a subprocess).
"""

from __future__ import annotations

from support.broker_fakes import A, B, RecordingReviews

from injector.broker.access import AccessReviewer
from injector.broker.can_i import run_can_i


def rule(name: str, resource: str = "secrets") -> str:
    return (
        f'serviceaccount shop/api may not get sakura-secrets.io {resource} "{name}"; grant it '
        f"with a Role/RoleBinding (verb get, apiGroup sakura-secrets.io, resource {resource}, "
        f"resourceName {name}), e.g. the rule {{apiGroups: [sakura-secrets.io], resources: "
        f'[{resource}], resourceNames: ["{name}"], verbs: [get]}}'
    )


async def test_it_answers_the_vault_then_each_pair() -> None:
    reviews = RecordingReviews({("vaults", A), ("secrets", f"{A}/db"), ("secrets", f"{B}/key")})
    code, lines = await run_can_i(
        AccessReviewer(None, reviews=reviews), "shop", "api", A, ["db@2#user", "key", "db"]
    )
    assert (code, lines) == (
        1,
        [f"yes vault {A}", f"yes {A}/db", f"no  {A}/key: " + rule(f"{A}/key")],
    )
    assert sorted((r["resource"], r["name"]) for r in reviews.sent) == [
        ("secrets", f"{A}/db"),
        ("secrets", f"{A}/key"),
        ("vaults", A),
    ]


async def test_without_the_vault_it_still_answers_every_pair() -> None:
    """An admin's tool: one run shows every grant to add (the broker stops at the vault)."""
    reviews = RecordingReviews({("secrets", f"{B}/key")})
    code, lines = await run_can_i(AccessReviewer(None, reviews=reviews), "shop", "api", B, ["key"])
    assert (code, lines) == (1, [f"no  vault {B}: " + rule(B, "vaults"), f"yes {B}/key"])
    reviews.grants.add(("vaults", B))
    fresh = AccessReviewer(None, reviews=reviews)
    assert await run_can_i(fresh, "shop", "api", B, ["key"]) == (
        0,
        [f"yes vault {B}", f"yes {B}/key"],
    )
