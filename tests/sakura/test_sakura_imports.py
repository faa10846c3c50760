"""The init container imports `sakura` without the injector's dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib.abc, sys
BLOCKED = ("kubernetes", "starlette", "uvicorn", "emulator", "injector")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Block())
import sakura, sakura.client, sakura.config, sakura.errors, sakura.jsonkey, sakura.ratelimit
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
assert not loaded, loaded
client = sakura.SakuraClient(sakura.SakuraConfig("t", "s"))
print("ok")
"""


def test_sakura_imports_without_kubernetes_or_starlette() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
