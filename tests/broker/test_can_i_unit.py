"""`can-i` on the access reviewer's recording fake: the reviews it asks and the lines it prints.

test_broker_admission.py runs it against the local cluster's RBAC (and as a subprocess).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.broker_fakes import A, B, RecordingReviews

from injector.broker.access import AccessReviewer
from injector.broker.can_i import run_can_i
from injector.operations.cli import main


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


def test_without_a_vault_it_stops_before_kubernetes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No --vault and no $SAKURA_SECRETS_DEFAULT_VAULT_ID: a usage error naming both, raised
    before any Kubernetes client is built (so no Secret is read to find a default vault)."""
    monkeypatch.delenv("SAKURA_SECRETS_DEFAULT_VAULT_ID", raising=False)
    args = ["can-i", "-n", "shop", "--serviceaccount", "api", "db"]
    absent = str(tmp_path / "no-kubeconfig")
    assert main([*args, "--kubeconfig", absent]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "sakura-secrets-injector can-i: name the vault with --vault VAULT_ID (or set "
        "$SAKURA_SECRETS_DEFAULT_VAULT_ID); can-i does not read the injector's sakura-api-key "
        "Secret to find its default vault\n"
    )
    monkeypatch.setenv("SAKURA_SECRETS_DEFAULT_VAULT_ID", A)
    assert main([*args, "--kubeconfig", absent]) == 2  # the variable counts: on to Kubernetes
    assert "no Kubernetes credentials" in capsys.readouterr().err
    monkeypatch.delenv("SAKURA_SECRETS_DEFAULT_VAULT_ID")
    assert main([*args, "--vault", A, "--kubeconfig", absent]) == 2  # so does --vault
    assert "no Kubernetes credentials" in capsys.readouterr().err
