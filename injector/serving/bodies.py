"""Reading a request body with a size cap, for every endpoint of the injector."""

from __future__ import annotations

from starlette.requests import Request

from injector.serving.errors import BodyTooLarge


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it (or its declared length) passes `limit` bytes.

    Checking while streaming keeps a client from making the server buffer an unbounded body.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
