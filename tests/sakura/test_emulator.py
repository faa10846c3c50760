"""The emulator over HTTP: the API as the official mock answers it, and its knobs."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.sakura_kit import DB_PASSWORD_V1, DB_PASSWORD_V2, SECRET, TOKEN, VAULT, MakeClient

from emulator import Emulator, EmulatorConfig, run_in_thread
from emulator.server import listening_socket
from emulator.store import MAX_VALUE_BYTES
from injector.operations.certs import generate_ca, issue_serving_cert
from sakura import RateLimiter, SakuraClient, SakuraConfig

PREFIX = "/cloud/zone/is1a/api/cloud/1.1"
UNVEIL = f"/secretmanager/vaults/{VAULT}/secrets/unveil"
SECRETS = f"/secretmanager/vaults/{VAULT}/secrets"


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, auth=(TOKEN, SECRET), timeout=5) as client:
        yield client


def test_paths_with_and_without_prefix(http: httpx.Client) -> None:
    for prefix in ("", PREFIX):
        got = http.post(prefix + UNVEIL, json={"Secret": {"Name": "db-password"}})
        assert got.status_code == 200
        assert got.json() == {
            "Secret": {"Name": "db-password", "Version": 2, "Value": DB_PASSWORD_V2}
        }


def test_sdk_and_cli_styles_of_asking_for_latest(http: httpx.Client) -> None:
    sdk = http.post(UNVEIL, json={"Secret": {"Name": "db-password", "Value": ""}})
    cli = http.post(UNVEIL, json={"Secret": {"Name": "db-password", "Version": 0}})
    null = http.post(UNVEIL, json={"Secret": {"Name": "db-password", "Version": None}})
    pinned = http.post(UNVEIL, json={"Secret": {"Name": "db-password", "Version": 1}})
    assert [r.json()["Secret"]["Version"] for r in (sdk, cli, null, pinned)] == [2, 2, 2, 1]
    assert pinned.json()["Secret"]["Value"] == DB_PASSWORD_V1


def test_not_found_bodies(http: httpx.Client) -> None:
    secret = http.post(UNVEIL, json={"Secret": {"Name": "x"}})
    version = http.post(UNVEIL, json={"Secret": {"Name": "db-password", "Version": 3}})
    vault = http.get("/secretmanager/vaults/999/secrets")
    assert (secret.status_code, secret.json()) == (404, {"error": 'secret "x" not found'})
    assert (version.status_code, version.json()) == (
        404,
        {"error": 'secret "db-password" not found'},
    )
    assert (vault.status_code, vault.json()) == (404, {"error": "vault not found"})
    assert http.get("/secretmanager/vaults/999").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"Name": "x"}',
        b'{"Secret": {"Value": "v"}}',
        b'{"Secret": {"Name": "", "Value": "v"}}',
        b'{"Secret": {"Name": "x", "Value": 5}}',
        json.dumps({"Secret": {"Name": "x" * 256, "Value": "v"}}).encode(),
    ],
)
def test_schema_breaking_bodies_are_400(http: httpx.Client, body: bytes) -> None:
    got = http.post(SECRETS, content=body, headers={"Content-Type": "application/json"})
    assert got.status_code == 400 and isinstance(got.json()["error"], str)


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        (SECRETS, "POST", b'{"Secret": {"Name": "x", "Value": "\\ud800"}}'),
        (SECRETS, "POST", b'{"Secret": {"Name": "\\udfff", "Value": "v"}}'),
        (SECRETS, "DELETE", b'{"Secret": {"Name": "\\ud800"}}'),
        (UNVEIL, "POST", b'{"Secret": {"Name": "\\ud800"}}'),
        (SECRETS, "POST", b'{"Secret": {"Name": "x", "Value": "v", "Extra": NaN}}'),
    ],
)
def test_text_that_is_not_utf8_or_json_is_400_and_stores_nothing(
    http: httpx.Client, path: str, method: str, body: bytes
) -> None:
    """A lone surrogate is valid JSON escape syntax but no text; NaN is no JSON at all."""
    got = http.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert got.status_code == 400 and isinstance(got.json()["error"], str)
    listed = http.get(SECRETS)
    assert listed.status_code == 200
    assert {s["Name"] for s in listed.json()["Secrets"]} == {"db-password", "api"}


def test_bad_versions_are_400(http: httpx.Client) -> None:
    for version in ("1", -1, True, 1.5):
        got = http.post(UNVEIL, json={"Secret": {"Name": "db-password", "Version": version}})
        assert got.status_code == 400, version


def test_value_size_limit(http: httpx.Client) -> None:
    fits = http.post(
        SECRETS, json={"Secret": {"Name": "big", "Value": "é" * (MAX_VALUE_BYTES // 2)}}
    )
    over = http.post(
        SECRETS, json={"Secret": {"Name": "big", "Value": "a" * (MAX_VALUE_BYTES + 1)}}
    )
    assert fits.status_code == 201 and fits.json() == {
        "Secret": {"Name": "big", "LatestVersion": 1}
    }
    assert over.status_code == 400 and "65536" in over.json()["error"]


def test_auth_is_required(url: str) -> None:
    for auth in (None, (TOKEN, "nope"), ("nope", SECRET)):
        got = httpx.get(url + "/secretmanager/vaults", auth=auth)
        assert got.status_code == 401
        assert got.json()["error_msg"] == "invalid access token or secret"


def test_stats_and_runtime_faults_over_http(http: httpx.Client, emu: Emulator) -> None:
    http.get("/secretmanager/vaults")
    http.post(UNVEIL, json={"Secret": {"Name": "api"}})
    stats = http.get("/_emulator/stats").json()
    assert stats["calls"] == {"total": 2, "list_vaults": 1, "unveil": 1}
    assert stats["statuses"] == {"200": 2}
    set_faults = http.post("/_emulator/faults", json={"faults": [{"code": 503, "rate": 1.0}]})
    assert set_faults.json() == {"faults": [{"code": 503, "rate": 1.0}]}
    assert http.get("/secretmanager/vaults").status_code == 503
    http.post("/_emulator/faults", json={"faults": [], "fail_next": {"code": 502, "count": 1}})
    assert [http.get("/secretmanager/vaults").status_code for _ in range(2)] == [502, 200]
    assert http.post("/_emulator/faults", json={"faults": [{"code": 503}]}).status_code == 400
    assert http.delete("/_emulator/stats").status_code == 204
    assert emu.knobs.calls["total"] == 0


def test_rate_limit_and_latency_knobs(http: httpx.Client) -> None:
    http.post("/_emulator/knobs", json={"rate_limit": 2, "rate_limit_window": 60, "latency": 0.2})
    started = time.monotonic()
    codes = [http.get("/secretmanager/vaults") for _ in range(3)]
    assert time.monotonic() - started >= 0.6
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert 59 <= int(codes[2].headers["Retry-After"]) <= 60


def tls_pair(directory: Path) -> tuple[str, str, str]:
    """A CA and a certificate for 127.0.0.1 signed by it, made by the injector's own code."""
    ca = generate_ca()
    leaf = issue_serving_cert(ca, [], ["127.0.0.1"])
    cert_path, key_path, ca_path = (
        directory / "tls.crt",
        directory / "tls.key",
        directory / "ca.crt",
    )
    cert_path.write_bytes(leaf.cert_pem)
    key_path.write_bytes(leaf.key_pem)
    ca_path.write_bytes(ca.cert_pem)
    return str(cert_path), str(key_path), str(ca_path)


async def test_tls(tmp_path: Path, emu: Emulator) -> None:
    cert, key, ca = tls_pair(tmp_path)
    with run_in_thread(emu, ssl_certfile=cert, ssl_keyfile=key) as url:
        assert url.startswith("https://127.0.0.1:")
        config = SakuraConfig(TOKEN, SECRET, base_url=url)
        async with SakuraClient(config, verify=ca, limiter=RateLimiter(6000, 10)) as c:
            assert (await c.unveil(VAULT, "db-password")).value == DB_PASSWORD_V2


def test_run_in_thread_serves_any_asgi_app() -> None:
    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"hi"})  # type: ignore[operator]

    with run_in_thread(app) as url:
        assert httpx.get(url).text == "hi"
    with run_in_thread(EmulatorConfig(access_token="a", access_token_secret="b")) as url:
        assert httpx.get(url + "/secretmanager/vaults", auth=("a", "b")).json()["Count"] == 0


async def test_served_connections_send_without_nagle_delay() -> None:
    """asyncio sets TCP_NODELAY on what it accepts only from a socket whose proto says TCP;
    without it every answer written in pieces waited ~40 ms for the client's delayed ACK."""
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    listening = listening_socket("127.0.0.1", 0)
    server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
    async with server:
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        assert await asyncio.wait_for(accepted, 10) != 0
        writer.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_command_line(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps({"vaults": [{"id": VAULT, "name": "d", "secrets": {"a": ["1", "2"]}}]})
    )
    port = free_port()
    env = {**os.environ, "SAKURA_ACCESS_TOKEN_SECRET": "cli-secret"}
    command = [sys.executable, "-m", "emulator", "--port", str(port), "--access-token", "cli"]
    command += ["--seed", str(seed), "--secret", f"{VAULT}/b=x", "--secret", "b=y"]
    command += ["--latency", "10ms", "--fault", "503:0", "--log-level", "warning"]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(command, cwd=root, env=env, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                got = httpx.get(base + SECRETS, auth=("cli", "cli-secret"))
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise AssertionError("the emulator did not start")
        assert got.json()["Secrets"] == [
            {"Name": "a", "LatestVersion": 2},
            {"Name": "b", "LatestVersion": 2},
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bad = subprocess.run(
        [sys.executable, "-m", "emulator", "--port", "1"],
        cwd=root,
        env={k: v for k, v in os.environ.items() if not k.startswith("SAKURA")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--access-token" in bad.stderr


async def test_emulator_counts_client_calls(make_client: MakeClient, emu: Emulator) -> None:
    async with make_client() as c:
        for _ in range(3):
            await c.unveil(VAULT, "api")
        await c.list_secrets(VAULT)
    assert emu.knobs.calls == {"total": 4, "unveil": 3, "list_secrets": 1}


def test_keys_are_added_and_revoked_over_http(url: str) -> None:
    """A rotation's steps: key 2 accepted beside key 1, then key 1 refused like a wrong key."""
    vaults = url + "/secretmanager/vaults"
    assert httpx.get(vaults, auth=("key-2", "secret-2")).status_code == 401
    added = httpx.post(
        url + "/_emulator/keys",
        json={"add": [{"access_token": "key-2", "access_token_secret": "secret-2"}]},
    )
    assert added.json()["accepted"] == [TOKEN, "key-2"]
    assert "secret-2" not in added.text
    assert httpx.get(vaults, auth=("key-2", "secret-2")).status_code == 200
    assert httpx.get(vaults, auth=("key-2", SECRET)).status_code == 401
    assert httpx.get(vaults, auth=(TOKEN, SECRET)).status_code == 200
    revoked = httpx.post(url + "/_emulator/keys", json={"revoke": [TOKEN]})
    assert revoked.json()["revoked"] == [TOKEN] and revoked.json()["accepted"] == ["key-2"]
    refused = httpx.get(vaults, auth=(TOKEN, SECRET))
    assert refused.status_code == 401
    assert refused.json()["error_msg"] == "invalid access token or secret"
    assert httpx.get(url + "/_emulator/keys").json()["calls"] == {"key-2": 1, TOKEN: 1}
    bad = httpx.post(url + "/_emulator/keys", json={"add": [{"access_token": "x"}]})
    assert bad.status_code == 400 and "access_token_secret" in bad.json()["error"]
