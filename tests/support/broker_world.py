"""The broker's cluster tests' world: namespaces, grants, bound tokens, the broker over TLS.

The cluster comes from $KUBECONFIG (scripts/test always sets it). Each session makes its own
namespaces (random suffix), ServiceAccounts, RBAC grants and Pending pods to bind tokens to;
the fixtures that do it are in tests/broker/conftest.py, built from the parts here.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import Any

import httpx
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from contract import Broker, Direct, FileSpec, Plan, SecretRef
from emulator.server import run_in_thread
from injector.broker.tuning import BrokerTuning
from injector.kube import api_client as kube_api_client
from injector.operations.wiring import BrokerParts, build_broker
from sakura import SakuraConfig
from support.values import OTHER_VAULT, VAULT

MISSING_VAULT = "999999999999"
"""Granted to app in namespace A, but Sakura has no such vault."""
AUDIENCE = "sakura-secrets-injector"
EMULATOR_TOKEN = "emulator-access-token"
EMULATOR_SECRET = "emulator-access-secret"
# Distinctive values, random per run: the leak tests search every log, metric and error body
# for them, so a value that leaked would be found whatever it is (none is written in the code).
_RUN = token_hex(4)
VALUES = {
    name: [f"{name}-v{i}-{token_hex(4)}{_RUN}-VALUE" for i in range(1, count + 1)]
    for name, count in (
        ("db", 2),
        ("api", 1),
        ("other", 1),
        ("cfg", 1),
        ("tls", 1),
        ("extra", 1),
        ("never-fetched", 1),
    )
}
ALL_VALUES = [v for versions in VALUES.values() for v in versions]
GRANTED_IN_A = [
    *(f"{VAULT}/{name}" for name in ["db", "api", "cfg", "tls", "extra", "never-fetched"]),
    f"{OTHER_VAULT}/db",
    f"{MISSING_VAULT}/db",
]
"""Pairs `VAULT_ID/NAME`, as the contract grants secrets."""
GRANTED_IN_B = [f"{VAULT}/other"]
VAULTS_IN_A = [VAULT, OTHER_VAULT, MISSING_VAULT]
VAULTS_IN_B = [VAULT]
"""So `other`, granted in B, opens `other` in VAULT only, never in OTHER_VAULT."""
PAIRS_OF_CROSS = [f"{VAULT}/db", f"{OTHER_VAULT}/stripe"]
VAULTS_OF_CROSS = [VAULT, OTHER_VAULT]
"""ServiceAccount `cross` in namespace A: both vaults, one pair in each, never `db` in OTHER."""


@dataclass
class World:
    """Namespaces, ServiceAccounts with grants, and pods their tokens are bound to."""

    api: k8s.ApiClient
    ns_a: str
    ns_b: str
    pods: dict[tuple[str, str], k8s.V1Pod] = field(default_factory=dict)

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    def service_account(self, namespace: str, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.core.create_namespaced_service_account(
                namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
            )

    def grant(
        self,
        namespace: str,
        service_account: str,
        pairs: list[str] | None,
        vaults: list[str],
    ) -> k8s.V1Role:
        """Exactly the Role/RoleBinding docs/broker.md tells admins to write.

        `pairs` are `VAULT_ID/NAME`; None writes the `secrets` rule without resourceNames
        (every name, in the granted vaults only). Returns the Role the API server stored.
        """
        bare = [p for p in pairs or () if "/" not in p]
        if bare:
            raise ValueError(f"grant secrets as pairs VAULT_ID/NAME, not the bare names {bare}")
        rbac = k8s.RbacAuthorizationV1Api(self.api)
        name = f"read-{service_account}"
        role = rbac.create_namespaced_role(
            namespace,
            k8s.V1Role(
                metadata=k8s.V1ObjectMeta(name=name),
                rules=[
                    k8s.V1PolicyRule(
                        api_groups=["sakura-secrets.io"],
                        resources=[resource],
                        resource_names=names,
                        verbs=["get"],
                    )
                    for resource, names in (("vaults", vaults), ("secrets", pairs))
                ],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            k8s.V1RoleBinding(
                metadata=k8s.V1ObjectMeta(name=name),
                role_ref=k8s.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name=name
                ),
                subjects=[
                    k8s.RbacV1Subject(
                        kind="ServiceAccount", name=service_account, namespace=namespace
                    )
                ],
            ),
        )
        return role

    def pod(self, namespace: str, name: str, service_account: str) -> k8s.V1Pod:
        """A pod that never runs (no node): enough to bind a token to it."""
        body = k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name),
            spec=k8s.V1PodSpec(
                service_account_name=service_account,
                automount_service_account_token=False,
                containers=[k8s.V1Container(name="app", image="local/busybox:1")],
            ),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                pod = self.core.create_namespaced_pod(namespace, body)
                break
            except ApiException as exc:  # the ServiceAccount may not be visible yet
                if exc.status != 403 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.pods[(namespace, name)] = pod
        return pod

    def token(
        self,
        namespace: str,
        pod_name: str,
        *,
        audience: str = AUDIENCE,
        service_account: str | None = None,
    ) -> str:
        """A bound token from the TokenRequest API, as the kubelet would project it."""
        pod = self.pods[(namespace, pod_name)]
        sa = service_account or pod.spec.service_account_name
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=[audience],
                expiration_seconds=600,
                bound_object_ref=k8s.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name=pod.metadata.name, uid=pod.metadata.uid
                ),
            )
        )
        answer = self.core.create_namespaced_service_account_token(sa, namespace, request)
        return str(answer.status.token)

    def delete_pod(self, namespace: str, name: str) -> None:
        self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.core.read_namespaced_pod(name, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(0.1)
        raise AssertionError(f"pod {namespace}/{name} was not deleted within 30 s")


def emulator_seed() -> dict[str, object]:
    return {
        "vaults": [
            {"id": VAULT, "name": "broker-tests", "secrets": VALUES},
            {"id": OTHER_VAULT, "name": "empty", "secrets": {}},
        ]
    }


def sakura_config(url: str) -> SakuraConfig:
    return SakuraConfig(
        access_token=EMULATOR_TOKEN, access_token_secret=EMULATOR_SECRET, base_url=url
    )


@dataclass
class BrokerServer:
    url: str
    parts: BrokerParts
    registry: CollectorRegistry
    ssl_context: ssl.SSLContext


@contextlib.contextmanager
def serve_broker(
    emulator_url: str,
    tls: tuple[Path, Path, bytes],
    settings: BrokerTuning | None = None,
    cache_clock: Callable[[], float] = time.monotonic,
    *,
    config: SakuraConfig | None = None,
) -> Iterator[BrokerServer]:
    """The broker's routes on uvicorn over TLS, with its own kube client and registry.

    `cache_clock` drives the secret cache's lifetimes (a HandClock: no sleeps, no races).
    """
    registry = CollectorRegistry()
    parts = build_broker(
        config or sakura_config(emulator_url),
        kube_api_client=kube_api_client(os.environ["KUBECONFIG"]),
        tuning=settings,
        registry=registry,
        cache_clock=cache_clock,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await parts.aclose()  # the Sakura client lives on the server's event loop

    app = Starlette(routes=parts.routes, lifespan=lifespan)
    cert, key, ca_pem = tls
    with run_in_thread(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        yield BrokerServer(
            url=url,
            parts=parts,
            registry=registry,
            ssl_context=ssl.create_default_context(cadata=ca_pem.decode()),
        )


def plan_of(*refs: str, vault_id: str = VAULT, mode: str = "broker") -> Plan:
    """A plan with one file per ref (f0, f1, ...), as the admission check gets it."""
    files = tuple(
        FileSpec(name=f"f{i}", mode=0o400, secret=SecretRef.parse(r)) for i, r in enumerate(refs)
    )
    how = Broker() if mode == "broker" else Direct("sakura-creds")
    return Plan(files=files, directory="/sakura/secrets", mode=how, vault_id=vault_id, uid=1, gid=1)


async def fetch(
    server: BrokerServer,
    token: str | None,
    secrets: list[dict[str, Any]],
    *,
    vault_id: str = VAULT,
    body: bytes | None = None,
) -> httpx.Response:
    """The init container's request to the broker: `secrets` from `vault_id`, or raw `body`."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    content = body if body is not None else json.dumps({"vault_id": vault_id, "secrets": secrets})
    async with httpx.AsyncClient(verify=server.ssl_context, timeout=30) as http:
        return await http.post(f"{server.url}/v1/secrets", content=content, headers=headers)
