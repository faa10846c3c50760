"""The writer's edges: exact failure messages, ownership, set names, a planted symlink.

test_sidecar_files.py covers the main paths (modes, sweeping, a full volume); these pin what a
user reads when a template or a write fails and what the writer does as root.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from support.sidecar_harness import make_plan, secret_file, sets, template_file, visible

from contract import FileSpec, SecretVersion
from contract.broker import FetchedSecret
from sidecar import writer
from sidecar.errors import BadKey, TemplateFailed, WriteFailed
from sidecar.fetched import Values

VALUE = '{"user": "u-Secret-1", "pass": "p-Secret-2"}'
FIX = "fix the sakura-secrets.io/template-t annotation"
FIXED_TIME, EPOCH = time.gmtime(1_700_000_000), time.gmtime(0)


def _values(**named: str) -> Values:
    return {SecretVersion(n): FetchedSecret(n, None, 1, v) for n, v in named.items()}


def _template_failure(tmp_path: Path, source: str, values: Values | None = None) -> str:
    plan = make_plan(tmp_path, template_file("t", source))
    with pytest.raises(TemplateFailed) as caught:
        writer.contents(plan, _values(db=VALUE) if values is None else values)
    return str(caught.value)


def test_a_runtime_error_names_its_type_and_template_line_only(tmp_path: Path) -> None:
    message = _template_failure(tmp_path, '{{ secret("db") }}\n\n{{ 1 / 0 }}')
    assert message == f"template file 't' failed to render at line 3: ZeroDivisionError; {FIX}"


def test_a_key_error_inside_the_template_is_a_template_error(tmp_path: Path) -> None:
    message = _template_failure(tmp_path, '{{ secret("db") }}{{ "{x}".format() }}')
    assert message == f"template file 't' failed to render at line 1: KeyError; {FIX}"


def test_a_sandbox_refusal_keeps_its_own_words(tmp_path: Path) -> None:
    message = _template_failure(tmp_path, '{{ secret("db") }}{{ {}.pop("z") }}')
    assert message == (
        "template file 't' failed to render at line 1: SecurityError: access to an unsafe "
        "attribute of a 'dict' object; names starting with '_' and methods that change data are "
        f"blocked; {FIX}"
    )


def test_a_template_error_outside_the_template_code_has_no_line(tmp_path: Path) -> None:
    spec = FileSpec("t", 0o400, template="{% if %}")  # admission would have refused it
    with pytest.raises(TemplateFailed) as caught:
        writer._content(spec, _values(db=VALUE))
    assert str(caught.value) == f"template file 't' failed to render: TemplateSyntaxError; {FIX}"


def test_a_template_reading_a_secret_the_plan_did_not_fetch(tmp_path: Path) -> None:
    message = _template_failure(tmp_path, '{{ secret("db") }}{{ secret("other@2") }}')
    assert message == (
        "template file 't' reads secret 'other@2', which the plan did not fetch; re-create the "
        "pod so the injector scans the template again"
    )


def test_a_bad_key_in_a_template_names_the_file_and_the_reference(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, template_file("t", '{{ secret("db#nope") }}'))
    with pytest.raises(BadKey) as caught:
        writer.contents(plan, _values(db=VALUE))
    assert str(caught.value) == (
        "template file 't': secret 'db#nope' has no key 'nope' (it has 2 keys); check the "
        "spelling, keys are case-sensitive"
    )


def test_contents_are_utf8(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, secret_file("a", "db"))
    assert writer.contents(plan, _values(db="パスワード"))[0].data == "パスワード".encode()


def test_a_missing_directory_and_a_directory_in_the_way_are_named(tmp_path: Path) -> None:
    files = [writer.FileContent("a", 0o400, b"x")]
    with pytest.raises(WriteFailed) as caught:
        writer.switch(str(tmp_path / "nope"), files, uid=None, gid=None)
    assert str(caught.value) == (
        f"directory {str(tmp_path / 'nope')!r} does not exist; it is the sakura-secrets "
        "volume's mount path, check the pod's volumeMounts"
    )
    (tmp_path / "a").mkdir()
    with pytest.raises(WriteFailed) as caught:
        writer.switch(str(tmp_path), files, uid=None, gid=None)
    assert str(caught.value) == (
        f"{str(tmp_path / 'a')!r} is a directory, so file 'a' cannot replace it; mount the "
        "secrets volume on its own empty directory"
    )


def test_a_full_volume_is_named_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: memoryview) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.os, "write", full)
    with pytest.raises(WriteFailed) as caught:
        writer.switch(str(tmp_path), [writer.FileContent("a", 0o400, b"x")], uid=None, gid=None)
    assert str(caught.value) == (
        f"cannot write into {str(tmp_path)!r}: No space left on device (directory); the secrets "
        "volume may be full (raise its sizeLimit) or not writable by this user"
    )


def test_an_error_without_strerror_is_shown_whole_and_the_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = [OSError("odd failure"), PermissionError(13, "Permission denied", "/v/.a.1.tmp")]

    real_open = os.open

    def failing(path: str, flags: int, mode: int = 0o777, **kw: int) -> int:
        if os.path.basename(path) == "a":
            raise failures.pop(0)
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(writer.os, "open", failing)
    tail = "; the secrets volume may be full (raise its sizeLimit) or not writable by this user"
    for shown in ("odd failure (directory)", "Permission denied (.a.1.tmp)"):
        with pytest.raises(WriteFailed) as caught:
            writer.switch(str(tmp_path), [writer.FileContent("a", 0o400, b"x")], uid=None, gid=None)
        assert str(caught.value) == f"cannot write into {str(tmp_path)!r}: {shown}{tail}"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
@pytest.mark.parametrize(
    ("uid", "gid", "owner"),
    [(1234, 5678, (1234, 5678)), (1234, None, (1234, 0)), (None, 5678, (0, 5678))],
)
def test_as_root_the_files_get_the_plans_owner(
    tmp_path: Path, uid: int | None, gid: int | None, owner: tuple[int, int]
) -> None:
    name = writer.switch(str(tmp_path), [writer.FileContent("a", 0o440, b"x")], uid=uid, gid=gid)
    stat = (tmp_path / "a").stat()
    assert (stat.st_uid, stat.st_gid) == owner
    assert stat.st_mode & 0o777 == 0o440
    held = (tmp_path / name).stat()
    assert (held.st_uid, held.st_gid) == owner, "the owner may remove the set's files later"
    link = (tmp_path / "a").lstat()
    assert (link.st_uid, link.st_gid) == (0, 0), "the links stay the writer's"


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as root and as nobody")
def test_without_root_the_owner_is_left_alone() -> None:
    """As nobody, asking for an owner must not fail the write: the files are simply ours."""
    directory = Path(tempfile.mkdtemp(prefix="sakura-nobody-"))  # tmp_path: nobody can't reach
    try:
        directory.chmod(0o777)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                writer.switch(str(directory), [writer.FileContent("a", 0o400, b"x")], uid=1, gid=1)
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert (directory / "a").stat().st_uid == 65534
    finally:
        shutil.rmtree(directory)


def test_a_255_character_file_name_fits(tmp_path: Path) -> None:
    name = "n" * 255
    writer.switch(str(tmp_path), [writer.FileContent(name, 0o400, b"x")], uid=None, gid=None)
    assert visible(tmp_path) == [name]
    assert (tmp_path / name).read_bytes() == b"x"


def test_sets_are_hidden_timestamped_random_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer.time, "gmtime", lambda: FIXED_TIME)
    first = writer.switch(str(tmp_path), [writer.FileContent("a", 0o400, b"1")], uid=None, gid=None)
    assert re.fullmatch(r"\.\.2023_11_14_22_13_20\.[0-9a-f]{12}", first)
    second = writer.switch(
        str(tmp_path), [writer.FileContent("a", 0o400, b"2")], uid=None, gid=None
    )
    assert second != first and sets(tmp_path) == [second]


def test_a_link_planted_at_the_sets_name_is_never_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone plants a link at the set's name after the sweep: the write must refuse."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    volume = tmp_path / "volume"
    volume.mkdir()
    monkeypatch.setattr(writer.time, "gmtime", lambda: EPOCH)

    def planted(n: int) -> str:
        os.symlink(target, volume / "..1970_01_01_00_00_00.000000000000")
        return "000000000000"

    monkeypatch.setattr(writer.random_names, "token_hex", planted)
    with pytest.raises(WriteFailed, match="File exists"):
        writer.switch(str(volume), [writer.FileContent("a", 0o400, b"x")], uid=None, gid=None)
    assert list(target.iterdir()) == []
    assert list(volume.iterdir()) == []


def test_stale_sets_are_swept_and_other_entries_kept(tmp_path: Path) -> None:
    for name in ("..2020_01_02_03_04_05.0123456789ab", "..2020_01_02_03_04_05.0123", "..x"):
        (tmp_path / name).mkdir()
    for name in ("..2021_01_02_03_04_05.abcdefabcdef", ".keep", "keep", "..data_tmp_"):
        (tmp_path / name).write_text("x")
    new = writer.switch(str(tmp_path), [writer.FileContent("f", 0o400, b"x")], uid=None, gid=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "..2020_01_02_03_04_05.0123",
        new,
        "..data",
        "..data_tmp_",
        "..x",
        ".keep",
        "f",
        "keep",
    ]


def test_a_data_entry_that_is_not_a_set_link_is_no_current_set(tmp_path: Path) -> None:
    assert writer.current_set(str(tmp_path)) is None
    (tmp_path / "..data").symlink_to("elsewhere")
    assert writer.current_set(str(tmp_path)) is None
    (tmp_path / "..data").unlink()
    (tmp_path / "..data").mkdir()
    assert writer.current_set(str(tmp_path)) is None


def test_an_old_set_that_cannot_be_removed_does_not_fail_the_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The switch happened; the leftover is swept by the next one and no app can reach it."""
    first = writer.switch(str(tmp_path), [writer.FileContent("a", 0o400, b"1")], uid=None, gid=None)

    def refuse(path: str) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(writer.shutil, "rmtree", refuse)
    second = writer.switch(
        str(tmp_path), [writer.FileContent("a", 0o400, b"2")], uid=None, gid=None
    )
    assert sets(tmp_path) == sorted([first, second])
    assert (tmp_path / "a").read_bytes() == b"2"
    monkeypatch.undo()
    third = writer.switch(str(tmp_path), [writer.FileContent("a", 0o400, b"3")], uid=None, gid=None)
    assert sets(tmp_path) == [third]


def test_a_large_file_is_written_whole(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    writer.switch(str(tmp_path), [writer.FileContent("big", 0o400, data)], uid=None, gid=None)
    assert (tmp_path / "big").read_bytes() == data


@pytest.mark.skipif(os.geteuid() != 0, reason="checks that no chown happens, as root")
def test_without_root_no_chown_is_attempted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same rule as the nobody test above, seen from this process: the owner stays ours."""
    monkeypatch.setattr(writer.os, "geteuid", lambda: 65534)
    writer.switch(str(tmp_path), [writer.FileContent("a", 0o400, b"x")], uid=1, gid=1)
    stat = (tmp_path / "a").stat()
    assert (stat.st_uid, stat.st_gid) == (0, 0)


def test_a_failure_after_the_switch_keeps_the_new_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once `..data` is renamed the new set is the current one: it is reported, never removed."""
    writer.switch(str(tmp_path), [writer.FileContent("a", 0o400, b"1")], uid=None, gid=None)

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(writer, "_fsync_directory", failing)
    with pytest.raises(WriteFailed, match="Input/output error"):
        writer.switch(str(tmp_path), [writer.FileContent("a", 0o400, b"2")], uid=None, gid=None)
    assert (tmp_path / "a").read_bytes() == b"2"


# --- a file beside the sets (the record) ----------------------------------------------------


def test_a_file_beside_the_sets_is_replaced_by_a_rename(tmp_path: Path) -> None:
    writer.switch(str(tmp_path), [writer.FileContent("a", 0o400, b"set")], uid=None, gid=None)
    target = tmp_path / ".rec"
    target.write_bytes(b"old")
    reader = open(target, "rb")  # an app that had it open keeps the old file, whole
    (tmp_path / "...rec.tmp").write_bytes(b"half")  # a killed run's temporary
    old = os.umask(0o077)
    try:
        writer.replace_file(
            str(tmp_path), writer.FileContent(".rec", 0o444, b"new"), uid=None, gid=None
        )
    finally:
        os.umask(old)
    assert reader.read() == b"old"
    reader.close()
    assert target.read_bytes() == b"new" and not target.is_symlink()
    assert target.stat().st_mode & 0o7777 == 0o444
    assert sorted(p.name for p in tmp_path.iterdir()) == [*sets(tmp_path), "..data", ".rec", "a"]
    assert (tmp_path / "a").read_bytes() == b"set", "the set is not touched"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_as_root_a_file_beside_the_sets_gets_the_plans_owner(tmp_path: Path) -> None:
    writer.replace_file(str(tmp_path), writer.FileContent(".rec", 0o444, b"x"), uid=1234, gid=5678)
    stat = (tmp_path / ".rec").stat()
    assert (stat.st_uid, stat.st_gid) == (1234, 5678)


def test_a_file_beside_the_sets_that_cannot_be_written_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".rec").write_bytes(b"old")

    def full(fd: int, data: memoryview) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.os, "write", full)
    with pytest.raises(WriteFailed) as caught:
        writer.replace_file(
            str(tmp_path), writer.FileContent(".rec", 0o444, b"new"), uid=None, gid=None
        )
    assert str(caught.value) == (
        f"cannot write into {str(tmp_path)!r}: No space left on device (directory); the "
        "secrets volume may be full (raise its sizeLimit) or not writable by this user"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [".rec"]
    assert (tmp_path / ".rec").read_bytes() == b"old"
