"""From the plan and the fetched values to files on the tmpfs, all or nothing per run.

`contents` is pure: it computes every file before anything touches the disk, so a bad key or a
template error writes nothing. `write` puts each file under a temporary name in the same
directory (created exclusively with its final mode, fsynced) and only when all are ready renames
them into place, so an app never sees a partial file.
"""

from __future__ import annotations

import os
import secrets as random_names
from collections.abc import Sequence
from dataclasses import dataclass, field

from jinja2 import TemplateError
from jinja2.exceptions import SecurityError

from contract import FileSpec, Plan, SecretRef, SecretVersion, render
from contract.annotations import TEMPLATE_FILE
from sakura import extract_key
from sidecar.errors import BadKey, TemplateFailed, WriteFailed
from sidecar.fetched import Values

TEMP_SUFFIX = ".sakura-tmp"
NAME_MAX = 255
"""Longest file name Linux file systems (tmpfs, ext4) take, in bytes."""


@dataclass(frozen=True)
class FileContent:
    """One file ready to be written: name inside the plan's directory, mode, bytes."""

    name: str
    mode: int
    data: bytes = field(repr=False)


def contents(plan: Plan, values: Values) -> list[FileContent]:
    """Every file of the plan, rendered; raises BadKey or TemplateFailed naming the file."""
    return [_content(spec, values) for spec in plan.files]


def _content(spec: FileSpec, values: Values) -> FileContent:
    if spec.secret is not None:
        text = _value_of(spec.secret, values)
    else:
        text = _render(spec, values)
    return FileContent(spec.name, spec.mode, text.encode("utf-8"))


def _value_of(ref: SecretRef, values: Values) -> str:
    value = values[ref.fetch].value
    if ref.key is None:
        return value
    try:
        return extract_key(value, ref.key, str(ref))
    except ValueError as exc:
        raise BadKey(str(exc)) from None


def _extract(value: str, key: str, ref: SecretRef) -> str:
    try:
        return extract_key(value, key, str(ref))
    except ValueError as exc:
        raise BadKey(str(exc)) from None


def _render(spec: FileSpec, values: Values) -> str:
    assert spec.template is not None
    plain = {version: fetched.value for version, fetched in values.items()}
    try:
        return render(spec.template, plain, _extract)
    except BadKey as exc:
        raise BadKey(f"template file {spec.name!r}: {exc.args[0]}") from None
    except KeyError as exc:
        missing = exc.args[0] if exc.args else "?"
        if isinstance(missing, SecretVersion):
            raise TemplateFailed(
                f"template file {spec.name!r} reads secret {str(missing)!r}, which the plan "
                "did not fetch; re-create the pod so the injector scans the template again"
            ) from None
        raise TemplateFailed(_template_reason(spec, exc)) from None
    except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise TemplateFailed(_template_reason(spec, exc)) from None


def _template_reason(spec: FileSpec, exc: Exception) -> str:
    """The error's type and template line, not its text: a message such as "'dict object' has
    no attribute 'VALUE'" can carry a value, even one the template transformed (`|upper`), which
    no redaction of the fetched values would catch. The sandbox's own refusals (SecurityError:
    unsafe attribute, output or time limit) are written by us and name no value, so they stay.
    """
    where = _template_line(exc)
    detail = f": {exc}" if isinstance(exc, SecurityError) else ""
    return (
        f"template file {spec.name!r} failed to render{where}: {type(exc).__name__}{detail}; "
        f"fix the {TEMPLATE_FILE}{spec.name} annotation"
    )


def _template_line(exc: BaseException) -> str:
    """' at line N' from the traceback frame jinja2 maps to the template source, if any."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return "" if line is None else f" at line {line}"


def write(
    directory: str, files: Sequence[FileContent], *, uid: int | None, gid: int | None
) -> None:
    """Write all files atomically; on any error remove the temporaries and leave the rest."""
    if not os.path.isdir(directory):
        raise WriteFailed(
            f"directory {directory!r} does not exist; it is the sakura-secrets volume's mount "
            "path, check the pod's volumeMounts"
        )
    for item in files:
        if os.path.isdir(os.path.join(directory, item.name)):
            raise WriteFailed(
                f"{os.path.join(directory, item.name)!r} is a directory, so file {item.name!r} "
                "cannot replace it; mount the secrets volume on its own empty directory"
            )
    _remove_stale_temporaries(directory)
    owner = _owner(uid, gid)
    staged: list[tuple[str, str]] = []
    try:
        for item in files:
            staged.append((_stage(directory, item, owner), os.path.join(directory, item.name)))
        for temp, final in staged:
            os.replace(temp, final)
        _fsync_directory(directory)
    except OSError as exc:
        for temp, _ in staged:
            _remove(temp)
        raise WriteFailed(
            f"cannot write into {directory!r}: {exc.strerror or exc} "
            f"({os.path.basename(exc.filename or '') or 'directory'}); the secrets volume may be "
            "full (raise its sizeLimit) or not writable by this user"
        ) from None


def _owner(uid: int | None, gid: int | None) -> tuple[int, int] | None:
    """chown only when we can (root) and were asked to; otherwise the files are ours."""
    if os.geteuid() != 0 or (uid is None and gid is None):
        return None
    return (-1 if uid is None else uid, -1 if gid is None else gid)


def _stage(directory: str, item: FileContent, owner: tuple[int, int] | None) -> str:
    temp = os.path.join(directory, _temp_name(item.name))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temp, flags, item.mode)
    try:
        os.fchmod(fd, item.mode)  # the umask narrowed the mode given at creation
        if owner is not None:
            os.fchown(fd, *owner)
        view = memoryview(item.data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError:
        os.close(fd)
        _remove(temp)
        raise
    os.close(fd)
    return temp


def _temp_name(name: str) -> str:
    """`.NAME.<12 hex>.sakura-tmp`, NAME cut so a 253-character file name still fits NAME_MAX."""
    tag = f".{random_names.token_hex(6)}{TEMP_SUFFIX}"
    return "." + name[: NAME_MAX - 1 - len(tag)] + tag


def _remove_stale_temporaries(directory: str) -> None:
    """A run killed mid-write (OOM, SIGKILL) leaves temporaries; the restarted run sweeps them."""
    for entry in os.listdir(directory):
        if entry.startswith(".") and entry.endswith(TEMP_SUFFIX):
            _remove(os.path.join(directory, entry))


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
