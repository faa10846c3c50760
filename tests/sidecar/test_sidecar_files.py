"""The pure middle and the file writer, without servers: contents, atomic writes, reporting."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from support.sidecar_harness import make_plan, secret_file, sets, snapshot, template_file, visible

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
        writer.switch(str(tmp_path), files, uid=None, gid=None)
    finally:
        os.umask(old)
    assert snapshot(tmp_path) == {"a": (b"one", 0o400), "b": (b"two", 0o644), "c": (b"", 0o070)}
    assert sorted(p.name for p in tmp_path.iterdir()) == [*sets(tmp_path), "..data", "a", "b", "c"]


def test_the_layout_is_the_kubelets_links_through_data(tmp_path: Path) -> None:
    """`..data -> ..<stamp>.<hex>`, `NAME -> ..data/NAME`; the files and the set are real."""
    files = [writer.FileContent("a", 0o440, b"1"), writer.FileContent(".rec", 0o444, b"2")]
    name = writer.switch(str(tmp_path), files, uid=None, gid=None)
    assert sets(tmp_path) == [name]
    assert os.readlink(tmp_path / "..data") == name == writer.current_set(str(tmp_path))
    assert os.readlink(tmp_path / "a") == "..data/a"
    assert os.readlink(tmp_path / ".rec") == "..data/.rec"
    held = tmp_path / name
    assert not held.is_symlink() and held.stat().st_mode & 0o7777 == 0o755
    assert sorted(p.name for p in held.iterdir()) == [".rec", "a"]
    assert not (held / "a").is_symlink() and (held / "a").stat().st_mode & 0o7777 == 0o440


def test_a_second_switch_replaces_the_whole_set_and_removes_the_old_one(tmp_path: Path) -> None:
    first = writer.switch(str(tmp_path), _set("1", "a", "b", "gone"), uid=None, gid=None)
    second = writer.switch(str(tmp_path), _set("2", "a", "b", "new"), uid=None, gid=None)
    assert second != first and sets(tmp_path) == [second]
    assert snapshot(tmp_path) == {n: (b"2", 0o400) for n in ("a", "b", "new")}
    assert sorted(p.name for p in tmp_path.iterdir()) == [second, "..data", "a", "b", "new"]


def test_only_the_data_link_is_renamed_and_new_names_are_linked_before_the_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names the writer already links are kept; a new name's link waits for the switch."""
    renamed: list[tuple[str, list[str]]] = []
    real_replace = os.replace

    def recording(src: str, dst: str) -> None:
        renamed.append((os.path.basename(dst), visible(tmp_path)))
        real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", recording)
    writer.switch(str(tmp_path), _set("1", "a"), uid=None, gid=None)
    writer.switch(str(tmp_path), _set("2", "a", "b"), uid=None, gid=None)
    assert renamed == [("..data", ["a"]), ("..data", ["a", "b"])]


def test_a_set_is_private_while_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    real_write = os.write

    def watching(fd: int, data: memoryview) -> int:  # type: ignore[override]
        (held,) = sets(tmp_path)
        modes.append((tmp_path / held).stat().st_mode & 0o7777)
        return real_write(fd, data)

    monkeypatch.setattr(writer.os, "write", watching)
    old = os.umask(0)
    try:
        name = writer.switch(str(tmp_path), _set("1", "a"), uid=None, gid=None)
    finally:
        os.umask(old)
    assert modes == [0o700]
    assert (tmp_path / name).stat().st_mode & 0o7777 == 0o755


def test_a_name_held_by_someone_else_is_left_alone_when_the_set_drops_it(tmp_path: Path) -> None:
    writer.switch(str(tmp_path), _set("1", "a", "b"), uid=None, gid=None)
    (tmp_path / "b").unlink()
    (tmp_path / "b").symlink_to("..data/a")  # not our link for b: never removed
    writer.switch(str(tmp_path), _set("2", "a"), uid=None, gid=None)
    assert os.readlink(tmp_path / "b") == "..data/a"


def _set(marker: str, *names: str) -> list[writer.FileContent]:
    return [writer.FileContent(name, 0o400, marker.encode()) for name in names]


def test_a_failure_in_the_middle_keeps_the_previous_set_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer.switch(str(tmp_path), _set("old", "a", "b"), uid=None, gid=None)
    before = sorted(p.name for p in tmp_path.iterdir())
    real_write = os.write
    calls = {"n": 0}

    def write_until_full(fd: int, data: memoryview) -> int:  # type: ignore[override]
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(writer.os, "write", write_until_full)
    with pytest.raises(WriteFailed, match="No space left on device"):
        writer.switch(str(tmp_path), _set("new", "a", "b", "c"), uid=None, gid=None)
    assert snapshot(tmp_path) == {"a": (b"old", 0o400), "b": (b"old", 0o400)}
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("failing", ["symlink", "replace"])
def test_a_failure_at_the_switch_itself_keeps_the_previous_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """The new name's link and the set are made, then the switch fails: all of it goes."""
    writer.switch(str(tmp_path), _set("old", "a"), uid=None, gid=None)
    before = sorted(p.name for p in tmp_path.iterdir())
    real = getattr(os, failing)

    def refuse(src: str, dst: str) -> None:
        if os.path.basename(dst) in ("..data", "..data_tmp"):
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(writer.os, failing, refuse)
    with pytest.raises(WriteFailed, match="Input/output error"):
        writer.switch(str(tmp_path), _set("new", "a", "b"), uid=None, gid=None)
    assert snapshot(tmp_path) == {"a": (b"old", 0o400)}
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _pinned_read(directory: Path, names: Sequence[str]) -> tuple[bytes, ...] | None:
    """What an app that resolves its files' directory once reads: every name from there.

    In the old layout that directory is the volume itself; in the new one it is the set `..data`
    pointed at. None when the set was removed under the reader (it reads again).
    """
    where = os.path.dirname(os.path.realpath(directory / names[0]))
    try:
        return tuple(Path(where, name).read_bytes() for name in names)
    except FileNotFoundError:
        return None


@pytest.fixture
def fast_thread_switches() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("fast_thread_switches")
def test_a_reader_never_sees_a_mix_of_two_sets(tmp_path: Path) -> None:
    """A template and the plain file of one secret (same generation marker) read in a loop."""
    names = ("conf", "plain", ".sakura-secrets.json")
    writer.switch(str(tmp_path), _set("0", *names), uid=None, gid=None)
    seen: list[tuple[bytes, ...]] = []
    done = threading.Event()

    def read_until_done() -> None:
        while not done.is_set():
            read = _pinned_read(tmp_path, names)
            if read is not None:
                seen.append(read)

    reader = threading.Thread(target=read_until_done)
    reader.start()
    try:
        for generation in range(1, 400):
            writer.switch(str(tmp_path), _set(str(generation), *names), uid=None, gid=None)
    finally:
        done.set()
        reader.join()
    mixed = [read for read in seen if len(set(read)) != 1]
    assert mixed == []
    assert len({read[0] for read in seen}) > 10, "the reader must have read across many sets"
    assert len(sets(tmp_path)) == 1


def test_write_sweeps_what_a_killed_run_left_behind(tmp_path: Path) -> None:
    current = writer.switch(str(tmp_path), _set("old", "a"), uid=None, gid=None)
    stale = tmp_path / "..2020_01_02_03_04_05.0123456789ab"
    stale.mkdir()
    (stale / "a").write_bytes(b"half a va")
    (tmp_path / "..data_tmp").symlink_to(stale.name)
    (tmp_path / ".keep-me").write_text("not ours")
    (tmp_path / "..2020_01_02_03_04_05.keep").mkdir()  # not a set's name
    assert writer.current_set(str(tmp_path)) == current
    new = writer.switch(str(tmp_path), _set("whole", "a"), uid=None, gid=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "..2020_01_02_03_04_05.keep",
        new,
        "..data",
        ".keep-me",
        "a",
    ]


def test_write_refuses_a_directory_in_the_way_before_touching_anything(tmp_path: Path) -> None:
    writer.switch(str(tmp_path), _set("old a", "a"), uid=None, gid=None)
    (tmp_path / "b").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(WriteFailed, match="is a directory"):
        writer.switch(str(tmp_path), _set("new", "a", "b"), uid=None, gid=None)
    assert (tmp_path / "a").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_file_it_did_not_make_is_replaced_by_its_link_after_the_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A regular file or a foreign link at a visible name: the old content until the set."""
    (tmp_path / "a").write_text("theirs")
    (tmp_path / "b").symlink_to("a")
    seen: list[tuple[str, str, str]] = []
    real_replace = os.replace

    def watching(src: str, dst: str) -> None:
        if os.path.basename(dst) in ("a", "b"):  # the set, the name until its rename
            current = (tmp_path / "..data" / "a").read_text()
            seen.append((os.path.basename(dst), current, Path(dst).read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", watching)
    writer.switch(str(tmp_path), _set("ours", "a", "b"), uid=None, gid=None)
    assert seen == [("a", "ours", "theirs"), ("b", "ours", "ours")]  # b led to a
    assert snapshot(tmp_path) == {"a": (b"ours", 0o400), "b": (b"ours", 0o400)}
    assert os.readlink(tmp_path / "b") == "..data/b"


def test_a_failed_takeover_is_reported_and_the_next_switch_completes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").write_text("theirs")
    real_replace = os.replace

    def refuse_a(src: str, dst: str) -> None:
        if os.path.basename(dst) == "a":
            raise OSError(5, "Input/output error", dst)
        real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", refuse_a)
    with pytest.raises(WriteFailed) as caught:
        writer.switch(str(tmp_path), _set("ours", "a"), uid=None, gid=None)
    assert str(caught.value).startswith(
        f"cannot write into {str(tmp_path)!r}: Input/output error (a)"
    )
    assert (tmp_path / "a").read_text() == "theirs"
    monkeypatch.undo()
    writer.switch(str(tmp_path), _set("ours", "a"), uid=None, gid=None)
    assert visible(tmp_path) == ["a"] and (tmp_path / "a").read_text() == "ours"
    assert len(sets(tmp_path)) == 1


def test_write_into_a_missing_directory_names_the_volume(tmp_path: Path) -> None:
    with pytest.raises(WriteFailed, match="sakura-secrets volume's mount path"):
        writer.switch(str(tmp_path / "nope"), [writer.FileContent("a", 0o400, b"x")], uid=0, gid=0)


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
            writer.switch(
                str(directory), [writer.FileContent("a", 0o400, b"x")], uid=None, gid=None
            )
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
        writer.switch(str(tmp_path), files, uid=None, gid=None)
    assert list(tmp_path.iterdir()) == []


def test_the_record_lists_versions_and_files_only(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    plan = make_plan(tmp_path, secret_file("x", "db#user"), secret_file("y", "db@3"))
    values = _values(("db", None, 4, VALUE), ("db", 3, 3, "old-Secret-3"))
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    described = record.loaded(plan, values, set_name="..2026_01_02_03_04_05.0a", loaded_at=at)
    item = record.build(described, record.Status(last_success=at), refresh_interval=None)
    assert (item.name, item.mode) == (".sakura-secrets.json", 0o444)
    text = item.data.decode()
    assert "Secret" not in text
    assert json.loads(text) == {
        "format": 1,
        "set": "..2026_01_02_03_04_05.0a",
        "loaded_at": "2026-01-02T03:04:05+00:00",
        "mode": "direct",
        "vault_id": plan.vault_id,
        "secrets": [
            {"name": "db", "requested_version": None, "version": 4, "files": ["x"]},
            {"name": "db", "requested_version": 3, "version": 3, "files": ["y"]},
        ],
        "refresh_interval": None,
        "last_success": "2026-01-02T03:04:05+00:00",
        "last_error": None,
        "last_error_at": None,
        "consecutive_failures": 0,
    }


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
