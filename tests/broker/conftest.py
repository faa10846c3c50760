"""Real parts for the broker tests: the local cluster, the emulator, the broker over TLS.

The cluster comes from $KUBECONFIG (scripts/test always sets it). Each session makes its own
namespaces (random suffix), ServiceAccounts, RBAC grants and Pending pods to bind tokens to,
and deletes the namespaces at the end.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from emulator.app import Emulator, EmulatorConfig
from emulator.server import run_in_thread
from injector.broker.tuning import BrokerTuning
from injector.kube import api_client as kube_api_client
from injector.operations.certs import generate_ca, issue_serving_cert
from injector.operations.wiring import BrokerParts, build_broker
from sakura import SakuraConfig

VAULT = "110000000001"
OTHER_VAULT = "110000000002"
MISSING_VAULT = "999999999999"
"""Granted to app in namespace A, but Sakura has no such vault."""
AUDIENCE = "sakura-secrets-injector"
EMULATOR_TOKEN = "emulator-access-token"
EMULATOR_SECRET = "emulator-access-secret"
# Distinctive values: the leak test searches every log, metric and error body for them.
VALUES = {
    "db": ["db-v1-7c1f0b3e-VALUE", "db-v2-9d2e4a51-VALUE"],
    "api": ["api-v1-51b8e0c2-VALUE"],
    "other": ["other-v1-0e6d3f77-VALUE"],
    "cfg": ["cfg-v1-a4c9b210-VALUE"],
    "tls": ["tls-v1-3f8e2d19-VALUE"],
    "extra": ["extra-v1-66aa90bd-VALUE"],
    "never-fetched": ["never-fetched-v1-bb01c2d3-VALUE"],
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


class HandClock:
    """A clock that moves only when a test says so (thread-safe enough: one float)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/broker/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def kube() -> k8s.ApiClient:
    if not os.environ.get("KUBECONFIG"):
        pytest.fail(
            "KUBECONFIG is not set: the broker tests need a real API server for TokenReview "
            'and SubjectAccessReview. Run scripts/test, or `eval "$(e2e/cluster.sh up)"` first.'
        )
    api: k8s.ApiClient = k8s_config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    return api


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


@pytest.fixture(scope="session")
def world(kube: k8s.ApiClient) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:6]
    w = World(api=kube, ns_a=f"broker-a-{suffix}", ns_b=f"broker-b-{suffix}")
    for ns in (w.ns_a, w.ns_b):
        w.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    try:
        w.service_account(w.ns_a, "app")
        w.service_account(w.ns_a, "nogrant")
        w.service_account(w.ns_a, "cross")
        w.service_account(w.ns_b, "app")
        w.grant(w.ns_a, "app", GRANTED_IN_A, VAULTS_IN_A)
        w.grant(w.ns_a, "cross", PAIRS_OF_CROSS, VAULTS_OF_CROSS)
        w.grant(w.ns_b, "app", GRANTED_IN_B, VAULTS_IN_B)
        w.pod(w.ns_a, "app", "app")
        w.pod(w.ns_a, "nogrant", "nogrant")
        w.pod(w.ns_a, "cross", "cross")
        w.pod(w.ns_b, "app", "app")
        yield w
    finally:
        for ns in (w.ns_a, w.ns_b):
            with contextlib.suppress(ApiException):
                w.core.delete_namespace(ns)


def emulator_seed() -> dict[str, object]:
    return {
        "vaults": [
            {"id": VAULT, "name": "broker-tests", "secrets": VALUES},
            {"id": OTHER_VAULT, "name": "empty", "secrets": {}},
        ]
    }


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, str]]:
    emu = Emulator(
        EmulatorConfig(
            access_token=EMULATOR_TOKEN,
            access_token_secret=EMULATOR_SECRET,
            seed=emulator_seed(),
        )
    )
    with run_in_thread(emu) as url:
        yield emu, url


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


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    ca = generate_ca()
    leaf = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    d = tmp_path_factory.mktemp("tls")
    (d / "tls.crt").write_bytes(leaf.cert_pem)
    (d / "tls.key").write_bytes(leaf.key_pem)
    return d / "tls.crt", d / "tls.key", ca.cert_pem


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


@pytest.fixture
def broker(
    emulator: tuple[Emulator, str], tls_files: tuple[Path, Path, bytes], world: World
) -> Iterator[BrokerServer]:
    with serve_broker(emulator[1], tls_files) as server:
        yield server
