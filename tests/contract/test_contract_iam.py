"""The emulator's IAM token endpoint checked against Sakura's published definition.

Requests (a form with grant_type and assertion) and every answer the definition declares
(200, 400, 401, 429) are validated with openapi-core against iam-token-openapi.json (copied
here with its NOTICE), so the emulator cannot drift from what Sakura answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.exceptions import OpenAPIError
from support.openapi_exchange import OpenAPIRequest, OpenAPIResponse
from support.principal_kit import assertion, seed_principal

from emulator import Emulator, EmulatorConfig, run_in_thread
from emulator.principals import GRANT_TYPE

HERE = Path(__file__).parent
PATH = "/service-principals/oauth2/token"
PREFIX = "/cloud/api/iam/1.0"


@pytest.fixture
def url() -> Iterator[str]:
    seed = {"vaults": [], "service_principals": [seed_principal()]}
    with run_in_thread(Emulator(EmulatorConfig("t", "s", seed=seed))) as base:
        yield base


@pytest.fixture
def spec(url: str) -> OpenAPI:
    data = json.loads((HERE / "iam-token-openapi.json").read_text(encoding="utf-8"))
    data["servers"] += [{"url": url + PREFIX}, {"url": url}]
    return OpenAPI.from_dict(data)


def test_every_declared_answer_matches_the_definition(spec: OpenAPI, url: str) -> None:
    seen = set()
    for base in (url, url + PREFIX):
        token_url = base + PATH
        answers = [
            httpx.post(
                token_url, data={"grant_type": GRANT_TYPE, "assertion": assertion(token_url)}
            ),
            httpx.post(
                token_url,
                data={"grant_type": GRANT_TYPE, "assertion": assertion(token_url, kid="x")},
            ),
            httpx.post(token_url, data={"grant_type": "password", "assertion": "x"}),
        ]
        httpx.post(url + "/_emulator/knobs", json={"rate_limit": 0, "rate_limit_window": 60})
        answers.append(
            httpx.post(
                token_url, data={"grant_type": GRANT_TYPE, "assertion": assertion(token_url)}
            )
        )
        httpx.post(url + "/_emulator/knobs", json={"rate_limit": None})
        for answer in answers:
            request = OpenAPIRequest(answer.request)
            if answer.status_code != 400:  # the 400 is the answer to a request the spec refuses
                spec.validate_request(request)
            spec.validate_response(request, OpenAPIResponse(answer))
            seen.add(answer.status_code)
    assert seen == {200, 400, 401, 429}


def test_a_wrong_answer_shape_would_be_caught(spec: OpenAPI, url: str) -> None:
    """The check above can fail: an answer without the required `detail` is refused."""
    token_url = url + PATH
    answer = httpx.post(token_url, data={"grant_type": GRANT_TYPE, "assertion": "a.b"})
    broken = httpx.Response(
        401,
        json={"type": "about:blank", "status": 401, "title": "x"},
        request=answer.request,
    )
    with pytest.raises(OpenAPIError, match="detail"):
        spec.validate_response(OpenAPIRequest(answer.request), OpenAPIResponse(broken))
