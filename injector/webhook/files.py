"""The file annotations (secret-FILE, template-FILE, file-mode-FILE, encoding-FILE,
file-name-FILE) -> the plan's files.

Also the bounds on what they may ask for: how many files, how many jinja2 tokens, how many
distinct secrets, and how large the finished plan may be (it travels in one environment
variable). Every refusal is a `Denied` naming the annotation and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from contract import (
    MAX_PLAN_BYTES,
    MAX_SECRETS,
    FileSpec,
    Plan,
    PlanError,
    SecretRef,
    check_file_name,
)
from contract.annotations import (
    ENV_VAR,
    FILE_MODE,
    FILE_MODE_OF,
    INJECT,
    SECRET_FILE,
    TEMPLATE_FILE,
    short_name,
)
from injector.webhook.encodings import encodings
from injector.webhook.errors import Denied
from injector.webhook.file_names import disk_names, key_files
from injector.webhook.template_analysis import Analysis, TemplateAnalyses

DEFAULT_FILE_MODE = 0o400
MAX_FILES = 1000
"""Files (secret-FILE and template-FILE annotations) a pod may have: each costs parsing and
plan space, and this many is refused before any is parsed."""
MAX_TEMPLATE_TOKENS = 4096
"""jinja2 tokens all of a pod's templates may have together. Parsing costs a few microseconds
a token, whatever the length in bytes (a run of plain text is one token): this bound keeps a
review of the largest pod well under 100 ms."""
_MODE = re.compile(r"^0?[0-7]{3}\Z")
TEMPLATES = TemplateAnalyses(MAX_TEMPLATE_TOKENS)
"""Each template text's tokens and references, remembered (bounded) for the next pod."""


def parse_files(ours: Mapping[str, str]) -> tuple[FileSpec, ...]:
    """The files `ours` (the pod's annotations under our prefix) ask for, sorted by name."""
    sources: dict[str, tuple[str, SecretRef | None, str | None, tuple[SecretRef, ...]]] = {}
    keys = sorted(k for k in ours if k.startswith((SECRET_FILE, TEMPLATE_FILE)))
    if len(keys) > MAX_FILES:
        raise Denied(
            f"annotation {keys[MAX_FILES]}: the pod's {short_name(SECRET_FILE)}FILE and "
            f"{short_name(TEMPLATE_FILE)}FILE annotations ask for {len(keys)} files, more than the "
            f"{MAX_FILES} a pod may have; "
            "write fewer files (one template can put several secrets into one file)"
        )
    tokens_left = MAX_TEMPLATE_TOKENS
    for key in keys:
        value = ours[key]
        for prefix in (SECRET_FILE, TEMPLATE_FILE):
            if not key.startswith(prefix):
                continue
            file = key[len(prefix) :]
            _file_name(key, file)
            if file in sources:
                raise Denied(
                    f"annotations {sources[file][0]} and {key} both write file "
                    f"{file!r}; keep one of them"
                )
            if prefix == SECRET_FILE:
                sources[file] = (key, _secret_ref(key, value), None, ())
            else:
                analysis = TEMPLATES.analysis(value)
                tokens_left -= _template_tokens(key, analysis, tokens_left)
                sources[file] = (key, None, value, _template_refs(key, analysis))
    if not sources and not any(k.startswith(ENV_VAR) for k in ours):
        raise Denied(
            f"annotation {INJECT} is 'true' but no file or variable is requested; add "
            f'{SECRET_FILE}FILE: "NAME" (or {short_name(TEMPLATE_FILE)}FILE) for each file to '
            f'write, or {short_name(ENV_VAR)}VAR: "NAME" for each environment variable'
        )
    default_mode = _mode(FILE_MODE, ours.get(FILE_MODE), DEFAULT_FILE_MODE)
    for key in ours:
        if key.startswith(FILE_MODE_OF) and key[len(FILE_MODE_OF) :] not in sources:
            raise Denied(
                f"annotation {key} sets the mode of file "
                f"{key[len(FILE_MODE_OF) :]!r}, which no {short_name(SECRET_FILE)}FILE or "
                f"{short_name(TEMPLATE_FILE)}FILE annotation writes; "
                f"files: {', '.join(sorted(sources))}"
            )
    keys_of = {file: source[0] for file, source in sources.items()}
    codes = encodings(ours, keys_of)
    names = disk_names(ours, keys_of)
    files = []
    for file, (_, secret, template, refs) in sorted(sources.items()):
        mode = _mode(FILE_MODE_OF + file, ours.get(FILE_MODE_OF + file), default_mode)
        files.append(
            FileSpec(
                name=names[file],
                mode=mode,
                secret=secret,
                template=template,
                template_refs=refs,
                encoding=codes.get(file),
            )
        )
    return tuple(sorted(files, key=lambda f: f.name))


def explicit_modes(ours: Mapping[str, str], files: tuple[FileSpec, ...]) -> frozenset[str]:
    """The files (their names on disk) whose mode an annotation sets (all with `file-mode`)."""
    if FILE_MODE in ours:
        return frozenset(f.name for f in files)
    file_of = key_files(ours)
    return frozenset(f.name for f in files if FILE_MODE_OF + file_of.get(f.name, f.name) in ours)


def check_secret_count(plan: Plan) -> None:
    """Refuse a plan that reads more distinct secrets than one fetch may."""
    wanted = plan.secrets()
    if len(wanted) > MAX_SECRETS:
        # each is an RBAC review at admission and at every fetch, and the broker answers
        # at most this many: such a pod could never start
        raise Denied(
            f"annotations {SECRET_FILE}*/{short_name(TEMPLATE_FILE)}*: the pod reads {len(wanted)} "
            f"distinct secrets (name and version), more than the {MAX_SECRETS} one pod may read "
            "(a vault holds at most 100); split the files over several pods or read fewer versions"
        )


def check_plan_size(plan: Plan, annotations: Mapping[str, str]) -> None:
    """Refuse a plan too large for the init container's environment, naming the annotation of
    its largest file (`annotations`: the pod's, for the FILE of a renamed one)."""
    size = len(plan.to_json())
    if size <= MAX_PLAN_BYTES:
        return
    if not plan.files:  # variables only
        raise Denied(
            f"annotations {ENV_VAR}*: the pod's {len(plan.env)} variables make a plan of {size} "
            f"bytes, more than the {MAX_PLAN_BYTES} (127 KiB) the init container's environment "
            "can carry; set fewer variables per pod"
        )
    largest = max(plan.files, key=_source_size)
    prefix = SECRET_FILE if largest.secret is not None else TEMPLATE_FILE
    file = key_files(annotations).get(largest.name, largest.name)
    raise Denied(
        f"annotation {prefix}{file}: the pod's {len(plan.files)} files make a "
        f"plan of {size} bytes, more than the {MAX_PLAN_BYTES} (127 KiB) the init container's "
        "environment can carry (Linux caps one variable at 128 KiB); this is the largest "
        "file's source: write fewer or smaller files per pod"
    )


def _source_size(spec: FileSpec) -> int:
    return len(spec.template) if spec.template is not None else len(str(spec.secret))


def _file_name(key: str, file: str) -> None:
    try:
        check_file_name(file)
    except PlanError as exc:
        raise Denied(f"annotation {key}: {exc}") from None


def _secret_ref(key: str, value: str) -> SecretRef:
    try:
        return SecretRef.parse(value)
    except PlanError as exc:
        raise Denied(f"annotation {key}: {exc}") from None


def _template_tokens(key: str, analysis: Analysis, left: int) -> int:
    """The template's share of the pod's token budget, checked before its references are read
    (a template over the budget is never parsed)."""
    used = analysis.tokens  # counted up to the whole budget + 1, so past `left` when over it
    if used > left:
        raise Denied(
            f"annotation {key}: the pod's templates have more than "
            f"{MAX_TEMPLATE_TOKENS} jinja2 tokens together (each name, literal, operator and tag "
            "delimiter counts; text outside tags counts once a run, however long); make the "
            "templates simpler or write fewer of them"
        )
    return used


def _template_refs(key: str, analysis: Analysis) -> tuple[SecretRef, ...]:
    try:
        return analysis.secret_refs()
    except PlanError as exc:
        raise Denied(f"annotation {key}: {exc}") from None


def _mode(key: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    text = value.strip()
    if not _MODE.match(text):
        raise Denied(
            f"annotation {key}: {value!r} is not an octal file mode; write e.g. "
            '"0400" (owner read) or "0440" (owner and group read)'
        )
    mode = int(text, 8)
    if not mode & 0o444:
        raise Denied(
            f'annotation {key}: mode {text} lets no one read the file; add a read bit, e.g. "0400"'
        )
    return mode
