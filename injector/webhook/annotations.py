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
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from contract import Broker, Direct, FileSpec, Mode, Plan, PlanError, parse_duration
from contract.annotations import (
    CONTAINERS,
    CREDENTIALS_SECRET,
    FIXED,
    INIT_FIRST,
    MAX_NAME,
    MOUNT_PATH,
    PER_FILE,
    PER_VARIABLE,
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
from contract.env_file import EnvSpec
from contract.plan import MAX_REFRESH_SECONDS, MIN_REFRESH_SECONDS
from contract.plan import VAULT_ID as VAULT_ID_PATTERN
from contract.pod import TOKEN_DIRECTORY
from injector.webhook.container_resources import REFRESH, init_resources, refresh_resources
from injector.webhook.env_vars import check_refresh_has_files, parse_env
from injector.webhook.errors import Denied
from injector.webhook.files import (
    MAX_FILES,
    MAX_TEMPLATE_TOKENS,
    TEMPLATES,
    explicit_modes,
    parse_files,
)
from injector.webhook.pod.ownership import Owner
from injector.webhook.pod.resources import REFRESH_DEFAULTS, Resources
from injector.webhook.settings import WebhookSettings
from injector.webhook.text_memo import TextMemo

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
    """The init container's requests and limits."""
    refresh_resources: Resources = REFRESH_DEFAULTS
    """The refresh container's (read from the annotations only when the plan refreshes)."""
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
    refresh_interval: int | None = None
    """Seconds between refreshes (`refresh-interval`); None: no refresh container."""
    env: tuple[EnvSpec, ...] = ()
    """The `env-VAR` variables of the target containers."""
    replace_env: frozenset[str] = frozenset()
    """The VARs that may replace a target container's own entry (`replace-env`)."""
    _plans: dict[tuple[int, int, int | None], Plan] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """The plans made for each owner, remembered with the parse (`PARSED`): a Deployment's
    pods share their owner too, so the plan, its JSON and its secrets are made once (at most
    PLANS_PER_INJECTION owners, the oldest forgotten first, and no plan over
    REMEMBERED_PLAN_BYTES)."""

    def plan(self, owner: Owner) -> Plan:
        """The complete plan, once the pod tells who owns the files.

        The owner's `file_mode`, when it has one, is the mode of every file whose mode no
        annotation sets (`PodOptions.explicit_modes`). Plans are immutable, so every pod of
        the same annotations and owner gets the same one.
        """
        key = (owner.uid, owner.gid, owner.file_mode)
        known = self._plans.get(key)
        if known is None:
            known = self._make_plan(owner)
            if len(known.to_json()) > REMEMBERED_PLAN_BYTES:
                return known  # made fresh each time: the memory bound holds
            with _PLANS_LOCK:  # the admission thread and the loop may both prepare
                self._plans[key] = known
                if len(self._plans) > PLANS_PER_INJECTION:
                    del self._plans[next(iter(self._plans))]
        return known

    def _make_plan(self, owner: Owner) -> Plan:
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
            refresh_interval=self.refresh_interval,
            env=self.env,
        )


_PLANS_LOCK = threading.Lock()
PLANS_PER_INJECTION = 2
"""Owners whose plans one parse remembers: a rollout has one; a tenant that varies its pods'
`runAsUser` gets fresh plans, not a growing table."""
REMEMBERED_PLAN_BYTES = 16 * 1024
"""The largest plan (its JSON) a parse remembers; larger ones (and those refused for their
size) are made for each review. With `PARSED`'s 256 entries this holds at most 8 MiB of plans,
whatever the annotations escape to; the largest pod of benchmarks/webhook.py has 15 KiB."""

PARSED = TextMemo[Injection](entries=256, chars=4 * 1024 * 1024)
"""The parse of each distinct set of our annotations (and default vault), remembered: a
Deployment's pods all carry the same ones. Bounded as `template_analysis.TEMPLATES` is, for
the same reasons (docs/webhook.md, "Performance"); a refused set is parsed again each time."""


def forget_remembered() -> None:
    """Forget the remembered parses and template analyses: the next review of any pod is a
    first one (what the bounds tests and benchmarks/admission_size.py measure)."""
    PARSED.clear()
    TEMPLATES.clear()


def parse_annotations(annotations: Mapping[str, str], settings: WebhookSettings) -> Injection:
    """Read every `sakura-secrets.io/` annotation; raise Denied on the first invalid one.

    The answer depends on our annotations' text and the default vault only, so it is
    remembered (`PARSED`); the total size counts every annotation, so it is checked each time.
    """
    _check_total_size(annotations)
    ours = {k: v for k, v in annotations.items() if k.startswith(PREFIX)}
    key = (settings.default_vault_id, frozenset(ours.items()))
    size = sum(len(k) + len(v) for k, v in ours.items())
    return PARSED.get(key, size, lambda: _parse(ours, settings))


def _parse(ours: Mapping[str, str], settings: WebhookSettings) -> Injection:
    for key in sorted(ours):
        _check_known(key)
    _check_refresh_keys(ours)
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
    resources = init_resources(ours)
    env, replace_env = parse_env(ours)
    files = parse_files(ours)
    check_refresh_has_files(ours, bool(files))
    refresh_interval = _refresh_interval(ours.get(REFRESH_INTERVAL), files)
    refreshing = refresh_resources(ours) if refresh_interval is not None else REFRESH_DEFAULTS
    vault_id = _vault_id(ours.get(VAULT_ID), settings)
    options = PodOptions(
        mount_path=mount_path,
        containers=containers,
        init_first=init_first,
        run_as_user=run_as_user,
        run_as_group=run_as_group,
        resources=resources,
        refresh_resources=refreshing,
        explicit_modes=explicit_modes(ours, files),
    )
    return Injection(files, vault_id, mode, options, refresh_interval, env, replace_env)


def _refresh_interval(value: str | None, files: tuple[FileSpec, ...]) -> int | None:
    """Seconds between refreshes; refused when unparsable, out of range, or nothing can change.

    A plan whose every secret is pinned (`NAME@3`) would only run a container that never
    writes a file: that is refused, saying why, rather than admitted with a warning.
    """
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except PlanError:
        raise Denied(
            f"annotation {REFRESH_INTERVAL}: {value!r} is not a refresh interval; write a "
            f"duration like 30s, 5m, 1h or 1h30m, from {MIN_REFRESH_SECONDS}s to "
            f"{MAX_REFRESH_SECONDS // 3600}h"
        ) from None
    refs = [ref for file in files for ref in file.refs]
    if all(ref.version is not None for ref in refs):
        pinned = ", ".join(dict.fromkeys(str(ref.fetch) for ref in refs))  # never empty
        raise Denied(
            f"annotation {REFRESH_INTERVAL}: every secret of this pod is pinned to a version "
            f"({pinned}), and a pinned version never changes, so there is nothing to refresh; "
            f"remove {REFRESH_INTERVAL}, or write NAME (the latest version) for the secrets "
            "that should follow rotation"
        )
    return seconds


def _check_refresh_keys(ours: Mapping[str, str]) -> None:
    """Refuse the refresh container's own keys on a pod that gets none."""
    if REFRESH_INTERVAL in ours:
        return
    given = [key for key in REFRESH.values() if key in ours]
    if given:
        raise Denied(
            f"annotation {given[0]}: it sizes the refresh container, which only a pod with "
            f"{REFRESH_INTERVAL} gets; set {REFRESH_INTERVAL}, or remove {given[0]}"
        )


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
    if key in FIXED or key.startswith(PER_VARIABLE):  # a VAR is checked by `parse_env`
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
        f"{', '.join(short_name(p) + 'FILE' for p in PER_FILE)}, "
        f"{', '.join(short_name(p) + 'VAR' for p in PER_VARIABLE)}"
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
