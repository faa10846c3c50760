"""From the plan and the fetched values to files on the tmpfs, all or nothing per run.

`contents` is pure: it computes every file before anything touches the disk, so a bad key or a
template error writes nothing. `switch` replaces the directory, not the files, with the kubelet's
scheme for Secret volumes: the set is written into a new hidden timestamped directory, each
visible name is a link `NAME -> ..data/NAME`, and one rename of a new `..data_tmp` link over
`..data` moves every name to the new set at once. The init container and a refresh both call it.
"""

from __future__ import annotations

import os
import re
import secrets as random_names
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from contract import FileSpec, Plan, SecretRef, SecretVersion
from contract.annotations import ENCODING_OF, TEMPLATE_FILE
from contract.encoding import EncodingError, decode_base64
from sakura import extract_key
from sidecar.errors import BadEncoding, BadKey, TemplateFailed, WriteFailed
from sidecar.fetched import Values

DATA_LINK = "..data"
"""The link naming the current set; apps watch it (inotify) to notice a switch."""
NEW_DATA_LINK = "..data_tmp"
SET_MODE = 0o755
"""Of a set's directory: the files' own modes guard the values; the names are visible anyway."""
_RANDOM_BYTES = 6
_SET_NAME = re.compile(rf"\.\.\d{{4}}(_\d\d){{5}}\.[0-9a-f]{{{2 * _RANDOM_BYTES}}}")


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
    if spec.secret is None:
        return FileContent(spec.name, spec.mode, _render(spec, values).encode())
    text = value_of(spec.secret, values)
    if spec.encoding is None:
        return FileContent(spec.name, spec.mode, text.encode())  # UTF-8
    return FileContent(spec.name, spec.mode, _decoded(spec.secret, spec.name, text))


def _decoded(ref: SecretRef, name: str, text: str) -> bytes:
    """The bytes of a base64 value (the plan's one encoding); the error names the secret."""
    try:
        return decode_base64(text)
    except EncodingError as exc:
        raise BadEncoding(
            f"secret {str(ref)!r} is {exc}, and file {name!r} is written decoded "
            f"({ENCODING_OF}FILE: base64); store the value base64-encoded (e.g. the output of "
            "base64 -w0), or remove that annotation to write the value as it is"
        ) from None


def value_of(ref: SecretRef, values: Values) -> str:
    """The value `ref` names (one key of it with `#KEY`); raises BadKey."""
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
    # The sidecar's only import of jinja2 (contract.template), here and not at the top: it costs
    # about as much start-up time as httpx, and only a plan with a template needs it.
    from jinja2 import TemplateError
    from jinja2.exceptions import SecurityError

    from contract.template import render

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
    except (SecurityError, EncodingError) as exc:  # ours and the sandbox's: no value in them
        raise TemplateFailed(_template_reason(spec, exc, detail=f": {exc}")) from None
    except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise TemplateFailed(_template_reason(spec, exc)) from None


def _template_reason(spec: FileSpec, exc: Exception, *, detail: str = "") -> str:
    """The error's type and template line, not its text: a message such as "'dict object' has
    no attribute 'VALUE'" can carry a value, even one the template transformed (`|upper`), which
    no redaction of the fetched values would catch. The sandbox's own refusals (SecurityError:
    unsafe attribute, output or time limit) are written by us and name no value, so they stay.
    """
    where = _template_line(exc)
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


def switch(
    directory: str, files: Sequence[FileContent], *, uid: int | None, gid: int | None
) -> str:
    """Make `files` the directory's set with one rename; returns the new set's name.

    Before the rename no name an app reads leads anywhere new (a new name's link leads nowhere
    until then), so an error leaves the previous set (or nothing) and removes what this call
    made. Old sets go after the rename. One writer at a time: the init container, then the
    refresh.
    """
    _check_names(directory, files)
    current = current_set(directory)
    _remove_old_sets(directory, keep=current)  # what a killed run left behind
    owner = _owner(uid, gid)
    new = _set_name()
    made: list[str] = []
    try:
        _write_set(os.path.join(directory, new), files, owner)
        foreign = _link_new_names(directory, files, made)
        os.symlink(new, os.path.join(directory, NEW_DATA_LINK))
        os.replace(os.path.join(directory, NEW_DATA_LINK), os.path.join(directory, DATA_LINK))
    except OSError as exc:
        for path in [*made, os.path.join(directory, NEW_DATA_LINK)]:
            _remove(path)
        _remove_tree(os.path.join(directory, new))
        raise _failed(directory, exc) from None
    try:  # switched: from here an error is reported, and the new set stays
        _fsync_directory(directory)
        _take_over(directory, foreign)
    except OSError as exc:
        raise _failed(directory, exc) from None
    _unlink_dropped_names(directory, files)
    _remove_old_sets(directory, keep=new)
    return new


def replace_file(directory: str, item: FileContent, *, uid: int | None, gid: int | None) -> None:
    """Replace one file beside the sets (not in one) with a rename: a reader sees the old file
    or the new one, whole. For the record, whose status changes without a new set."""
    temporary = os.path.join(directory, f"..{item.name}.tmp")
    _remove_tree(temporary)  # what a killed run left behind
    try:
        _write_file(temporary, item, _owner(uid, gid))
        os.replace(temporary, os.path.join(directory, item.name))
    except OSError as exc:
        _remove_tree(temporary)
        raise _failed(directory, exc) from None


def _failed(directory: str, exc: OSError) -> WriteFailed:
    return WriteFailed(
        f"cannot write into {directory!r}: {exc.strerror or exc} "
        f"({os.path.basename(exc.filename or '') or 'directory'}); the secrets volume may be "
        "full (raise its sizeLimit) or not writable by this user"
    )


def current_set(directory: str) -> str | None:
    """The name of the set `..data` points at, or None before the first switch."""
    try:
        target = os.readlink(os.path.join(directory, DATA_LINK))
    except OSError:
        return None
    return target if _SET_NAME.fullmatch(target) else None


def _check_names(directory: str, files: Sequence[FileContent]) -> None:
    """Refuse, before touching anything, a directory where a file's link must go."""
    if not os.path.isdir(directory):
        raise WriteFailed(
            f"directory {directory!r} does not exist; it is the sakura-secrets volume's mount "
            "path, check the pod's volumeMounts"
        )
    for item in files:
        path = os.path.join(directory, item.name)
        if os.path.isdir(path):
            raise WriteFailed(
                f"{path!r} is a directory, so file {item.name!r} cannot replace it; mount the "
                "secrets volume on its own empty directory"
            )


def _link_target(name: str) -> str:
    return f"{DATA_LINK}/{name}"


def _is_our_link(path: str, name: str) -> bool:
    return os.path.islink(path) and os.readlink(path) == _link_target(name)


def _owner(uid: int | None, gid: int | None) -> tuple[int, int] | None:
    """chown only when we can (root) and were asked to; otherwise the files are ours."""
    if os.geteuid() != 0 or (uid is None and gid is None):
        return None
    return (-1 if uid is None else uid, -1 if gid is None else gid)


def _set_name() -> str:
    """`..YYYY_MM_DD_HH_MM_SS.<12 hex>` (UTC): hidden, sorted by age, unique."""
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    return f"..{stamp}.{random_names.token_hex(_RANDOM_BYTES)}"


def _write_set(path: str, files: Sequence[FileContent], owner: tuple[int, int] | None) -> None:
    os.mkdir(path, 0o700)  # exclusive: fails on anything planted at the name
    for item in files:
        _write_file(os.path.join(path, item.name), item, owner)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fchmod(fd, SET_MODE)
        if owner is not None:
            os.fchown(fd, *owner)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: str, item: FileContent, owner: tuple[int, int] | None) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, item.mode)
    try:
        os.fchmod(fd, item.mode)  # the umask narrowed the mode given at creation
        if owner is not None:
            os.fchown(fd, *owner)
        view = memoryview(item.data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_new_names(directory: str, files: Sequence[FileContent], made: list[str]) -> list[str]:
    """`NAME -> ..data/NAME` for each free name (it leads nowhere until the switch); returns the
    names something else holds (a file from before this writer), to take over after it."""
    foreign = []
    for item in files:
        path = os.path.join(directory, item.name)
        if _is_our_link(path, item.name):
            continue
        if os.path.lexists(path):
            foreign.append(item.name)
        else:
            os.symlink(_link_target(item.name), path)
            made.append(path)
    return foreign


def _take_over(directory: str, names: Sequence[str]) -> None:
    """Replace each by its link with a rename: a reader sees the old file or the new set."""
    temporary = os.path.join(directory, NEW_DATA_LINK)
    for name in names:
        os.symlink(_link_target(name), temporary)
        os.replace(temporary, os.path.join(directory, name))


def _unlink_dropped_names(directory: str, files: Sequence[FileContent]) -> None:
    """A link of ours to a name the new set has not would lead nowhere: remove it."""
    kept = {item.name for item in files}
    for name in os.listdir(directory):
        if name not in kept and _is_our_link(os.path.join(directory, name), name):
            _remove(os.path.join(directory, name))


def _remove_old_sets(directory: str, *, keep: str | None) -> None:
    """Every set but `keep`, and a `..data_tmp` link a killed run left behind."""
    for entry in os.listdir(directory):
        if entry == NEW_DATA_LINK or (entry != keep and _SET_NAME.fullmatch(entry)):
            _remove_tree(os.path.join(directory, entry))


def _remove_tree(path: str) -> None:
    """Best effort: what stays is swept by the next switch, and no app can reach it."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError:
        pass


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
