"""Pod annotations -> a typed, validated Plan plus the options that shape the pod.

Every invalid input of the contract becomes a `Denied` whose message names the annotation and
the fix, so `kubectl apply` tells the user what to change. Nothing here looks at the pod's
containers; that is `pod/` (mounts, ownership), which needs the options parsed here.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from contract import (
    MAX_PLAN_BYTES,
    MAX_SECRETS,
    FileSpec,
    Plan,
    PlanError,
    SecretRef,
    check_file_name,
    template_refs,
    template_tokens,
)
from contract.annotations import (
    CONTAINERS,
    CPU_LIMIT,
    CPU_REQUEST,
    CREDENTIALS_SECRET,
    FILE_MODE,
    FILE_MODE_OF,
    FIXED,
    INIT_FIRST,
    INJECT,
    MAX_NAME,
    MEMORY_LIMIT,
    MEMORY_REQUEST,
    MOUNT_PATH,
    PER_FILE,
    PREFIX,
    REFRESH_INTERVAL,
    RUN_AS_GROUP,
    RUN_AS_USER,
    SECRET_FILE,
    STATUS,
    STATUS_INJECTED,
    STATUS_WARNINGS,
    TEMPLATE_FILE,
    VAULT_ID,
    short_name,
)
from contract.plan import VAULT_ID as VAULT_ID_PATTERN
from contract.pod import TOKEN_DIRECTORY
from injector.webhook.checks import Denied
from injector.webhook.pod.resources import Resources, parse_quantity
from injector.webhook.settings import WebhookSettings

DEFAULT_MOUNT_PATH = "/sakura/secrets"
DEFAULT_FILE_MODE = 0o400

MAX_ANNOTATIONS_BYTES = 256 * 1024
"""What the API server allows a pod's annotations in total, keys and values. A mutating webhook
sees the pod before the API server validates it, so nothing larger gets parsed here."""
MAX_FILES = 1000
"""Files (secret-FILE and template-FILE annotations) a pod may have: each costs parsing and
plan space, and this many is refused before any is parsed."""
MAX_TEMPLATE_TOKENS = 4096
"""jinja2 tokens all of a pod's templates may have together. Parsing costs a few microseconds
a token, whatever the length in bytes (a run of plain text is one token): this bound keeps a
review of the largest pod well under 100 ms."""

_MODE = re.compile(r"^0?[0-7]{3}$")
_ID = re.compile(r"^[0-9]{1,10}$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class PodOptions:
    """How the pod is changed, as opposed to what the init container fetches (the Plan)."""

    mount_path: str = DEFAULT_MOUNT_PATH
    containers: tuple[str, ...] | None = None
    """App containers that get the mount; None means all of them."""
    init_first: bool = True
    credentials_secret: str | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    resources: Resources = field(default_factory=Resources)
    explicit_modes: frozenset[str] = frozenset()
    """Files whose mode an annotation sets (all of them with `file-mode`): kept as set when
    the owner's uid is unknown and the other files are made readable to the app anyway."""


@dataclass(frozen=True)
class Injection:
    """The parsed annotations: the plan (owner not yet resolved) and the pod options."""

    plan: Plan
    options: PodOptions


def parse_annotations(annotations: Mapping[str, str], settings: WebhookSettings) -> Injection:
    """Read every `sakura-secrets.io/` annotation; raise Denied on the first invalid one."""
    _check_total_size(annotations)
    ours = {k: v for k, v in annotations.items() if k.startswith(PREFIX)}
    for key in sorted(ours):
        _check_known(key)
    if REFRESH_INTERVAL in ours:
        raise Denied(
            f"annotation {REFRESH_INTERVAL}: {short_name(REFRESH_INTERVAL)} (rotation sidecar) "
            "is not supported yet; remove the annotation (the init container fetches the files "
            "once at pod start)"
        )
    status = ours.get(STATUS)
    if status is not None and status != STATUS_INJECTED:
        raise Denied(
            f"annotation {STATUS}: {status!r} is not a value you can set; the injector writes "
            "this annotation itself, remove it"
        )
    if STATUS_WARNINGS in ours:
        raise Denied(
            f"annotation {STATUS_WARNINGS}: the injector writes this annotation itself, remove it"
        )

    credentials_secret = _credentials_secret(ours.get(CREDENTIALS_SECRET))
    options = PodOptions(
        mount_path=_mount_path(ours.get(MOUNT_PATH, DEFAULT_MOUNT_PATH)),
        containers=_containers(ours.get(CONTAINERS)),
        init_first=_boolean(INIT_FIRST, ours.get(INIT_FIRST, "true")),
        credentials_secret=credentials_secret,
        run_as_user=_identity(RUN_AS_USER, ours.get(RUN_AS_USER)),
        run_as_group=_identity(RUN_AS_GROUP, ours.get(RUN_AS_GROUP)),
        resources=_resources(ours),
    )
    files = _files(ours)
    options = replace(options, explicit_modes=_explicit_modes(ours, files))
    vault_id = _vault_id(ours.get(VAULT_ID), settings)
    try:
        plan = Plan(
            files=files,
            directory=options.mount_path,
            mode="direct" if credentials_secret is not None else "broker",
            vault_id=vault_id,
        )
    except PlanError as exc:
        raise Denied(f"annotations {PREFIX}*: {exc}") from None
    _check_plan_size(plan, ours)
    _check_secret_count(plan)
    return Injection(plan=plan, options=options)


def _check_total_size(annotations: Mapping[str, str]) -> None:
    sizes = {k: len(k.encode()) + len(v.encode()) for k, v in annotations.items()}
    total = sum(sizes.values())
    if total > MAX_ANNOTATIONS_BYTES:
        largest = max(sizes, key=sizes.__getitem__)
        raise Denied(
            f"annotation {largest}: the pod's annotations have {total} bytes in total, more than "
            f"the {MAX_ANNOTATIONS_BYTES} (256 KiB) Kubernetes allows; this is the largest "
            f"({sizes[largest]} bytes), shorten it"
        )


def _check_plan_size(plan: Plan, ours: Mapping[str, str]) -> None:
    size = len(plan.to_json())
    if size <= MAX_PLAN_BYTES:
        return
    sources = {k: len(v) for k, v in ours.items() if k.startswith((SECRET_FILE, TEMPLATE_FILE))}
    largest = max(sources, key=sources.__getitem__)
    raise Denied(
        f"annotation {largest}: the pod's {len(plan.files)} files make a plan of {size} "
        f"bytes, more than the {MAX_PLAN_BYTES} (127 KiB) the init container's environment can "
        "carry (Linux caps one variable at 128 KiB); this is the largest file's source: write "
        "fewer or smaller files per pod"
    )


def _check_secret_count(plan: Plan) -> None:
    wanted = plan.secrets()
    if len(wanted) > MAX_SECRETS:
        # each is an RBAC review at admission and at every fetch, and the broker answers
        # at most this many: such a pod could never start
        raise Denied(
            f"annotations {SECRET_FILE}*/{short_name(TEMPLATE_FILE)}*: the pod reads {len(wanted)} "
            f"distinct secrets (name and version), more than the {MAX_SECRETS} one pod may read "
            "(a vault holds at most 100); split the files over several pods or read fewer versions"
        )


def _check_known(key: str) -> None:
    if key in FIXED:
        return
    prefix = next((p for p in PER_FILE if key.startswith(p) and len(key) > len(p)), None)
    if prefix is not None:
        _check_key_name(key, prefix)
        return
    if key in (SECRET_FILE, TEMPLATE_FILE) or f"{key}-" in (SECRET_FILE, TEMPLATE_FILE):
        stem = key.rstrip("-")
        raise Denied(f"annotation {key} names no file; write {stem}-FILE, e.g. {stem}-db-password")
    short = short_name(key)
    rest = short.split("-", 1)[1] if "-" in short else short
    candidates = [*map(short_name, FIXED), *(short_name(p) + rest for p in PER_FILE)]
    close = difflib.get_close_matches(short, candidates, n=1, cutoff=0.6)
    hint = f"did you mean {PREFIX}{close[0]}? " if close else ""
    raise Denied(
        f"annotation {key} is not a known annotation; {hint}known keys: "
        f"{', '.join(map(short_name, FIXED[:-2]))}, "
        f"{', '.join(short_name(p) + 'FILE' for p in PER_FILE)}"
    )


def _check_key_name(key: str, prefix: str) -> None:
    """Refuse a FILE the API server would refuse in the key (it validates after the webhooks)."""
    file = key[len(prefix) :]
    limit = MAX_NAME - len(short_name(prefix))
    if len(short_name(key)) > MAX_NAME:
        raise Denied(
            f"annotation {key}: FILE {file!r} has {len(file)} characters, more than "
            f"the {limit} a {short_name(prefix)}FILE annotation allows (Kubernetes allows at most "
            f"{MAX_NAME} characters after the '/' of an annotation key); "
            "shorten the file name"
        )
    if key.endswith((".", "_", "-")):  # other characters: not a plain file name, below
        raise Denied(
            f"annotation {key}: FILE {file!r} ends with {key[-1]!r}, and Kubernetes "
            "requires an annotation key to end with a letter or digit; "
            "end the file name with one"
        )


def _explicit_modes(ours: Mapping[str, str], files: tuple[FileSpec, ...]) -> frozenset[str]:
    if FILE_MODE in ours:
        return frozenset(f.name for f in files)
    return frozenset(f.name for f in files if f"{FILE_MODE_OF}{f.name}" in ours)


def _files(ours: Mapping[str, str]) -> tuple[FileSpec, ...]:
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
                tokens_left -= _template_tokens(key, value, tokens_left)
                sources[file] = (key, None, value, _template_refs(key, value))
    if not sources:
        raise Denied(
            f"annotation {INJECT} is 'true' but no file is requested; add "
            f'{SECRET_FILE}FILE: "NAME" (or {short_name(TEMPLATE_FILE)}FILE) for each file to write'
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
    files = []
    for file, (_, secret, template, refs) in sorted(sources.items()):
        mode = _mode(FILE_MODE_OF + file, ours.get(FILE_MODE_OF + file), default_mode)
        files.append(
            FileSpec(name=file, mode=mode, secret=secret, template=template, template_refs=refs)
        )
    return tuple(files)


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


def _template_tokens(key: str, value: str, left: int) -> int:
    """The template's share of the pod's token budget, checked before it is parsed."""
    used = template_tokens(value, left)
    if used > left:
        raise Denied(
            f"annotation {key}: the pod's templates have more than "
            f"{MAX_TEMPLATE_TOKENS} jinja2 tokens together (each name, literal, operator and tag "
            "delimiter counts; text outside tags counts once a run, however long); make the "
            "templates simpler or write fewer of them"
        )
    return used


def _template_refs(key: str, value: str) -> tuple[SecretRef, ...]:
    try:
        return template_refs(value)
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


def _vault_id(value: str | None, settings: WebhookSettings) -> str:
    if value is not None:
        if not VAULT_ID_PATTERN.match(value.strip()):
            raise Denied(
                f"annotation {VAULT_ID}: {value!r} is not a Sakura vault ID; "
                'write its 12 digits, e.g. "123456789012"'
            )
        return value.strip()
    if settings.default_vault_id is None:
        raise Denied(
            f"no vault: set the annotation {VAULT_ID} to the 12-digit Sakura vault ID, "
            "or give the injector a default vault (its default_vault_id setting)"
        )
    return settings.default_vault_id


def _mount_path(value: str) -> str:
    path = value.strip()
    what: str | None = None
    segments = path.rstrip("/").split("/")[1:]
    if not path.startswith("/"):
        what = "is not an absolute path"
    elif path.rstrip("/") == "":
        what = "is the root directory"
    elif any(s in ("", ".", "..") for s in segments):
        what = "has an empty, '.' or '..' segment"
    elif any(c.isspace() or c in ":\\" or not c.isprintable() for c in path):
        what = "contains whitespace, ':' or '\\'"
    if what is not None:
        raise Denied(
            f"annotation {MOUNT_PATH}: {value!r} {what}; write an absolute directory such "
            f"as {DEFAULT_MOUNT_PATH}"
        )
    path = posixpath.normpath(path)
    within = f"{path}/".startswith(f"{TOKEN_DIRECTORY}/")
    if within or TOKEN_DIRECTORY.startswith(f"{path}/"):
        raise Denied(
            f"annotation {MOUNT_PATH}: {path} overlaps {TOKEN_DIRECTORY}, where the "
            "injector mounts its token; "
            f"choose another directory such as {DEFAULT_MOUNT_PATH}"
        )
    return path


def _containers(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    if not names:
        raise Denied(
            f"annotation {CONTAINERS} is empty; list app container names separated by "
            "commas, or remove it to mount into every app container"
        )
    return names


def _boolean(key: str, value: str) -> bool:
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise Denied(f'annotation {key}: {value!r} is not "true" or "false"')
    return text == "true"


def _identity(key: str, value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    # ASCII digits only: str.isdigit() also accepts "²", which int() then refuses
    if not _ID.match(text) or int(text) > _MAX_ID:
        raise Denied(
            f"annotation {key}: {value!r} is not a numeric id; write a number such as "
            '"1000" (names are not resolved)'
        )
    ident = int(text)
    if key == RUN_AS_USER and ident == 0:
        raise Denied(
            f"annotation {RUN_AS_USER}: the init container must not run as root (uid 0); "
            "set a non-root uid (an app running as root can still read the files)"
        )
    return ident


def _credentials_secret(value: str | None) -> str | None:
    if value is None:
        return None
    name = value.strip()
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        raise Denied(
            f"annotation {CREDENTIALS_SECRET}: {value!r} is not a Secret name; use "
            "lowercase letters, digits, '-' and '.' (at most 253 characters)"
        )
    return name


def _resources(ours: Mapping[str, str]) -> Resources:
    defaults = Resources()
    chosen: dict[str, str] = {}
    amounts = {}
    for key in (CPU_REQUEST, CPU_LIMIT, MEMORY_REQUEST, MEMORY_LIMIT):
        attr = short_name(key).replace("-", "_")
        text = ours.get(key, getattr(defaults, attr)).strip()
        try:
            amounts[key] = parse_quantity(text)
        except ValueError as exc:
            raise Denied(f"annotation {key}: {exc}") from None
        chosen[attr] = text
    for kind, request_key, limit_key in (
        ("cpu", CPU_REQUEST, CPU_LIMIT),
        ("memory", MEMORY_REQUEST, MEMORY_LIMIT),
    ):
        if amounts[request_key] > amounts[limit_key]:
            given = [k for k in (request_key, limit_key) if k in ours]
            raise Denied(
                f"annotation {given[0]}: the {kind} request "
                f"{chosen[kind + '_request']} exceeds the {kind} limit {chosen[kind + '_limit']}"
                f"{'' if limit_key in ours else ' (the default)'}; "
                f"set {limit_key} at least as high as {request_key}"
            )
    return Resources(**chosen)
