"""Direct mode with a service principal in the pod's credentials Secret: the real entry point
against the emulator over HTTP, the env as the kubelet fills it from the optional keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.principal_kit import KID, PRINCIPAL_ID, private_pem, public_pem, rsa_key
from support.sidecar_harness import PLAIN, make_plan, run_main, secret_file, snapshot

from emulator import Emulator
from sidecar.errors import EXIT_CONFIG, EXIT_CREDENTIALS

PATH = "/service-principals/oauth2/token"


@pytest.fixture
def principal_env(
    emulator: Emulator, sakura_url: str, termination_log: Path, secrets_dir: Path
) -> dict[str, str]:
    emulator.principals.add_key(PRINCIPAL_ID, KID, public_pem(rsa_key()))
    plan = make_plan(secrets_dir, secret_file("plain", "plain"))
    return {
        "SAKURA_SERVICE_PRINCIPAL_ID": PRINCIPAL_ID,
        "SAKURA_SERVICE_PRINCIPAL_KEY_ID": KID,
        "SAKURA_PRIVATE_KEY": private_pem(rsa_key()),
        "SAKURA_TOKEN_ENDPOINT": sakura_url + PATH,
        "SAKURA_ENDPOINTS_SECRETMANAGER": sakura_url,
        "SAKURA_SECRETS_TERMINATION_LOG": str(termination_log),
        "SAKURA_SECRETS_DEADLINE": "5",
        "SAKURA_SECRETS_PLAN": plan.to_json(),
    }


def test_a_service_principal_fetches_with_one_token(
    principal_env: dict[str, str],
    emulator: Emulator,
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outcome = run_main(principal_env, capsys, termination_log)
    assert outcome.code == 0, outcome.stderr
    assert snapshot(secrets_dir)["plain"] == (PLAIN.encode(), 0o400)
    assert emulator.principals.exchanges == 1


def test_a_disabled_key_is_the_credentials_exit_naming_what_to_check(
    principal_env: dict[str, str],
    emulator: Emulator,
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator.principals.set_enabled(KID, False)
    outcome = run_main(principal_env, capsys, termination_log)
    assert outcome.code == EXIT_CREDENTIALS
    assert f"service principal key '{KID}' is disabled" in outcome.termination
    assert "SAKURA_SERVICE_PRINCIPAL_KEY_ID" in outcome.termination
    assert "PRIVATE KEY" not in outcome.termination + outcome.stderr
    assert list(secrets_dir.iterdir()) == []


def test_a_secret_with_both_kinds_is_a_configuration_error(
    principal_env: dict[str, str],
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {**principal_env, "SAKURA_ACCESS_TOKEN": "t", "SAKURA_ACCESS_TOKEN_SECRET": "s"}
    outcome = run_main(env, capsys, termination_log)
    assert outcome.code == EXIT_CONFIG
    assert "both an API key" in outcome.termination
