"""The shell: read what the checks need from the cluster, with the operator's credentials.

GETs only, but for the workload's server-side dry run (dryRun=All: nothing is stored) and the
SubjectAccessReviews. Never the sakura-api-key Secret; the TLS Secret only when no replica
presented its certificate (its certificates are kept, the key is dropped at once).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import time
from collections.abc import Sequence

from kubernetes import client as k8s
from urllib3.exceptions import HTTPError

from injector.broker.access import AccessReviewer
from injector.broker.can_i import Answer, can_i
from injector.kube import KUBE_TIMEOUT, server_version
from injector.operations.doctor.facts import (
    CERTS,
    INJECTOR_SELECTOR,
    TLS_SECRET,
    Facts,
    Install,
    Json,
    Presented,
    Readiness,
    container_port,
)
from injector.operations.doctor.workload import DryRun, Preview, Workload

Reply = tuple[int, Json]
"""An HTTP status and a JSON body."""
PROBE_PORT = 8081
CONNECT_TIMEOUT = 3.0


class ClusterError(Exception):
    """The API server answered a GET with an error other than 404 (the message says which)."""


class Cluster:
    """Raw JSON calls through the kubernetes client (any API version the server serves)."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api

    def call(self, method: str, path: str, body: Json | None = None, **query: str) -> Reply:
        """The HTTP status and the JSON body (an empty dict when it is not JSON)."""
        serialized = self.api.param_serialize(
            method,
            path,
            query_params=list(query.items()),
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*serialized, _request_timeout=KUBE_TIMEOUT)
        response.read()  # type: ignore[no-untyped-call]
        try:
            data = json.loads(response.data or b"{}")
        except ValueError:
            data = {}
        return int(response.status), data if isinstance(data, dict) else {}

    def get(self, path: str, **query: str) -> Json | None:
        """The object, or None when the API server answers 404."""
        status, data = self.call("GET", path, None, **query)
        if status == 404:
            return None
        if not 200 <= status < 300:
            raise ClusterError(f"GET {path}: HTTP {status} {data.get('message', '')}".strip())
        return data


def gather(api: k8s.ApiClient, install: Install, namespace: str) -> Facts:
    cluster = Cluster(api)
    ns, name = install.namespace, install.name
    core, apps = f"/api/v1/namespaces/{ns}", f"/apis/apps/v1/namespaces/{ns}/deployments"
    deployment = cluster.get(f"{apps}/{name}")
    endpoints = cluster.get(f"{core}/endpoints/{name}")
    presented = tuple(_presented(endpoints, install.host))
    tls_certificate = tls_ca = ""
    if not any(p.der for p in presented):
        tls_certificate, tls_ca = _tls_secret(cluster, f"{core}/secrets/{TLS_SECRET}")
    api_endpoints = cluster.get("/api/v1/namespaces/default/endpoints/kubernetes") or {}
    policies: tuple[Json, ...] = ()
    namespace_object = None
    if namespace:
        namespace_object = cluster.get(f"/api/v1/namespaces/{namespace}")
        listed = cluster.get(f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies")
        policies = tuple((listed or {}).get("items") or [])
    injector_ns = cluster.get(f"/api/v1/namespaces/{ns}") or {}
    return Facts(
        install=install,
        now=time.time(),
        server_version=server_version(api),
        webhook=cluster.get(
            f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}"
        ),
        deployment=deployment,
        certs_deployment=cluster.get(f"{apps}/{CERTS}"),
        pdb=cluster.get(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}")
        or cluster.get(f"/apis/policy/v1beta1/namespaces/{ns}/poddisruptionbudgets/{name}"),
        service=cluster.get(f"{core}/services/{name}"),
        endpoints=endpoints,
        network_policy=cluster.get(
            f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}"
        ),
        tls_certificate=tls_certificate,
        tls_ca=tls_ca,
        presented=presented,
        readiness=tuple(_readiness(cluster, ns, container_port(deployment, "probes", PROBE_PORT))),
        api_server_addresses=tuple(
            a["ip"] for s in api_endpoints.get("subsets") or [] for a in s.get("addresses") or []
        ),
        injector_namespace_labels=injector_ns.get("metadata", {}).get("labels") or {},
        namespace=namespace,
        namespace_object=namespace_object,
        namespace_policies=policies,
    )


def _presented(endpoints: Json | None, host: str) -> list[Presented]:
    """The certificate each ready endpoint presents on its webhook port, where reachable."""
    found = []
    for subset in (endpoints or {}).get("subsets") or []:
        ports = [p["port"] for p in subset.get("ports") or [] if p.get("name") == "webhook"]
        for address in subset.get("addresses") or []:
            for port in ports:
                found.append(_certificate(address["ip"], port, host))
    return found


def _certificate(ip: str, port: int, host: str) -> Presented:
    where = f"{ip}:{port}"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # read what it presents; tls.ca_bundle verifies it
    try:
        with socket.create_connection((ip, port), timeout=CONNECT_TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname=host) as connection:
                der = connection.getpeercert(binary_form=True)
    except OSError as error:
        return Presented(where, error=str(error) or type(error).__name__)
    return Presented(where, der=der or b"")


def _tls_secret(cluster: Cluster, path: str) -> tuple[str, str]:
    try:
        data = (cluster.get(path) or {}).get("data") or {}
    except ClusterError:
        return "", ""
    decoded = [
        base64.b64decode(data.get(k, "")).decode("ascii", "replace") for k in ("tls.crt", "ca.crt")
    ]
    return decoded[0], decoded[1]


def _readiness(cluster: Cluster, ns: str, port: int) -> list[Readiness]:
    listed = cluster.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=INJECTOR_SELECTOR) or {}
    answers = []
    for pod in listed.get("items") or []:
        name = pod["metadata"]["name"]
        if pod.get("status", {}).get("phase") != "Running":
            continue
        path = f"/api/v1/namespaces/{ns}/pods/{name}:{port}/proxy/readyz"
        try:
            status, body = cluster.call("GET", path)
        except (OSError, HTTPError) as error:
            answers.append(Readiness(name, error=str(error)))
            continue
        if body.get("kind") == "Status" or "status" not in body:
            # the API server's own error (no route to the pod), not the replica's answer
            answers.append(Readiness(name, error=f"HTTP {status} {body.get('message', '')}"))
        else:
            answers.append(Readiness(name, status, body))
    return answers


def deployment(api: k8s.ApiClient, namespace: str, name: str) -> Json | None:
    return Cluster(api).get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")


def namespace_labels(api: k8s.ApiClient, namespace: str) -> dict[str, str]:
    found = Cluster(api).get(f"/api/v1/namespaces/{namespace}") or {}
    return dict(found.get("metadata", {}).get("labels") or {})


def access_answers(api: k8s.ApiClient, given: Workload, seen: Preview) -> Sequence[Answer] | None:
    """`can-i`'s answers for the plan's vault and secrets (None when there is no plan)."""
    if seen.plan is None:
        return None
    names = [s.name for s in seen.plan.secrets()]
    return asyncio.run(
        can_i(AccessReviewer(api), given.namespace, seen.service_account, seen.plan.vault_id, names)
    )


def dry_run(api: k8s.ApiClient, given: Workload) -> DryRun:
    """Create the pod with dryRun=All: the API server calls the installed webhook, stores
    nothing."""
    status, body = Cluster(api).call(
        "POST", f"/api/v1/namespaces/{given.namespace}/pods", given.pod, dryRun="All"
    )
    if 200 <= status < 300:
        return DryRun(created=body)
    return DryRun(refusal=str(body.get("message") or f"HTTP {status}"))
