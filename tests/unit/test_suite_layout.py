"""The suite's own layout: what tests share lives in tests/support, nowhere else.

A test module that imports a conftest or another test module only collects in pytest's default
import mode (the importing file's folder on sys.path) and ties two tests' helpers together; a
second hand clock drifts from the first.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SUPPORT = TESTS / "support"


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
    return names


def test_no_test_module_imports_a_conftest_or_another_test_module() -> None:
    local = {p.stem for p in _modules() if SUPPORT not in p.parents}
    found = {
        f"{path.relative_to(TESTS)} imports {name}"
        for path in _modules()
        for name in _imported(path) & local
    }
    assert not found, f"move what they share into tests/support: {sorted(found)}"


def test_the_hand_clock_is_defined_once() -> None:
    clocks = {
        f"{path.relative_to(TESTS)}: class {node.name}"
        for path in _modules()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ClassDef) and node.name.endswith("Clock")
    }
    assert clocks == {"support/clock.py: class HandClock"}
