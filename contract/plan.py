"""The fetch plan: the one typed value the webhook writes and the init container reads.

The webhook derives it from annotations at admission time and puts it into the init
container as JSON; the init container never looks at annotations. It holds names, versions,
keys, file names, modes and template text, never a secret value.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from contract.encoding import BASE64
from contract.env_file import EnvSpec
from contract.errors import PlanError
from contract.file_names import check_chosen_name

PLAN_FORMAT = 1
"""Bumped when the JSON shape changes incompatibly, so an old init image refuses a new plan."""
BINARY_PLAN_FORMAT = 2
"""A plan with a decoded (`encoding`) file: an init image that reads only format 1 would write
the base64 text as it is, so it must refuse the plan instead. Other plans stay format 1."""
ENV_PLAN_FORMAT = 3
"""The format of a plan with environment variables (`Plan.env`): an init image from before them
refuses such a plan instead of leaving the variables unwritten; a plan without them stays
`PLAN_FORMAT`, which every init image reads. (3, not 2: issue 23 gives 2 to plans with decoded
files, and an init image that reads 2 but not variables must refuse this one.)"""
ENV_DIRECTORY = "/var/run/sakura-secrets.io-env"
"""Where the init container writes the env file (`contract.pod.ENV_VOLUME`, its own mount)."""

MAX_PLAN_BYTES = 127 * 1024
"""The plan travels in one environment variable of the init container, and Linux refuses to
start a process with a variable over 128 KiB (MAX_ARG_STRLEN): the pod would never start."""
MAX_SECRETS = 100
"""Distinct values (name, version) one plan may read: Sakura holds at most 100 secrets per
contract, and the broker answers at most this many per request (one request per pod)."""
MAX_NAME_LENGTH = 255
VAULT_ID = re.compile(r"^[0-9]{12}\Z")
# A plain file name: no directory part, not hidden, no traversal, portable characters only.
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}\Z")
_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() also admits "²" and "٣"
_REF = re.compile(r"^(?P<name>[^@#]+)(?:@(?P<version>[^#]*))?(?:#(?P<key>.*))?\Z")
SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
"""A Kubernetes Secret's name: a DNS-1123 subdomain (at most MAX_SECRET_NAME characters)."""
MAX_SECRET_NAME = 253
MIN_REFRESH_SECONDS = 10
"""The shortest refresh interval: shorter would only spend the broker's (or Sakura's) time,
since a new version reaches the broker's cache at most once per its latest-TTL anyway."""
MAX_REFRESH_SECONDS = 24 * 3600
"""The longest: a day; beyond that a restart is the simpler way to pick up versions."""
_DURATION = re.compile(r"^(?:(?P<h>[0-9]{1,5})h)?(?:(?P<m>[0-9]{1,7})m)?(?:(?P<s>[0-9]{1,9})s)?\Z")


@dataclass(frozen=True)
class Broker:
    """The init container asks the injector's broker, with its projected token (the default)."""

    name: ClassVar[str] = "broker"


@dataclass(frozen=True)
class Direct:
    """The init container reads Sakura itself, with the credentials of the pod's own Secret."""

    credentials_secret: str
    """The Secret (in the pod's namespace) holding SAKURA_ACCESS_TOKEN(_SECRET)."""
    name: ClassVar[str] = "direct"

    def __post_init__(self) -> None:
        secret = self.credentials_secret
        if (
            not isinstance(secret, str)
            or len(secret) > MAX_SECRET_NAME
            or not SECRET_NAME.match(secret)
        ):
            raise PlanError(
                f"credentials Secret {secret!r} is not a Secret name; use lowercase letters, "
                f"digits, '-' and '.' (at most {MAX_SECRET_NAME} characters)"
            )


Mode = Broker | Direct
"""How the init container gets the values: through the broker, or directly from Sakura."""


@dataclass(frozen=True, order=True)
class SecretRef:
    """One Sakura secret, optionally pinned to a version and narrowed to one JSON key."""

    name: str
    version: int | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > MAX_NAME_LENGTH or self.name != self.name.strip():
            raise PlanError(
                f"secret name {self.name!r} must be 1 to {MAX_NAME_LENGTH} characters "
                "without surrounding spaces"
            )
        if any(c in self.name for c in "@#\n\r\t"):
            raise PlanError(f"secret name {self.name!r} must not contain '@', '#' or whitespace")
        if self.version is not None and (isinstance(self.version, bool) or self.version < 1):
            raise PlanError(f"version of secret {self.name!r} must be a whole number >= 1")
        if self.key is not None and not self.key:
            raise PlanError(f"key of secret {self.name!r} is empty; drop the '#' or name a key")

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        """Read `NAME`, `NAME@VERSION`, `NAME#KEY` or `NAME@VERSION#KEY`."""
        match = _REF.match(text.strip())
        if match is None:
            raise PlanError(
                f"{text!r} is not a secret reference; write NAME, NAME@VERSION, NAME#KEY "
                "or NAME@VERSION#KEY"
            )
        version_text = match.group("version")
        version: int | None = None
        if version_text is not None:
            if not _DIGITS.fullmatch(version_text) or int(version_text) < 1:
                raise PlanError(
                    f"version {version_text!r} in {text!r} is not a whole number >= 1; "
                    "write NAME@3, or NAME for the latest version"
                )
            version = int(version_text)
        return cls(name=match.group("name"), version=version, key=match.group("key"))

    @property
    def fetch(self) -> SecretVersion:
        """What must be read from Sakura for this reference (the key is applied locally)."""
        return SecretVersion(self.name, self.version)

    def __str__(self) -> str:
        text = self.name
        if self.version is not None:
            text += f"@{self.version}"
        if self.key is not None:
            text += f"#{self.key}"
        return text


@dataclass(frozen=True, order=True)
class SecretVersion:
    """A value as Sakura stores it: a name and a version, None meaning the latest."""

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


@dataclass(frozen=True)
class FileSpec:
    """One file the init container writes: either one secret's value or a rendered template."""

    name: str
    mode: int
    secret: SecretRef | None = None
    template: str | None = None
    template_refs: tuple[SecretRef, ...] = ()
    encoding: str | None = None
    """`"base64"`: the secret's value is decoded and the file gets its bytes (`encoding-FILE`)."""

    def __post_init__(self) -> None:
        check_chosen_name(self.name)  # a FILE of an annotation key, or a `file-name-FILE`
        if not 0 <= self.mode <= 0o777:
            raise PlanError(f"mode {self.mode:o} of file {self.name!r} is not between 0 and 0777")
        if (self.secret is None) == (self.template is None):
            raise PlanError(f"file {self.name!r} needs exactly one of a secret or a template")
        if self.encoding is not None:
            if self.encoding != BASE64:
                raise PlanError(f"encoding {self.encoding!r} of file {self.name!r} is not {BASE64}")
            if self.secret is None:
                raise PlanError(
                    f"file {self.name!r} is a template, which writes text; only a secret's "
                    "value can be decoded"
                )

    @property
    def refs(self) -> tuple[SecretRef, ...]:
        return (self.secret,) if self.secret is not None else self.template_refs


@dataclass(frozen=True)
class Plan:
    """Everything the init container needs to know, decided once at admission."""

    files: tuple[FileSpec, ...]
    directory: str
    vault_id: str
    uid: int
    """The files' owner: the init container runs as it, so it creates them that way."""
    gid: int
    mode: Mode = Broker()
    refresh_interval: int | None = None
    """Seconds between refreshes of the latest-version secrets (the refresh container); None:
    the files are fetched once, by the init container."""
    format: int = field(default=PLAN_FORMAT)
    env: tuple[EnvSpec, ...] = ()
    """Environment variables of the target containers, written once into the env file in
    `env_directory` (never refreshed: a running process keeps its environment)."""
    env_directory: str = ENV_DIRECTORY

    def __post_init__(self) -> None:
        if not self.files and not self.env:
            raise PlanError(
                "the plan names no file and no variable; add a secret-FILE, template-FILE "
                "or env-VAR annotation"
            )
        _check_env(self)
        counts = Counter(f.name for f in self.files)
        duplicates = sorted(n for n, times in counts.items() if times > 1)
        if duplicates:
            raise PlanError(f"file {duplicates[0]!r} is written twice; give each file one source")
        if not isinstance(self.vault_id, str) or not VAULT_ID.match(self.vault_id):
            raise PlanError(f"vault id {self.vault_id!r} is not 12 digits")
        if not self.directory.startswith("/"):
            raise PlanError(f"directory {self.directory!r} is not an absolute path")
        if not isinstance(self.mode, Broker | Direct):
            raise PlanError(f"mode {self.mode!r} is neither 'broker' nor 'direct'")
        for label, ident in (("uid", self.uid), ("gid", self.gid)):
            if not isinstance(ident, int) or isinstance(ident, bool) or ident < 0:
                raise PlanError(f"{label} {ident!r} is not a non-negative whole number")
        if self.refresh_interval is not None:
            check_refresh_interval(self.refresh_interval)

    def secrets(self) -> tuple[SecretVersion, ...]:
        """The distinct values to read, sorted, so every pod of a rollout asks the same way."""
        return self._secrets

    def to_json(self) -> str:
        """The plan's JSON form. Admission reads it twice (the size check, then the init
        container's environment), so it is made once: a plan is frozen."""
        return self._json

    @cached_property
    def _secrets(self) -> tuple[SecretVersion, ...]:
        refs = [*(ref for f in self.files for ref in f.refs), *(v.secret for v in self.env)]
        return tuple(sorted({ref.fetch for ref in refs}, key=_sort_key))

    @cached_property
    def _json(self) -> str:
        return json.dumps(_plan_to_dict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"the plan is not JSON ({exc.msg} at {exc.pos})") from None
        return _plan_from_dict(data)


def parse_duration(text: str) -> int:
    """Seconds in `30s`, `5m`, `1h`, `1h30m` (hours, minutes, seconds, in that order, each
    at most once), within the refresh range; PlanError naming the form and the range."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groupdict().values()):
        raise PlanError(
            f"{text!r} is not a duration; write it like 30s, 5m, 1h or 1h30m ({_refresh_range()})"
        )
    parts = {unit: int(match.group(unit) or 0) for unit in "hms"}
    seconds = parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    check_refresh_interval(seconds)
    return seconds


def check_refresh_interval(seconds: int) -> None:
    if (
        not isinstance(seconds, int)
        or isinstance(seconds, bool)
        or not MIN_REFRESH_SECONDS <= seconds <= MAX_REFRESH_SECONDS
    ):
        raise PlanError(f"refresh interval {seconds!r}s is out of range; {_refresh_range()}")


def _refresh_range() -> str:
    return f"from {MIN_REFRESH_SECONDS}s to {MAX_REFRESH_SECONDS // 3600}h"


def check_file_name(name: str) -> None:
    if not FILE_NAME.match(name):  # also refuses "." and "..": no leading '.'
        raise PlanError(
            f"file name {name!r} is not a plain file name; use letters, digits, '.', '_' and '-' "
            "(not starting with '.' or '-', no '/')"
        )


def _check_env(plan: Plan) -> None:
    counts = Counter(v.name for v in plan.env)
    duplicates = sorted(n for n, times in counts.items() if times > 1)
    if duplicates:
        raise PlanError(f"variable {duplicates[0]!r} is set twice; give each variable one source")
    if not plan.env_directory.startswith("/"):
        raise PlanError(f"env directory {plan.env_directory!r} is not an absolute path")


def _sort_key(v: SecretVersion) -> tuple[str, int]:
    return (v.name, -1 if v.version is None else v.version)


def _ref_to_dict(ref: SecretRef) -> dict[str, Any]:
    return {"name": ref.name, "version": ref.version, "key": ref.key}


def _plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The JSON form: `mode` is "broker" or "direct", and direct mode adds `credentials_secret`;
    `refresh_interval` only when set."""
    mode: dict[str, Any] = {"mode": plan.mode.name}
    if isinstance(plan.mode, Direct):
        mode["credentials_secret"] = plan.mode.credentials_secret
    if plan.refresh_interval is not None:  # absent: fetched once (the plan of most pods)
        mode["refresh_interval"] = plan.refresh_interval
    if plan.env:  # absent without variables: such a plan stays readable by older init images
        mode["env"] = [{"name": v.name, "secret": _ref_to_dict(v.secret)} for v in plan.env]
        mode["env_directory"] = plan.env_directory
    binary = any(f.encoding is not None for f in plan.files)
    return {
        "format": ENV_PLAN_FORMAT if plan.env else BINARY_PLAN_FORMAT if binary else plan.format,
        "directory": plan.directory,
        **mode,
        "vault_id": plan.vault_id,
        "uid": plan.uid,
        "gid": plan.gid,
        "files": [
            {
                "name": f.name,
                "mode": f.mode,
                "secret": None if f.secret is None else _ref_to_dict(f.secret),
                "template": f.template,
                "template_refs": [_ref_to_dict(r) for r in f.template_refs],
                **({} if f.encoding is None else {"encoding": f.encoding}),
            }
            for f in plan.files
        ],
    }


def _plan_from_dict(data: Any) -> Plan:
    if not isinstance(data, dict):
        raise PlanError("the plan must be a JSON object")
    if data.get("format") not in (PLAN_FORMAT, BINARY_PLAN_FORMAT, ENV_PLAN_FORMAT):
        raise PlanError(
            f"plan format {data.get('format')!r} is not {PLAN_FORMAT}, {BINARY_PLAN_FORMAT} or "
            f"{ENV_PLAN_FORMAT}; "
            "run the init image that matches the injector"
        )
    try:
        files = tuple(
            FileSpec(
                name=f["name"],
                mode=int(f["mode"]),
                secret=None if f.get("secret") is None else SecretRef(**f["secret"]),
                template=f.get("template"),
                template_refs=tuple(SecretRef(**r) for r in f.get("template_refs", [])),
                encoding=f.get("encoding"),
            )
            for f in data["files"]
        )
        return Plan(
            files=files,
            directory=data["directory"],
            mode=_mode_from_dict(data),
            vault_id=data["vault_id"],
            uid=data["uid"],
            gid=data["gid"],
            refresh_interval=data.get("refresh_interval"),
            env=tuple(
                EnvSpec(name=v["name"], secret=SecretRef(**v["secret"]))
                for v in data.get("env", [])
            ),
            env_directory=data.get("env_directory", ENV_DIRECTORY),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PlanError):
            raise
        raise PlanError(f"the plan is malformed: {exc!r}") from None


def _mode_from_dict(data: dict[str, Any]) -> Mode:
    mode = data.get("mode", Broker.name)
    if mode == Broker.name:
        return Broker()
    if mode == Direct.name:
        return Direct(data["credentials_secret"])
    raise PlanError(f"mode {mode!r} is neither 'broker' nor 'direct'")
