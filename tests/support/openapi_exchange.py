"""httpx requests and responses in the shape openapi-core validates (the contract tests')."""

from __future__ import annotations

import httpx
from openapi_core.datatypes import RequestParameters


class OpenAPIRequest:
    """An httpx request as openapi-core reads it."""

    def __init__(self, request: httpx.Request) -> None:
        self.host_url = f"{request.url.scheme}://{request.url.netloc.decode()}"
        self.path = request.url.path
        self.method = request.method.lower()
        self.parameters = RequestParameters(query=dict(request.url.params), header=request.headers)
        self.content_type = request.headers.get("content-type", "")
        self.body: bytes | None = request.content or None
        self.full_url_pattern = str(request.url.copy_with(query=None))


class OpenAPIResponse:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.content_type = response.headers.get("content-type", "")
        self.data: bytes | None = response.content or None
