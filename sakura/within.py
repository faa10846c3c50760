"""A whole answer within a deadline, on a blocking httpx.Client.

httpx's timeout bounds each read, not the whole answer: a peer that trickles bytes would
otherwise hold the pod in Init for as long as it likes. Shared by the init container's two
blocking clients (sidecar/broker_client.py, sakura/sync_reader.py); imports httpx alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


def read_within(
    client: httpx.Client,
    request: httpx.Request,
    auth: httpx.Auth | None,
    *,
    give_up_at: float,
    clock: Callable[[], float] = time.monotonic,
) -> httpx.Response:
    """Send `request` and read the whole answer by `give_up_at` (on `clock`), checking it
    between chunks: TimeoutError after it."""
    streamed = client.send(request, auth=auth, stream=True)
    try:
        chunks = []
        for chunk in streamed.iter_raw():
            if clock() > give_up_at:
                raise TimeoutError
            chunks.append(chunk)
    finally:
        streamed.close()
    return httpx.Response(
        streamed.status_code,
        headers=streamed.headers,
        content=b"".join(chunks),
        request=streamed.request,
    )
