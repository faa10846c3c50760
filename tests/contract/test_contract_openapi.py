"""Every request the client sends and every answer the emulator gives, checked against the spec.

The spec is Sakura's published OpenAPI definition (copied here with its NOTICE). It defines
success answers only; error answers are checked against the shapes Sakura's official mock and
older API use, since the spec leaves them out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest
from openapi_core import OpenAPI
from openapi_core.exceptions import OpenAPIError
from support.openapi_exchange import OpenAPIRequest, OpenAPIResponse

from emulator import Emulator, EmulatorConfig, run_in_thread
from sakura import Backoff, RateLimiter, SakuraClient, SakuraConfig, SakuraError

HERE = Path(__file__).parent
TOKEN, SECRET, VAULT = "contract-token", "contract-secret", "110000000001"
PREFIX = "/cloud/zone/tk1a/api/cloud/1.1"
ERROR_SCHEMA = {
    "oneOf": [
        {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        {
            "type": "object",
            "required": ["is_fatal", "status", "error_code", "error_msg"],
            "properties": {
                "is_fatal": {"type": "boolean"},
                "serial": {"type": "string"},
                "status": {"type": "string"},
                "error_code": {"type": "string"},
                "error_msg": {"type": "string"},
            },
        },
    ]
}


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests to the network and keeps each (request, response) pair."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.exchanges.append((request, response))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def emu() -> Emulator:
    seed = {"vaults": [{"id": VAULT, "name": "c", "secrets": {"a": ["1", "2"], "j": {"k": 1}}}]}
    return Emulator(EmulatorConfig(access_token=TOKEN, access_token_secret=SECRET, seed=seed))


@pytest.fixture
def url(emu: Emulator) -> Iterator[str]:
    with run_in_thread(emu) as base:
        yield base


@pytest.fixture
def spec(url: str) -> OpenAPI:
    data = json.loads((HERE / "secretmanager-openapi.json").read_text(encoding="utf-8"))
    data["servers"] += [{"url": url + PREFIX}, {"url": url}]
    return OpenAPI.from_dict(data)


def operations(spec_data: dict[str, Any]) -> dict[tuple[str, str], set[int]]:
    return {
        (method, path): {int(code) for code in op["responses"]}
        for path, item in spec_data["paths"].items()
        for method, op in item.items()
    }


def check_response(spec: OpenAPI, request: httpx.Request, response: httpx.Response) -> None:
    """Success answers against the spec, error answers against the known error shapes."""
    if response.status_code < 400:
        spec.validate_response(OpenAPIRequest(request), OpenAPIResponse(response))
        return
    assert response.status_code in {400, 401, 404, 429, 500, 502, 503}, response.status_code
    assert response.headers["content-type"] == "application/json"
    jsonschema.validate(response.json(), ERROR_SCHEMA)
    if response.status_code == 429:
        assert int(response.headers["retry-after"]) >= 1


async def test_client_requests_and_emulator_answers_match_the_spec(
    spec: OpenAPI, url: str, emu: Emulator
) -> None:
    recorder = Recorder()
    config = SakuraConfig(TOKEN, SECRET, base_url=url + PREFIX)
    client = SakuraClient(
        config,
        transport=recorder,
        limiter=RateLimiter(60_000, 100),
        backoff=Backoff(base=0.01, cap=0.05),
        deadline=3,
    )
    async with client as c:
        await c.unveil(VAULT, "a")
        await c.unveil(VAULT, "a", 1)
        await c.list_secrets(VAULT)
        await c.list_vaults()
        await c.create(VAULT, "b", "value")
        await c.delete(VAULT, "b")
        emu.knobs.fail_next(503, 1)
        await c.unveil(VAULT, "j")
        for call in (
            c.unveil(VAULT, "zz"),
            c.unveil(VAULT, "a", 5),
            c.unveil("999999999999", "a"),
            c.delete(VAULT, "zz"),
            c.create(VAULT, "big", "x" * 70_000),
        ):
            with pytest.raises(SakuraError):
                await call
    async with SakuraClient(
        SakuraConfig(TOKEN, "wrong", base_url=url + PREFIX), transport=recorder
    ) as bad:
        with pytest.raises(SakuraError):
            await bad.list_vaults()

    seen = set()
    for request, response in recorder.exchanges:
        spec.validate_request(OpenAPIRequest(request))
        check_response(spec, request, response)
        seen.add((request.method, response.status_code))
    assert {("POST", 200), ("POST", 201), ("DELETE", 204), ("GET", 200)} <= seen
    assert {("POST", 404), ("POST", 503), ("POST", 400), ("GET", 401), ("DELETE", 404)} <= seen


def test_emulator_answers_other_clients_within_the_spec(spec: OpenAPI, url: str) -> None:
    """The SDK's unveil (with `"Value": ""`), the CLI's (`"Version": 0`), get-vault, 429."""
    calls: list[tuple[str, str, Any]] = [
        (
            "POST",
            f"/secretmanager/vaults/{VAULT}/secrets/unveil",
            {"Secret": {"Name": "a", "Value": ""}},
        ),
        (
            "POST",
            f"/secretmanager/vaults/{VAULT}/secrets/unveil",
            {"Secret": {"Name": "a", "Version": 0}},
        ),
        ("GET", f"/secretmanager/vaults/{VAULT}", None),
        ("GET", "/secretmanager/vaults/123", None),
        ("POST", f"/secretmanager/vaults/{VAULT}/secrets", {"Secret": {"Name": "a"}}),
    ]
    with httpx.Client(auth=(TOKEN, SECRET)) as http:
        httpx.post(
            url + "/_emulator/knobs", json={"rate_limit": 2 * len(calls), "rate_limit_window": 60}
        )
        for prefix in ("", PREFIX):
            for method, path, body in calls:
                response = http.request(method, url + prefix + path, json=body)
                check_response(spec, response.request, response)
        throttled = http.get(url + "/secretmanager/vaults")
        assert throttled.status_code == 429
        check_response(spec, throttled.request, throttled)
        assert urlsplit(str(throttled.request.url)).path == "/secretmanager/vaults"


def test_the_spec_covers_the_operations_we_use() -> None:
    data = json.loads((HERE / "secretmanager-openapi.json").read_text(encoding="utf-8"))
    ops = operations(data)
    assert ops[("get", "/secretmanager/vaults")] == {200}
    assert ops[("post", "/secretmanager/vaults/{vault_resource_id}/secrets/unveil")] == {200}
    assert ops[("post", "/secretmanager/vaults/{vault_resource_id}/secrets")] == {201}
    assert ops[("delete", "/secretmanager/vaults/{vault_resource_id}/secrets")] == {204}
    assert (HERE / "NOTICE").read_text(encoding="utf-8").startswith("secretmanager-openapi.json")


def test_the_checks_have_teeth(spec: OpenAPI, url: str) -> None:
    """A body that breaks the spec is caught, so the passing checks above mean something."""
    path = f"{url}{PREFIX}/secretmanager/vaults/{VAULT}/secrets"
    auth = {"Authorization": "Basic " + base64.b64encode(f"{TOKEN}:{SECRET}".encode()).decode()}
    bad = httpx.Request("POST", path, json={"Secret": {"Value": 1}}, headers=auth)
    with pytest.raises(OpenAPIError):
        spec.validate_request(OpenAPIRequest(bad))
    good = httpx.Request("POST", path, json={"Secret": {"Name": "a", "Value": "v"}}, headers=auth)
    spec.validate_request(OpenAPIRequest(good))
    wrong = httpx.Response(201, json={"Secret": {"Name": "a"}}, request=good)
    with pytest.raises(OpenAPIError):
        spec.validate_response(OpenAPIRequest(good), OpenAPIResponse(wrong))
