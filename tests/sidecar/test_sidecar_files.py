"""The pure middle and the file writer, without servers: contents, atomic writes, reporting."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from support.sidecar_harness import make_plan, secret_file, snapshot, template_file

from contract import SecretVersion
from contract.broker import FetchedSecret
from sidecar import config, record, termination, writer
from sidecar.errors import BadKey, BadPlan, ConfigError, TemplateFailed, WriteFailed
from sidecar.fetched import Values

VALUE = '{"user": "u-Secret-1", "pass": "p-Secret-2"}'


def _values(*items: tuple[str, int | None, int, str]) -> Values:
    return {
        SecretVersion(name, requested): FetchedSecret(name, requested, version, value)
        for name, requested, version, value in items
    }


def test_contents_apply_keys_and_templates(tmp_path: Path) -> None:
    plan = make_plan(
        tmp_path,
        secret_file("whole", "db"),
        secret_file("user", "db#user"),
        template_file("t", 'u={{ secret("db#user") }} v={{ secret("db@3") }}', 0o440),
    )
    values = _values(("db", None, 4, VALUE), ("db", 3, 3, "old-Secret-3"))
    files = writer.contents(plan, values)
    assert [(f.name, f.mode, f.data) for f in files] == [
        ("whole", 0o400, VALUE.encode()),
        ("user", 0o400, b"u-Secret-1"),
        ("t", 0o440, b"u=u-Secret-1 v=old-Secret-3"),
    ]
    assert "Secret" not in repr(files), "a file's repr never shows its bytes"


def test_a_template_that_breaks_out_of_the_sandbox_is_a_template_error(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, template_file("t", '{{ secret("db").__class__.__mro__ }}'))
    with pytest.raises(TemplateFailed, match="template file 't' failed to render") as caught:
        writer.contents(plan, _values(("db", None, 1, VALUE)))
    assert "Secret" not in caught.value.reason


def test_a_key_error_names_the_reference_never_the_value(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, secret_file("x", "db#nope"))
    with pytest.raises(BadKey) as caught:
        writer.contents(plan, _values(("db", None, 1, VALUE)))
    assert caught.value.reason == (
        "bad key: secret 'db#nope' has no key 'nope' (it has 2 keys); "
        "check the spelling, keys are case-sensitive"
    )


def test_write_sets_exact_modes_despite_the_umask_and_leaves_no_temporary(tmp_path: Path) -> None:
    files = [
        writer.FileContent("a", 0o400, b"one"),
        writer.FileContent("b", 0o644, b"two"),
        writer.FileContent("c", 0o070, b""),
    ]
    old = os.umask(0o077)
    try:
        writer.write(str(tmp_path), files, uid=None, gid=None)
    finally:
        os.umask(old)
    assert snapshot(tmp_path) == {"a": (b"one", 0o400), "b": (b"two", 0o644), "c": (b"", 0o070)}


def test_write_sweeps_temporaries_a_killed_run_left_behind(tmp_path: Path) -> None:
    (tmp_path / ".a.0123456789ab.sakura-tmp").write_bytes(b"half a va")
    (tmp_path / ".keep-me").write_text("not ours")
    writer.write(str(tmp_path), [writer.FileContent("a", 0o400, b"whole")], uid=None, gid=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep-me", "a"]


def test_write_refuses_a_directory_in_the_way_before_touching_anything(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("old a")
    (tmp_path / "b").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    files = [writer.FileContent("a", 0o400, b"new a"), writer.FileContent("b", 0o400, b"b")]
    with pytest.raises(WriteFailed, match="is a directory"):
        writer.write(str(tmp_path), files, uid=None, gid=None)
    assert (tmp_path / "a").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_write_into_a_missing_directory_names_the_volume(tmp_path: Path) -> None:
    with pytest.raises(WriteFailed, match="sakura-secrets volume's mount path"):
        writer.write(str(tmp_path / "nope"), [writer.FileContent("a", 0o400, b"x")], uid=0, gid=0)


def _write_as(user: int | None, directory: Path) -> tuple[int, str]:
    """Run the writer in a forked child (as `user` when given); its exit code and message."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            if user is not None:
                os.setgroups([])
                os.setgid(user)
                os.setuid(user)
            writer.write(str(directory), [writer.FileContent("a", 0o400, b"x")], uid=None, gid=None)
        except WriteFailed as exc:
            os.write(write_end, exc.reason.encode())
            code = 7
        except BaseException as exc:
            os.write(write_end, repr(exc).encode())
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        message = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), message


def test_an_unwritable_directory_removes_every_temporary() -> None:
    """Root may write anywhere, so as root the writer runs as nobody (65534) in a child."""
    directory = Path(tempfile.mkdtemp(prefix="sakura-unwritable-"))
    try:
        directory.chmod(0o555)
        code, message = _write_as(65534 if os.geteuid() == 0 else None, directory)
        assert code == 7, message
        assert "cannot write into" in message
        assert list(directory.iterdir()) == []
    finally:
        directory.chmod(0o700)
        shutil.rmtree(directory)


def test_a_failure_while_staging_removes_the_files_already_staged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full tmpfs on the third file: the first two temporaries must vanish too."""
    real_write = os.write
    calls = {"n": 0}

    def write_until_full(fd: int, data: memoryview) -> int:  # type: ignore[override]
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(writer.os, "write", write_until_full)
    files = [writer.FileContent(n, 0o400, b"data") for n in ("a", "b", "c")]
    with pytest.raises(WriteFailed, match="No space left on device"):
        writer.write(str(tmp_path), files, uid=None, gid=None)
    assert list(tmp_path.iterdir()) == []


def test_the_record_lists_versions_and_files_only(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    plan = make_plan(tmp_path, secret_file("x", "db#user"), secret_file("y", "db@3"))
    values = _values(("db", None, 4, VALUE), ("db", 3, 3, "old-Secret-3"))
    item = record.build(plan, values, loaded_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert item.name == ".sakura-secrets.json"
    text = item.data.decode()
    assert "Secret" not in text
    assert '"loaded_at": "2026-01-02T03:04:05+00:00"' in text
    assert '"requested_version": 3' in text


def test_the_report_is_one_line_and_hides_values(tmp_path: Path) -> None:
    log = tmp_path / "log"
    texts = termination.secret_texts([VALUE, "tiny"])
    line = termination.report(
        "template error: boom\nnear u-Secret-1 and p-Secret-2 and tiny",
        path=str(log),
        secrets=texts,
    )
    assert log.read_text() == line + "\n"
    assert "\n" not in line
    assert "u-Secret-1" not in line and "p-Secret-2" not in line
    assert line.startswith("sakura-secrets-init: template error: boom near <redacted>")
    long = termination.one_line("x" * 5000)
    assert len(long) == termination.MAX_LENGTH


def test_the_report_survives_a_missing_termination_log(tmp_path: Path) -> None:
    line = termination.report("not found: x", path=str(tmp_path / "no" / "such" / "file"))
    assert line == "sakura-secrets-init: not found: x"


@pytest.mark.parametrize(
    ("env", "error", "message"),
    [
        ({"SAKURA_SECRETS_PLAN": " "}, BadPlan, "SAKURA_SECRETS_PLAN is not set"),
        ({"SAKURA_SECRETS_PLAN": "{"}, BadPlan, "the plan is not JSON"),
        ({"SAKURA_SECRETS_PLAN": '{"format": 99}'}, BadPlan, "plan format 99 is not 1"),
        ({"SAKURA_SECRETS_DEADLINE": "soon"}, ConfigError, "not a positive number of seconds"),
        ({"SAKURA_SECRETS_DEADLINE": "-1"}, ConfigError, "not a positive number of seconds"),
        ({"SAKURA_SECRETS_BROKER_URL": ""}, ConfigError, "SAKURA_SECRETS_BROKER_URL is not set"),
        ({"SAKURA_SECRETS_BROKER_CA": "not pem"}, ConfigError, "is not a PEM certificate"),
    ],
)
def test_bad_configuration_is_named(
    tmp_path: Path, env: dict[str, str], error: type[Exception], message: str
) -> None:
    plan = make_plan(tmp_path, secret_file("x", "db"), mode="broker")
    full = {
        "SAKURA_SECRETS_PLAN": plan.to_json(),
        "SAKURA_SECRETS_BROKER_URL": "https://injector.example:8443",
        **env,
    }
    with pytest.raises(error, match=message):
        config.load(full)


def test_a_plan_without_a_vault_is_a_bad_plan(tmp_path: Path) -> None:
    plan = json.loads(make_plan(tmp_path, secret_file("x", "db")).to_json())
    plan["vault_id"] = None  # a plan cannot be built without one: only its JSON can lack it
    with pytest.raises(BadPlan, match="vault id None is not 12 digits"):
        config.load({"SAKURA_SECRETS_PLAN": json.dumps(plan)})


def test_modes_survive_the_plan_round_trip(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, secret_file("x", "db", 0o440))
    loaded = config.load_plan({"SAKURA_SECRETS_PLAN": plan.to_json()})
    assert loaded.files[0].mode == 0o440


def test_a_runaway_template_is_a_template_error_naming_the_bound(tmp_path: Path) -> None:
    loop = '{% for c in "abcdefghij" * 200 %}{{ "x" * 1000 }}{% endfor %}{{ secret("db") }}'
    plan = make_plan(tmp_path, template_file("t", loop))
    with pytest.raises(TemplateFailed, match="larger than 1 MiB") as caught:
        writer.contents(plan, _values(("db", None, 1, VALUE)))
    assert caught.value.reason.startswith("template error: template file 't' failed to render")


def test_a_runtime_template_error_never_quotes_a_transformed_value(tmp_path: Path) -> None:
    """`|upper` turns the value into text no redaction knows; the reason must not carry it."""
    source = '{% set m = {} %}\n{{ m[secret("db")|upper].x }}'
    plan = make_plan(tmp_path, template_file("t", source))
    with pytest.raises(TemplateFailed) as caught:
        writer.contents(plan, _values(("db", None, 1, VALUE)))
    reason = caught.value.reason
    assert reason.startswith("template error: template file 't' failed to render at line 2: ")
    assert VALUE.upper() not in reason and VALUE not in reason
