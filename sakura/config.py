"""Where the client's credentials and endpoint come from: the official env vars and profiles.

Two kinds of credentials: an API key pair (HTTP Basic), or an IAM service principal (a key
that signs a JWT grant exchanged for Bearer tokens, sakura/principal.py), by the names
Sakura's own tools use. Precedence, field by field: environment variables (new `SAKURA_*`
name, then the legacy `SAKURACLOUD_*` name; the first non-empty wins), then the usacloud
profile, then defaults (zone tk1a, the zone's public URL, Sakura's token endpoint). Both
kinds at once is an error naming both, never a silent choice. When the environment holds one
kind complete and names no profile, profile files are not looked at at all: a container whose
HOME is unreadable (or absent) works with explicit credentials.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sakura.errors import SakuraConfigError

DEFAULT_ZONE = "tk1a"
BASE_URL_TEMPLATE = "https://secure.sakura.ad.jp/cloud/zone/{zone}/api/cloud/1.1"
_ZONE = re.compile(r"^[a-z0-9-]{1,32}\Z")

ENV_ACCESS_TOKEN = ("SAKURA_ACCESS_TOKEN", "SAKURACLOUD_ACCESS_TOKEN")
ENV_ACCESS_TOKEN_SECRET = ("SAKURA_ACCESS_TOKEN_SECRET", "SAKURACLOUD_ACCESS_TOKEN_SECRET")
ENV_ZONE = ("SAKURA_ZONE", "SAKURACLOUD_ZONE")
ENV_ENDPOINT = ("SAKURA_ENDPOINTS_SECRETMANAGER", "SAKURACLOUD_ENDPOINTS_SECRETMANAGER")
ENV_PROFILE = ("SAKURA_PROFILE", "SAKURACLOUD_PROFILE", "USACLOUD_PROFILE")
ENV_PROFILE_DIR = ("SAKURA_PROFILE_DIR", "SAKURACLOUD_PROFILE_DIR", "USACLOUD_PROFILE_DIR")
ENV_PRINCIPAL_ID = ("SAKURA_SERVICE_PRINCIPAL_ID",)
ENV_PRINCIPAL_KEY_ID = ("SAKURA_SERVICE_PRINCIPAL_KEY_ID",)
ENV_PRIVATE_KEY = ("SAKURA_PRIVATE_KEY",)
ENV_PRIVATE_KEY_PATH = ("SAKURA_PRIVATE_KEY_PATH",)
ENV_TOKEN_ENDPOINT = ("SAKURA_TOKEN_ENDPOINT",)
DEFAULT_TOKEN_ENDPOINT = (
    "https://secure.sakura.ad.jp/cloud/api/iam/1.0/service-principals/oauth2/token"  # noqa: S105
)
MAX_PRIVATE_KEY_BYTES = 64 * 1024


def base_url_for_zone(zone: str) -> str:
    if not _ZONE.match(zone):
        raise SakuraConfigError(f"zone {zone!r} is not a Sakura zone name such as tk1a or is1a")
    return BASE_URL_TEMPLATE.format(zone=zone)


@dataclass(frozen=True)
class PrincipalSettings:
    """A service principal as configured (the key is checked when the client is built)."""

    principal_id: str
    key_id: str
    private_key: str = field(repr=False)
    """The key's PEM text."""
    key_source: str = ENV_PRIVATE_KEY[0]
    """Where the key came from (a variable, a file, a profile field), for messages."""
    token_endpoint: str = DEFAULT_TOKEN_ENDPOINT


@dataclass(frozen=True)
class SakuraConfig:
    """Credentials and endpoint of one Secret Manager account; repr never shows credentials."""

    access_token: str = field(default="", repr=False)
    access_token_secret: str = field(default="", repr=False)
    base_url: str = ""
    zone: str = DEFAULT_ZONE
    principal: PrincipalSettings | None = None
    """A service principal instead of the key pair."""

    @property
    def kind(self) -> str:
        """`service-principal` or `api-key`: what `doctor` and the logs name."""
        return "service-principal" if self.principal is not None else "api-key"

    def __post_init__(self) -> None:
        if self.principal is not None and (self.access_token or self.access_token_secret):
            raise SakuraConfigError(BOTH_KINDS)
        base = self.base_url or base_url_for_zone(self.zone)
        if not base.startswith(("http://", "https://")):
            raise SakuraConfigError(
                f"Secret Manager endpoint {base!r} must start with http:// or https://"
            )
        if "@" in base.split("/")[2]:
            raise SakuraConfigError(
                "the Secret Manager endpoint must not carry credentials; "
                "set SAKURA_ACCESS_TOKEN and SAKURA_ACCESS_TOKEN_SECRET instead"
            )
        object.__setattr__(self, "base_url", base.rstrip("/"))

    def __repr__(self) -> str:
        return f"SakuraConfig(base_url={self.base_url!r}, zone={self.zone!r}, credentials=<hidden>)"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SakuraConfig:
        """Read the official environment variables, then the usacloud profile."""
        source: Mapping[str, str] = os.environ if env is None else env
        explicit = bool(
            _first(source, ENV_ACCESS_TOKEN) and _first(source, ENV_ACCESS_TOKEN_SECRET)
        ) or bool(
            _first(source, ENV_PRINCIPAL_ID)
            and _first(source, ENV_PRINCIPAL_KEY_ID)
            and (_first(source, ENV_PRIVATE_KEY) or _first(source, ENV_PRIVATE_KEY_PATH))
        )
        if explicit and not _first(source, ENV_PROFILE):
            profile: Mapping[str, Any] = {}
        else:
            profile = _load_profile(source, use_real_home=env is None)
        token = _first(source, ENV_ACCESS_TOKEN) or _text(profile, "AccessToken")
        secret = _first(source, ENV_ACCESS_TOKEN_SECRET) or _text(profile, "AccessTokenSecret")
        zone = _first(source, ENV_ZONE) or _text(profile, "Zone") or DEFAULT_ZONE
        endpoint = _first(source, ENV_ENDPOINT) or _profile_endpoint(profile)
        principal = _principal(source, profile)
        if principal is not None:
            if token or secret:
                raise SakuraConfigError(BOTH_KINDS)
            return cls(base_url=endpoint, zone=zone, principal=principal)
        missing = [
            f"{names[0]} (or {names[1]})"
            for names, value in ((ENV_ACCESS_TOKEN, token), (ENV_ACCESS_TOKEN_SECRET, secret))
            if not value
        ]
        if missing:
            raise SakuraConfigError(
                "Sakura credentials are missing: set "
                + " and ".join(missing)
                + ", or a service principal (SAKURA_SERVICE_PRINCIPAL_ID, "
                "SAKURA_SERVICE_PRINCIPAL_KEY_ID, SAKURA_PRIVATE_KEY or SAKURA_PRIVATE_KEY_PATH), "
                "or name a usacloud profile with SAKURA_PROFILE"
            )
        return cls(access_token=token, access_token_secret=secret, base_url=endpoint, zone=zone)


BOTH_KINDS = (
    "both an API key (SAKURA_ACCESS_TOKEN / SAKURA_ACCESS_TOKEN_SECRET or the profile's "
    "AccessToken) and a service principal (SAKURA_SERVICE_PRINCIPAL_ID ... or the profile's "
    "ServicePrincipalID) are configured; keep one of them (a service principal is preferred)"
)


def _principal(env: Mapping[str, str], profile: Mapping[str, Any]) -> PrincipalSettings | None:
    """The service principal configured, None when none is; SakuraConfigError naming what is
    missing when one is only partly configured."""
    principal_id = _first(env, ENV_PRINCIPAL_ID) or _text(profile, "ServicePrincipalID")
    key_id = _first(env, ENV_PRINCIPAL_KEY_ID) or _text(profile, "ServicePrincipalKeyID")
    pem, where = _first(env, ENV_PRIVATE_KEY), ENV_PRIVATE_KEY[0]
    path = "" if pem else _first(env, ENV_PRIVATE_KEY_PATH)
    if not pem and not path:
        pem, where = _text(profile, "ServicePrivateKey"), "the profile's ServicePrivateKey"
        path = "" if pem else _text(profile, "ServicePrivateKeyPath")
    if not (principal_id or key_id or pem or path):
        return None
    if path:
        pem, where = read_private_key(path), path
    missing = [
        name
        for name, value in (
            ("SAKURA_SERVICE_PRINCIPAL_ID", principal_id),
            ("SAKURA_SERVICE_PRINCIPAL_KEY_ID", key_id),
            ("SAKURA_PRIVATE_KEY (or SAKURA_PRIVATE_KEY_PATH)", pem),
        )
        if not value
    ]
    if missing:
        raise SakuraConfigError(
            "the service principal is only partly configured: set " + " and ".join(missing)
        )
    endpoint = _first(env, ENV_TOKEN_ENDPOINT) or _text(profile, "TokenEndpoint")
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise SakuraConfigError(
            f"SAKURA_TOKEN_ENDPOINT {endpoint!r} must start with http:// or https://"
        )
    return PrincipalSettings(principal_id, key_id, pem, where, endpoint or DEFAULT_TOKEN_ENDPOINT)


def read_private_key(path: str) -> str:
    """The PEM text at `path` (SAKURA_PRIVATE_KEY_PATH); bounded, never quoted in errors."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_PRIVATE_KEY_BYTES + 1)
    except OSError as exc:
        raise SakuraConfigError(
            f"the private key file {path} cannot be read ({type(exc).__name__}); check "
            "SAKURA_PRIVATE_KEY_PATH and the file's permissions"
        ) from None
    if len(data) > MAX_PRIVATE_KEY_BYTES:
        raise SakuraConfigError(
            f"the private key file {path} is larger than {MAX_PRIVATE_KEY_BYTES} bytes: "
            "not a PEM private key"
        )
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise SakuraConfigError(
            f"the private key file {path} is not PEM text (a DER file? convert it with "
            "`openssl pkey -inform DER -in key.der -out key.pem`)"
        ) from None


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return ""


def _text(profile: Mapping[str, Any], key: str) -> str:
    value = profile.get(key)
    return value.strip() if isinstance(value, str) else ""


def _profile_endpoint(profile: Mapping[str, Any]) -> str:
    """`Endpoints` maps service names to URLs, e.g. {"secretmanager": "http://..."}."""
    endpoints = profile.get("Endpoints")
    if not isinstance(endpoints, dict):
        return ""
    for name, url in endpoints.items():
        if isinstance(name, str) and name.lower() == "secretmanager" and isinstance(url, str):
            return url.strip()
    return ""


def _load_profile(env: Mapping[str, str], *, use_real_home: bool) -> Mapping[str, Any]:
    named = _first(env, ENV_PROFILE)
    directory = _first(env, ENV_PROFILE_DIR)
    if directory:
        root = Path(directory)
    elif env.get("HOME"):
        root = Path(env["HOME"]) / ".usacloud"
    elif use_real_home:
        root = Path.home() / ".usacloud"
    else:
        return {}
    name = named or _current_profile(root)
    path = root / name / "config.json"
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. HOME not readable by this user
        raise SakuraConfigError(
            f"usacloud profile {path} cannot be looked at ({type(exc).__name__}); set "
            "SAKURA_ACCESS_TOKEN and SAKURA_ACCESS_TOKEN_SECRET, or SAKURA_PROFILE_DIR"
        ) from None
    if not found:
        if named:
            raise SakuraConfigError(f"usacloud profile {name!r} not found: {path} does not exist")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        # The reason only: a JSON error message could quote the file's content.
        raise SakuraConfigError(
            f"usacloud profile {path} cannot be read ({type(exc).__name__})"
        ) from None
    if not isinstance(data, dict):
        raise SakuraConfigError(f"usacloud profile {path} is not a JSON object")
    return data


def _current_profile(root: Path) -> str:
    try:
        name = (root / "current").read_text(encoding="utf-8").strip()
    except OSError:
        return "default"
    if not name or "/" in name or name in (".", ".."):
        return "default"
    return name
