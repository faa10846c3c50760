"""What a whole run of the init container imports, in a fresh interpreter.

Start-up is most of the init container's time (docs/init-container.md, "Start-up cost"): jinja2
costs about as much as httpx, so a plan without a template must never load it, and kubernetes
must never load at all. The probe runs the real entry point with the webhook's env, then
prints the top-level packages it loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.sidecar_harness import PLAIN, make_plan, secret_file, template_file

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import sidecar.__main__
code = sidecar.__main__.main()
print(json.dumps({"code": code, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _loaded(env: dict[str, str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["code"] == 0, done.stderr
    return set(result["loaded"])


NEVER = {"jinja2", "markupsafe", "kubernetes", "starlette", "uvicorn"}
SIGNING = {"jwt", "cryptography"}
"""A service principal's grant is signed with these; an API key never needs them."""


@pytest.mark.parametrize(
    ("mode", "unneeded"),
    [
        ("broker", NEVER | SIGNING | {"asyncio"}),  # one request: no event loop, no Sakura client
        # an API key reads with the blocking reader on threads: no event loop either
        ("direct", NEVER | SIGNING | {"asyncio"}),
    ],
)
def test_a_plan_without_a_template_loads_only_what_its_mode_needs(
    mode: str,
    unneeded: set[str],
    request: pytest.FixtureRequest,
    secrets_dir: Path,
) -> None:
    env: dict[str, str] = request.getfixturevalue(f"{mode}_env")
    plan = make_plan(secrets_dir, secret_file("plain", "plain"), mode=mode)
    loaded = _loaded({**env, "SAKURA_SECRETS_PLAN": plan.to_json()})
    assert (secrets_dir / "plain").read_text() == PLAIN
    assert "httpx" in loaded  # the probe sees what the run imported
    assert not unneeded & loaded


def test_a_plan_with_a_template_loads_jinja2_to_render_it(
    direct_env: dict[str, str], secrets_dir: Path
) -> None:
    plan = make_plan(secrets_dir, template_file("conf", 'p={{ secret("plain") }}'))
    loaded = _loaded({**direct_env, "SAKURA_SECRETS_PLAN": plan.to_json()})
    assert (secrets_dir / "conf").read_text() == f"p={PLAIN}"
    assert "jinja2" in loaded
    assert "kubernetes" not in loaded
