"""The layers of the product, stated once and checked from the source (README, "How it works").

Each product package sits on a layer and imports only from its own layer or lower ones:

    contract            the plan, the annotation keys, the pod shape, the broker's wire (stdlib;
                        jinja2 in contract/template.py only)
    sakura              the Sakura API client both halves share
    injector.kube,      foundation the injector's layers share
    injector.fair_queue
    injector.webhook    the webhook's pure core: annotations -> plan -> patch, decisions
    injector.broker     the broker's core: token -> authorize -> fetch
    injector.serving    the HTTP shell: apps, server, TLS, bodies, metrics, statuses
    injector.operations the CLI, wiring, certificates, render, can-i

`sidecar` (the init container) stands beside the injector: it imports contract and sakura and
never injector/, kubernetes or the servers' libraries, so it starts fast. No product module
imports the emulator (tests and the demo only). Imports are read with `ast`, including those
inside functions, so a lazy import cannot hide a layer violation.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("contract", "sakura", "injector", "sidecar")
LAYERS = (
    ("contract",),
    ("sakura",),
    ("injector.kube", "injector.fair_queue", "injector"),
    ("injector.webhook",),
    ("injector.broker",),
    ("injector.serving",),
    ("injector.operations", "injector.__main__"),
)
# Third-party packages a layer may not import (beyond the layer rule itself).
FORBIDDEN = {
    "contract": (
        *("kubernetes", "starlette", "uvicorn", "httpx", "prometheus_client", "jsonpatch"),
        "orjson",  # the init container's image is the same, but its start pays every import
    ),
    "sidecar": (
        *("kubernetes", "starlette", "uvicorn", "prometheus_client", "jsonpatch", "jwt"),
        "orjson",
    ),
    "injector.webhook": ("kubernetes", "starlette", "uvicorn", "httpx", "prometheus_client"),
    "injector.broker": ("starlette", "uvicorn"),
}
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path, *, top_level_only: bool = False) -> Iterator[str]:
    """Absolute names `path` imports (relative imports resolved against `name`)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            for alias in node.names:  # `from injector.broker import cache` names a module
                if f"{base}.{alias.name}" in MODULES:
                    yield f"{base}.{alias.name}"


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _layer(name: str) -> int | None:
    """The layer of a product module: its most specific (longest) matching prefix."""
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if _within(name, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def test_every_product_module_has_a_layer() -> None:
    assert MODULES, "no product modules found"
    missing = [name for name in MODULES if _layer(name) is None and not _within(name, "sidecar")]
    assert missing == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_imports_only_its_own_layer_or_lower(name: str) -> None:
    wrong = []
    for imported in _imports(name, MODULES[name]):
        if imported.split(".")[0] == "emulator":
            wrong.append(f"{imported} (the emulator is for tests and the demo only)")
            continue
        if imported.split(".")[0] not in PRODUCT:
            for prefix, banned in FORBIDDEN.items():
                if _within(name, prefix) and imported.split(".")[0] in banned:
                    wrong.append(f"{imported} (not in {prefix})")
            continue
        if _within(name, "sidecar"):
            if _within(imported, "injector"):
                wrong.append(f"{imported} (the init container never imports the injector)")
            continue
        mine, theirs = _layer(name), _layer(imported)
        if _within(imported, "sidecar"):
            wrong.append(f"{imported} (the injector never imports the init container)")
        elif mine is not None and theirs is not None and theirs > mine:
            wrong.append(f"{imported} (a higher layer: {LAYERS[theirs][0]})")
    assert wrong == [], f"{name} imports " + "; ".join(wrong)


def test_no_import_cycle_among_product_modules() -> None:
    """Module-level imports only: a cycle there fails at import time or hides a layer."""
    graph = {
        name: {
            imported
            for imported in _imports(name, path, top_level_only=True)
            if imported in MODULES and imported != name
        }
        for name, path in MODULES.items()
    }
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    # A package's __init__ re-exporting its modules is not a cycle of meaning.
    cycles = [c for c in cycles if not any(MODULES[m].name == "__init__.py" for m in c)]
    assert cycles == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_product_module_is_over_the_size_bound(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by job (bound {MAX_LINES})"


def test_the_rules_catch_a_violation() -> None:
    """The checker itself: a webhook module importing the shell is reported."""
    assert _layer("injector.webhook.admission") < _layer("injector.serving.metrics")  # type: ignore[operator]
    assert _layer("injector.operations.cli") == len(LAYERS) - 1
    assert _layer("injector.fair_queue") == 2
    assert _layer("sidecar.writer") is None
