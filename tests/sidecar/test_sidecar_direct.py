"""Direct mode end to end: the real entry point against the emulator over HTTP."""

from __future__ import annotations

import json
import logging
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.sidecar_harness import (
    API_V1,
    API_V2,
    DB,
    PLAIN,
    VAULT,
    make_plan,
    run_main,
    secret_file,
    snapshot,
    template_file,
    visible,
)
from support.sidecar_harness import assert_no_value as assert_no_secret_value

from contract import Plan
from emulator import Emulator
from sidecar.errors import (
    EXIT_BAD_VALUE,
    EXIT_CONFIG,
    EXIT_CREDENTIALS,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
)


def _env(direct_env: dict[str, str], plan: Plan) -> dict[str, str]:
    return {**direct_env, "SAKURA_SECRETS_PLAN": plan.to_json()}


def test_writes_every_file_with_its_mode_and_a_record(
    direct_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    plan = make_plan(
        secrets_dir,
        secret_file("db-user", "db#user"),
        secret_file("db-pass", "db#pass", 0o440),
        secret_file("api-latest", "api"),
        secret_file("api-pinned", "api@1", 0o644),
        secret_file("plain", "plain"),
        template_file("dsn", 'postgres://{{ secret("db#user") }}:{{ secret("db", key="pass") }}@h'),
    )
    before = datetime.now(UTC) - timedelta(seconds=1)

    outcome = run_main(_env(direct_env, plan), capsys, termination_log)

    assert outcome.code == 0, outcome.stderr
    assert outcome.termination == ""
    files = snapshot(secrets_dir)
    assert files["db-user"] == (DB["user"].encode(), 0o400)
    assert files["db-pass"] == (DB["pass"].encode(), 0o440)
    assert files["api-latest"] == (API_V2.encode(), 0o400)
    assert files["api-pinned"] == (API_V1.encode(), 0o644)
    assert files["plain"] == (PLAIN.encode(), 0o400)
    assert files["dsn"] == (f"postgres://{DB['user']}:{DB['pass']}@h".encode(), 0o400)
    assert set(files) == {
        "db-user",
        "db-pass",
        "api-latest",
        "api-pinned",
        "plain",
        "dsn",
        ".sakura-secrets.json",
    }, "no temporary file may be left behind"

    record_bytes, record_mode = files[".sakura-secrets.json"]
    assert record_mode == 0o444
    record = json.loads(record_bytes)
    assert not (secrets_dir / ".sakura-secrets.json").is_symlink(), "beside the set, not in it"
    assert record["set"] == os.readlink(secrets_dir / "..data")
    assert record["refresh_interval"] is None and record["consecutive_failures"] == 0
    assert record["last_success"] == record["loaded_at"] and record["last_error"] is None
    assert record["vault_id"] == plan.vault_id
    assert record["mode"] == "direct"
    assert before <= datetime.fromisoformat(record["loaded_at"]) <= datetime.now(UTC)
    assert record["secrets"] == [
        {"name": "api", "requested_version": None, "version": 2, "files": ["api-latest"]},
        {"name": "api", "requested_version": 1, "version": 1, "files": ["api-pinned"]},
        {
            "name": "db",
            "requested_version": None,
            "version": 1,
            "files": ["db-user", "db-pass", "dsn"],
        },
        {"name": "plain", "requested_version": None, "version": 1, "files": ["plain"]},
    ]
    assert_no_secret_value(record_bytes.decode(), outcome.stderr, caplog.text)
    assert "loaded 4 secrets (api@2, api@1, db@1, plain@1)" in caplog.text + outcome.stderr


def test_each_distinct_secret_is_read_once(
    direct_env: dict[str, str],
    emulator: Emulator,
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = make_plan(
        secrets_dir,
        secret_file("u", "db#user"),
        secret_file("p", "db#pass"),
        template_file("t", '{{ secret("db#user") }}{{ secret("plain") }}'),
    )
    assert run_main(_env(direct_env, plan), capsys, termination_log).code == 0
    assert emulator.knobs.calls["unveil"] == 2


def test_a_pre_existing_file_is_replaced_atomically(
    direct_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = secrets_dir / "plain"
    old.write_text("old content")
    reader = open(old, "rb")  # a process that had the old file open keeps the old, whole file
    old_inode = os.stat(old).st_ino
    plan = make_plan(secrets_dir, secret_file("plain", "plain", 0o640))

    outcome = run_main(_env(direct_env, plan), capsys, termination_log)

    assert outcome.code == 0, outcome.stderr
    assert reader.read() == b"old content"
    reader.close()
    assert old.read_bytes() == PLAIN.encode()
    assert os.stat(old).st_ino != old_inode, "replaced by rename, not rewritten in place"
    assert stat.S_IMODE(os.stat(old).st_mode) == 0o640
    assert visible(secrets_dir) == [".sakura-secrets.json", "plain"]


@pytest.mark.parametrize(
    ("files", "code", "expected"),
    [
        (
            [secret_file("a", "plain"), secret_file("b", "missing"), secret_file("c", "api")],
            EXIT_NOT_FOUND,
            "not found: reading secret 'missing' from vault 110000000001: "
            "secret 'missing' not found",
        ),
        (
            [secret_file("a", "plain"), secret_file("b", "api@7"), secret_file("c", "db#user")],
            EXIT_NOT_FOUND,
            "not found: secret 'api' has no version 7",
        ),
        (
            [secret_file("a", "plain"), secret_file("b", "plain#user"), secret_file("c", "api")],
            EXIT_BAD_VALUE,
            "bad key: secret 'plain#user': key 'user' was asked for, but the value is not JSON",
        ),
        (
            [secret_file("a", "plain"), secret_file("b", "db#nope"), secret_file("c", "api")],
            EXIT_BAD_VALUE,
            "bad key: secret 'db#nope' has no key 'nope'",
        ),
        (
            [
                secret_file("a", "plain"),
                template_file("b", '{{ secret("db#pass") }}{{ secret("api") + 1 }}'),
                secret_file("c", "db#user"),
            ],
            EXIT_BAD_VALUE,
            "template error: template file 'b' failed to render at line 1: TypeError",
        ),
        (
            [
                secret_file("a", "plain"),
                template_file("b", '{{ secret("notjson", key="k") }}'),
                secret_file("c", "api"),
            ],
            EXIT_BAD_VALUE,
            "bad key: template file 'b': secret 'notjson#k'",
        ),
    ],
    ids=[
        "missing-secret",
        "missing-version",
        "key-of-non-json",
        "missing-key",
        "template",
        "template-key",
    ],
)
def test_a_failure_in_the_middle_writes_nothing(
    direct_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    files: list,  # type: ignore[type-arg]
    code: int,
    expected: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    (secrets_dir / "a").write_text("previous a")
    before = snapshot(secrets_dir)
    plan = make_plan(secrets_dir, *files)

    outcome = run_main(_env(direct_env, plan), capsys, termination_log)

    assert outcome.code == code
    assert len(outcome.lines) == 1
    assert outcome.lines[0].startswith("sakura-secrets-init: " + expected), outcome.lines[0]
    assert outcome.lines[0] in outcome.stderr
    assert snapshot(secrets_dir) == before, "a failed run must leave the directory unchanged"
    assert_no_secret_value(outcome.termination, outcome.stderr, caplog.text)


def test_wrong_vault_is_not_found_and_names_it(
    direct_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = make_plan(secrets_dir, secret_file("a", "plain"), vault_id="999999999999")
    outcome = run_main(_env(direct_env, plan), capsys, termination_log)
    assert outcome.code == EXIT_NOT_FOUND
    assert "vault 999999999999" in outcome.termination
    assert list(secrets_dir.iterdir()) == []


def test_rejected_credentials_are_their_own_outcome(
    direct_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = make_plan(secrets_dir, secret_file("a", "plain"))
    env = {**_env(direct_env, plan), "SAKURA_ACCESS_TOKEN_SECRET": "wrong-secret"}
    outcome = run_main(env, capsys, termination_log)
    assert outcome.code == EXIT_CREDENTIALS == 8
    assert outcome.termination.startswith("sakura-secrets-init: credentials rejected: ")
    assert "'plain'" in outcome.termination
    assert "sakura-secrets.io/credentials-secret" in outcome.termination
    assert "wrong-secret" not in outcome.termination + outcome.stderr
    assert list(secrets_dir.iterdir()) == []


def test_missing_credentials_name_the_variables(
    direct_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = make_plan(secrets_dir, secret_file("a", "plain"))
    env = _env(direct_env, plan)
    del env["SAKURA_ACCESS_TOKEN"]
    outcome = run_main(env, capsys, termination_log)
    assert outcome.code == EXIT_CONFIG
    assert "SAKURA_ACCESS_TOKEN" in outcome.termination
    assert "credentials-secret" in outcome.termination


def test_sakura_down_past_the_deadline_is_a_clear_failure(
    direct_env: dict[str, str],
    emulator: Emulator,
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator.knobs.fail_next(503, 1000)
    plan = make_plan(secrets_dir, secret_file("a", "plain"))
    env = {**_env(direct_env, plan), "SAKURA_SECRETS_DEADLINE": "1"}
    outcome = run_main(env, capsys, termination_log)
    assert outcome.code == EXIT_UNAVAILABLE
    assert len(outcome.lines) == 1
    assert "'plain'" in outcome.termination
    assert list(secrets_dir.iterdir()) == []


def test_a_template_bound_error_prints_no_number_computed_from_the_value(
    emulator: Emulator,
    direct_env: dict[str, str],
    secrets_dir: Path,
    termination_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 15, case 10: the termination message (readable by anyone who may `get pods`) said
    `739200 ** 99999` for a PIN of 739201. It names the bound and the operation only."""
    emulator.store.put(VAULT, "pin", "739201")
    plan = make_plan(secrets_dir, template_file("t", '{{ (secret("pin") | int - 1) ** 99999 }}'))

    outcome = run_main(_env(direct_env, plan), capsys, termination_log)

    assert outcome.code == EXIT_BAD_VALUE
    assert outcome.lines == [
        "sakura-secrets-init: template error: template file 't' failed to render at line 1: "
        "SecurityError: a power (**) whose result would exceed 4096 bits is too large for a "
        "template; fix the sakura-secrets.io/template-t annotation"
    ]
    for number in ("739200", "739201", "99999"):
        assert number not in outcome.termination + outcome.stderr
