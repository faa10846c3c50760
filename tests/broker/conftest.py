"""Fixtures of the broker tests: the local cluster, the emulator, the broker over TLS.

The parts they are built from (the World of namespaces and grants, serve_broker, the values)
are in tests/support/broker_world.py; only the tests that use `kube`, `world` or `broker` need
the cluster, and they are marked `cluster` in their modules.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from support.broker_world import (
    EMULATOR_SECRET,
    EMULATOR_TOKEN,
    GRANTED_IN_A,
    GRANTED_IN_B,
    PAIRS_OF_CROSS,
    VAULTS_IN_A,
    VAULTS_IN_B,
    VAULTS_OF_CROSS,
    BrokerServer,
    World,
    emulator_seed,
    serve_broker,
)
from support.emulator import EmulatorHandle, serve_emulator

from emulator.app import Emulator, EmulatorConfig
from injector.operations.certs import generate_ca, issue_serving_cert


@pytest.fixture(scope="session")
def kube() -> k8s.ApiClient:
    if not os.environ.get("KUBECONFIG"):
        pytest.fail(
            "KUBECONFIG is not set: the broker tests need a real API server for TokenReview "
            'and SubjectAccessReview. Run scripts/test, or `eval "$(e2e/cluster.sh up)"` first.'
        )
    api: k8s.ApiClient = k8s_config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    return api


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


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    emu = Emulator(
        EmulatorConfig(
            access_token=EMULATOR_TOKEN,
            access_token_secret=EMULATOR_SECRET,
            seed=emulator_seed(),
        )
    )
    with serve_emulator(emu) as handle:
        yield handle


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    ca = generate_ca()
    leaf = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"])
    d = tmp_path_factory.mktemp("tls")
    (d / "tls.crt").write_bytes(leaf.cert_pem)
    (d / "tls.key").write_bytes(leaf.key_pem)
    return d / "tls.crt", d / "tls.key", ca.cert_pem


@pytest.fixture
def broker(
    emulator: EmulatorHandle, tls_files: tuple[Path, Path, bytes], world: World
) -> Iterator[BrokerServer]:
    with serve_broker(emulator.url, tls_files) as server:
        yield server
