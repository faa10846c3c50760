"""What the two halves agree on is spelled once: each contract literal is a string in exactly
one product module (the contract/ module that names it); everyone else imports the constant.

Strings are read with `ast`, so comments and docstrings (documentation may quote a name) do not
count; f-strings count by their literal parts, so a message that spells a key by hand does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from contract.annotations import PREFIX
from contract.broker import ANSWER_TOO_LARGE, CREDENTIALS_REJECTED, SECRETS_PATH
from contract.plan import VAULT_ID
from contract.pod import (
    ENV_BROKER_CA,
    ENV_BROKER_URL,
    ENV_DEADLINE,
    ENV_PLAN,
    ENV_TERMINATION_LOG,
    ENV_TOKEN_FILE,
    INIT_CONTAINER,
    REFRESH_CONTAINER,
    TERMINATION_MESSAGE_PATH,
    TOKEN_AUDIENCE,
    TOKEN_DIRECTORY,
    TOKEN_VOLUME,
)

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("contract", "sakura", "injector", "sidecar")
_NAME_CHAR = r"A-Za-z0-9_\-"

# literal -> the one module that may spell it
WITHIN = {
    PREFIX: "contract/annotations.py",
    SECRETS_PATH: "contract/broker.py",
    CREDENTIALS_REJECTED: "contract/broker.py",
    ANSWER_TOO_LARGE: "contract/broker.py",
    INIT_CONTAINER: "contract/pod.py",
    REFRESH_CONTAINER: "contract/pod.py",
    ENV_PLAN: "contract/pod.py",
    ENV_BROKER_URL: "contract/pod.py",
    ENV_BROKER_CA: "contract/pod.py",
    ENV_TOKEN_FILE: "contract/pod.py",
    ENV_DEADLINE: "contract/pod.py",
    ENV_TERMINATION_LOG: "contract/pod.py",
    TOKEN_VOLUME: "contract/pod.py",
    TOKEN_DIRECTORY: "contract/pod.py",
    TERMINATION_MESSAGE_PATH: "contract/pod.py",
    "{12}": "contract/plan.py",
}
"""Found anywhere inside a string, as a whole name (not as part of a longer one)."""
EXACT = {TOKEN_AUDIENCE: "contract/pod.py"}
"""Found as a whole string only: the audience is spelled like the project, whose name appears
in messages ("sakura-secrets-injector is overloaded") and the user agent."""
OTHER_MEANING = {
    TOKEN_AUDIENCE: "injector/operations/",
    ENV_BROKER_URL: "injector/operations/",
}
"""Where the same spelling names another thing: operations/ names the injector's installation
(its Service, webhook configuration and distribution are called like the audience), and its
--broker-url flag reads a variable called like the init container's (whose value it becomes)."""


def _documentation(tree: ast.AST) -> set[int]:
    """ids of the strings that stand alone as statements: docstrings, attribute docstrings."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def _strings() -> dict[str, list[str]]:
    """Every product module's non-documentation string constants, by path."""
    found: dict[str, list[str]] = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            skip = _documentation(tree)
            found[path.relative_to(ROOT).as_posix()] = [
                node.value
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skip
            ]
    return found


STRINGS = _strings()


def _spelled_in(literal: str, exact: bool) -> set[str]:
    pattern = re.compile(
        rf"(?<![{_NAME_CHAR}.]){re.escape(literal)}(?![{_NAME_CHAR}])"
        if literal[-1] not in "/}"
        else re.escape(literal)
    )
    elsewhere = OTHER_MEANING.get(literal)
    return {
        path
        for path, strings in STRINGS.items()
        if not (elsewhere and path.startswith(elsewhere))
        and any((s == literal) if exact else pattern.search(s) for s in strings)
    }


@pytest.mark.parametrize(("literal", "home"), sorted(WITHIN.items()))
def test_a_contract_literal_is_spelled_in_one_module(literal: str, home: str) -> None:
    assert _spelled_in(literal, exact=False) == {home}


@pytest.mark.parametrize(("literal", "home"), sorted(EXACT.items()))
def test_the_audience_is_spelled_in_one_module(literal: str, home: str) -> None:
    assert _spelled_in(literal, exact=True) == {home}


def test_the_vault_id_pattern_is_the_one_the_constant_holds() -> None:
    """The search above looks for the pattern's repetition (`[0-9]{12}`, `\\d{12}`, ...);
    this pins it to the constant."""
    assert "{12}" in VAULT_ID.pattern


def test_the_search_sees_a_hand_spelled_key_in_a_message() -> None:
    """The check can fail: a message that spells a key by hand is found, a docstring is not."""
    tree = ast.parse(
        '"""Reads sakura-secrets.io/vault-id."""\n'
        'x = f"set the sakura-secrets.io/vault-id annotation ({y})"\n'
    )
    skip = _documentation(tree)
    strings = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip
    ]
    assert strings == ["set the sakura-secrets.io/vault-id annotation (", ")"]
