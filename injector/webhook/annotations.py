"""Pod annotations -> what the plan will hold (all but its owner) and the pod's options.

Every invalid input of the contract becomes a `Denied` whose message names the annotation and
the fix, so `kubectl apply` tells the user what to change. The file annotations are parsed in
`files`; nothing here looks at the pod's containers (that is `pod_checks` and `pod/`), and the
plan itself is built once the files' owner is known (`Injection.plan`).
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from contract import Broker, Direct, FileSpec, Mode, Plan, PlanError
from contract.annotations import (
    CONTAINERS,
    CPU_LIMIT,
    CPU_REQUEST,
    CREDENTIALS_SECRET,
    FIXED,
    INIT_FIRST,
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
from injector.webhook.errors import Denied
from injector.webhook.files import (
    MAX_FILES,
    MAX_TEMPLATE_TOKENS,
    explicit_modes,
    parse_files,
)
from injector.webhook.pod.ownership import Owner
from injector.webhook.pod.resources import Resources
from injector.webhook.quantity import parse_quantity
from injector.webhook.settings import WebhookSettings

__all__ = [
    "MAX_ANNOTATIONS_BYTES",
    "MAX_FILES",
    "MAX_TEMPLATE_TOKENS",
    "Injection",
    "PodOptions",
    "parse_annotations",
]

DEFAULT_MOUNT_PATH = "/sakura/secrets"

MAX_ANNOTATIONS_BYTES = 256 * 1024
"""What the API server allows a pod's annotations in total, keys and values. A mutating webhook
sees the pod before the API server validates it, so nothing larger gets parsed here."""

_ID = re.compile(r"^[0-9]{1,10}\Z")
_MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class PodOptions:
    """How the pod is changed, as opposed to what the init container fetches (the Plan)."""

    mount_path: str = DEFAULT_MOUNT_PATH
    containers: tuple[str, ...] | None = None
    """App containers that get the mount; None means all of them."""
    init_first: bool = True
    run_as_user: int | None = None
    run_as_group: int | None = None
    resources: Resources = field(default_factory=Resources)
    explicit_modes: frozenset[str] = frozenset()
    """Files whose mode an annotation sets (all of them with `file-mode`): kept as set when
    the owner's uid is unknown and the other files are made readable to the app anyway."""


@dataclass(frozen=True)
class Injection:
    """The parsed annotations: everything the plan holds but its owner, and the pod options."""

    files: tuple[FileSpec, ...]
    vault_id: str
    mode: Mode
    options: PodOptions

    def plan(self, owner: Owner) -> Plan:
        """The complete plan, once the pod tells who owns the files.

        The owner's `file_mode`, when it has one, is the mode of every file whose mode no
        annotation sets (`PodOptions.explicit_modes`).
        """
        files = self.files
        if owner.file_mode is not None:
            mode, kept = owner.file_mode, self.options.explicit_modes
            files = tuple(f if f.name in kept else replace(f, mode=mode) for f in files)
        return Plan(
            files=files,
            directory=self.options.mount_path,
            vault_id=self.vault_id,
            uid=owner.uid,
            gid=owner.gid,
            mode=self.mode,
        )


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

    mode = _mode(ours.get(CREDENTIALS_SECRET))
    mount_path = _mount_path(ours.get(MOUNT_PATH, DEFAULT_MOUNT_PATH))
    containers = _containers(ours.get(CONTAINERS))
    init_first = _boolean(INIT_FIRST, ours.get(INIT_FIRST, "true"))
    run_as_user = _identity(RUN_AS_USER, ours.get(RUN_AS_USER))
    run_as_group = _identity(RUN_AS_GROUP, ours.get(RUN_AS_GROUP))
    resources = _resources(ours)
    files = parse_files(ours)
    vault_id = _vault_id(ours.get(VAULT_ID), settings)
    options = PodOptions(
        mount_path=mount_path,
        containers=containers,
        init_first=init_first,
        run_as_user=run_as_user,
        run_as_group=run_as_group,
        resources=resources,
        explicit_modes=explicit_modes(ours, files),
    )
    return Injection(files=files, vault_id=vault_id, mode=mode, options=options)


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


def _mode(credentials_secret: str | None) -> Mode:
    """Broker mode, or direct mode when the pod names its own credentials Secret."""
    if credentials_secret is None:
        return Broker()
    try:
        return Direct(credentials_secret.strip())
    except PlanError:
        raise Denied(
            f"annotation {CREDENTIALS_SECRET}: {credentials_secret!r} is not a Secret "
            "name; use lowercase letters, digits, '-' and '.' (at most 253 characters)"
        ) from None


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
