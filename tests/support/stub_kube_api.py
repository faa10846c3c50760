"""A tiny Kubernetes API on loopback HTTP: TokenReviews, pod reads and SubjectAccessReviews.

The broker's reviewers talk to it through the real kubernetes client (serialization, paths,
the ApiClient they were given), answering what a test sets; the local cluster's tests prove
the same against a real API server.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client as k8s


@dataclass
class StubApi:
    """What the stub answers, and every request it got as (method, path, JSON body)."""

    token_status: dict[str, Any] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    grants: set[tuple[str, str]] = field(default_factory=set)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def stub_api_server(stub: StubApi) -> Iterator[k8s.ApiClient]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stub.requests.append(("POST", self.path, body))
            if self.path == "/apis/authentication.k8s.io/v1/tokenreviews":
                self._answer(201, {**body, "status": stub.token_status})
            elif self.path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
                attrs = body["spec"]["resourceAttributes"]
                allowed = (attrs["resource"], attrs["name"]) in stub.grants
                self._answer(201, {**body, "status": {"allowed": allowed}})
            else:
                self._answer(404, {"kind": "Status", "code": 404})

        def do_GET(self) -> None:
            stub.requests.append(("GET", self.path, None))
            parts = self.path.split("/")  # /api/v1/namespaces/NS/pods/NAME
            found = None
            if len(parts) == 7 and parts[1:4] == ["api", "v1", "namespaces"]:
                found = stub.pods.get((parts[4], parts[6]))
            if found is None:
                self._answer(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            else:
                self._answer(200, found)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield k8s.ApiClient(configuration)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
