"""Real servers for the init fetcher: the emulator over HTTP, a broker double over real TLS.

The broker double implements the wire protocol of the team brief and exists only for the init
fetcher's own error-mapping tests; the real broker is tested with the cluster by its owner.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contract import Broker, Direct, FileSpec, Plan, SecretRef
from contract.template import template_refs
from emulator import Emulator, EmulatorConfig, run_in_thread
from injector.operations.certs import KeyPair, generate_ca, issue_serving_cert
from sidecar.__main__ import main
from support.values import VAULT

ACCESS_TOKEN = "tok-sidecar-4d1f"
ACCESS_SECRET = "sec-sidecar-Pq7!x"
BROKER_TOKEN = "projected-sa-token-eyJhbGciOi"

# Distinctive values, so a test can search logs, stderr and messages for them.
DB = {"user": "app-user-Xk3", "pass": "db-pa55-Zq81-Hidden"}
API_V1 = "api-v1-Lk20xWq-Hidden"
API_V2 = "api-v2-Mq93yRt-Hidden"
PLAIN = "plain-Value-77xQ-Hidden"
NOT_JSON = "not-json-Value-55qP-Hidden"
ALL_VALUES = (DB["user"], DB["pass"], json.dumps(DB), API_V1, API_V2, PLAIN, NOT_JSON)

SEED: dict[str, Any] = {
    "vaults": [
        {
            "id": VAULT,
            "name": "sidecar-tests",
            "secrets": {"db": DB, "api": [API_V1, API_V2], "plain": PLAIN, "notjson": NOT_JSON},
        }
    ]
}


def secret_file(name: str, ref: str, mode: int = 0o400) -> FileSpec:
    return FileSpec(name, mode, secret=SecretRef.parse(ref))


def template_file(name: str, source: str, mode: int = 0o400) -> FileSpec:
    return FileSpec(name, mode, template=source, template_refs=template_refs(source))


def make_plan(directory: Path, *files: FileSpec, mode: str = "direct", **kw: Any) -> Plan:
    return Plan(
        files=files,
        directory=str(directory),
        mode=Broker() if mode == "broker" else Direct("sakura-creds"),
        vault_id=kw.pop("vault_id", VAULT),
        uid=kw.pop("uid", os.getuid()),  # chowning to oneself changes nothing
        gid=kw.pop("gid", os.getgid()),
        **kw,
    )


@dataclass
class Outcome:
    """What one run of the init container left behind."""

    code: int
    termination: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.termination.splitlines()


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every visible name (hidden ones too) with the bytes and permission bits it leads to."""
    return {
        name: ((directory / name).read_bytes(), stat.S_IMODE((directory / name).stat().st_mode))
        for name in visible(directory)
    }


def visible(directory: Path) -> list[str]:
    """The names an app lists, without the writer's own `..data` link and set directories."""
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith(".."))


def sets(directory: Path) -> list[str]:
    """The writer's set directories (`..YYYY_MM_DD_HH_MM_SS.<hex>`), oldest first."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("..2"))


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    return directory


@pytest.fixture
def termination_log(tmp_path: Path) -> Path:
    return tmp_path / "termination-log"


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(
        EmulatorConfig(access_token=ACCESS_TOKEN, access_token_secret=ACCESS_SECRET, seed=SEED)
    )


@pytest.fixture
def sakura_url(emulator: Emulator) -> Iterator[str]:
    with run_in_thread(emulator) as url:
        yield url


@pytest.fixture
def direct_env(sakura_url: str, termination_log: Path) -> dict[str, str]:
    """Direct mode as the webhook wires it, minus the plan (each test adds its own)."""
    return {
        "SAKURA_ACCESS_TOKEN": ACCESS_TOKEN,
        "SAKURA_ACCESS_TOKEN_SECRET": ACCESS_SECRET,
        "SAKURA_ENDPOINTS_SECRETMANAGER": sakura_url,
        "SAKURA_SECRETS_TERMINATION_LOG": str(termination_log),
        "SAKURA_SECRETS_DEADLINE": "5",
    }


def run_main(
    env: Mapping[str, str], capsys: pytest.CaptureFixture[str], termination_log: Path
) -> Outcome:
    if termination_log.exists():
        termination_log.unlink()
    code = main(dict(env))
    captured = capsys.readouterr()
    text = termination_log.read_text() if termination_log.exists() else ""
    return Outcome(code=code, termination=text, stderr=captured.err)


def assert_no_value(*texts: str) -> None:
    for text in texts:
        for value in ALL_VALUES:
            assert value not in text, f"a secret value leaked into: {text!r}"


# -- the broker double ------------------------------------------------------------------


@dataclass
class BrokerDouble:
    """The wire protocol over a real socket: token check, grants, versions, scripted answers."""

    values: dict[str, list[str]]
    grants: set[str]
    token: str = BROKER_TOKEN
    vault_id: str = VAULT
    script: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    unchanged: bool = True
    """Answer a held latest version with an `unchanged` item (False: with its value, as a
    broker before change-only reads did)."""

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/secrets", self.secrets, methods=["POST"])])

    async def secrets(self, request: Request) -> Response:
        raw = await request.body()
        self.requests.append(
            {"authorization": request.headers.get("authorization"), "body": raw.decode()}
        )
        if self.script:
            status, payload, headers = self.script.pop(0)
            return JSONResponse(payload, status_code=status, headers=headers)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "the token is not valid for audience sakura-secrets-injector")
        try:
            body = json.loads(raw)
            items = [(s["name"], s["version"]) for s in body["secrets"]]
        except (ValueError, KeyError, TypeError):
            return _error(400, "the body is not {vault_id, secrets: [{name, version}]}")
        if body.get("vault_id") != self.vault_id:
            return _error(404, f"vault {body.get('vault_id')} not found")
        answer = []
        for name, version in items:
            if name not in self.grants:
                return _error(
                    403,
                    f'serviceaccount shop/api may not get sakura-secrets.io secrets "{name}"; '
                    "grant it with a Role/RoleBinding (verb get, apiGroup sakura-secrets.io, "
                    f"resource secrets, resourceName {name})",
                )
            versions = self.values.get(name)
            if versions is None:
                return _error(404, f'secret "{name}" not found in vault {self.vault_id}')
            if version is not None and not 1 <= version <= len(versions):
                return _error(404, f'secret "{name}" has no version {version}')
            got = version or len(versions)
            item = {"name": name, "requested_version": version, "version": got}
            if self.unchanged and version is None and body.get("held", {}).get(name) == got:
                item["unchanged"] = True
            else:
                item["value"] = versions[got - 1]
            answer.append(item)
        return JSONResponse({"secrets": answer})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@dataclass(frozen=True)
class Tls:
    ca: KeyPair
    certfile: str
    keyfile: str


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    ca = generate_ca()
    served = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    directory = tmp_path_factory.mktemp("tls")
    certfile, keyfile = directory / "tls.crt", directory / "tls.key"
    certfile.write_bytes(served.cert_pem)
    keyfile.write_bytes(served.key_pem)
    os.chmod(keyfile, 0o600)
    return Tls(ca=ca, certfile=str(certfile), keyfile=str(keyfile))


@pytest.fixture
def broker() -> BrokerDouble:
    return BrokerDouble(
        values={
            "db": [json.dumps(DB)],
            "api": [API_V1, API_V2],
            "plain": [PLAIN],
            "notjson": [NOT_JSON],
            "ungranted": ["ungranted-Value-Hidden"],
        },
        grants={"db", "api", "plain", "notjson", "missing"},
    )


@pytest.fixture
def broker_url(broker: BrokerDouble, tls: Tls) -> Iterator[str]:
    with run_in_thread(broker.app(), ssl_certfile=tls.certfile, ssl_keyfile=tls.keyfile) as url:
        yield url


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(BROKER_TOKEN + "\n")
    return path


@pytest.fixture
def broker_env(
    broker_url: str, tls: Tls, token_file: Path, termination_log: Path
) -> dict[str, str]:
    return {
        "SAKURA_SECRETS_BROKER_URL": broker_url,
        "SAKURA_SECRETS_BROKER_CA": tls.ca.cert_pem.decode(),
        "SAKURA_SECRETS_TOKEN_FILE": str(token_file),
        "SAKURA_SECRETS_TERMINATION_LOG": str(termination_log),
        "SAKURA_SECRETS_DEADLINE": "5",
    }


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
