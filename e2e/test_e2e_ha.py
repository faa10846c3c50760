"""Issue 19, high availability shown: losing one of two injector replicas in the middle of a
20-pod rollout fails no pod.

The installed manifests (harness/install.py's local adaptation) run the injector's Deployment
with one replica on the host network; a second Deployment, the same pod on other host ports,
is the second replica behind the same Service (its named targetPorts resolve per pod, and the
API server, run with --enable-aggregator-routing, calls the webhook through the Service's
endpoints). With no kube-proxy, each replica injects its own broker port, so a pod fetches
from the replica that admitted it. A Deployment of 20 pods is rolled out from an old version
that never ran to one that reads a secret (maxSurge 5, maxUnavailable 0; its pods' own init
container sleeps past the drain before ours fetches); once a few new pods
are admitted, the replica that admitted the newest (the one the API server is calling, and the
one that pod is about to fetch from) is deleted with `kubectl delete pod`. Every pod must
become Ready with no FailedCreate in the namespace, each init container must have fetched (the
lost replica's pods retried until its replacement answered: at least one must have), and each
app must print its secret. docs/e2e.md says what was adapted for
the loopback cluster and why; docs/operations.md ("High availability") what this shows and
what it does not.

Only on e2e/cluster.sh's cluster, like test_e2e_install.py, and under the same lock (the
manifests' names are global).
"""

from __future__ import annotations

import collections
import copy
import datetime
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from harness import install, manifests
from harness.kube import Kube
from harness.stack import Sakura
from harness.target import Target

from contract.pod import ENV_BROKER_URL, INIT_CONTAINER

pytestmark = pytest.mark.cluster

APP_NS = f"{install.NAMESPACE}-e2e-ha"
APP = "shop"
SERVICE_ACCOUNT = "shop"
REPLICAS = 20
SURGE = 5
SECOND = f"{install.NAME}-b"
REPLICA_LABEL = "sakura-e2e/replica"
"""Set on the second replica's Deployment and pods only (the first is the manifests' own)."""
SECOND_PORTS = {"webhook": 8444, "broker": 9444, "probes": 8082}
"""The second replica's host ports: hostNetwork pods on one node cannot share the first's."""
PORT_ENV = {
    "webhook": "SAKURA_SECRETS_PORT",
    "broker": "SAKURA_SECRETS_BROKER_PORT",
    "probes": "SAKURA_SECRETS_PROBE_PORT",
}
INJECTORS = f"app.kubernetes.io/name={install.NAME},app.kubernetes.io/component=injector"
FIRST = f"{INJECTORS},!{REPLICA_LABEL}"
"""The manifests' replica."""
REPLICAS_BY_BROKER_PORT = {
    install.BROKER_PORT: FIRST,
    SECOND_PORTS["broker"]: f"{INJECTORS},{REPLICA_LABEL}=b",
}
"""Each replica's pods by the broker port it injects (the one lost is chosen at run time)."""
CERTS = f"app.kubernetes.io/name={install.NAME},app.kubernetes.io/component=certs"
ADMITTED_BEFORE_LOSS = 3
RETRY_LINE = "broker not ready"
"""What the init container logs before it retries (sidecar/broker_client.py)."""
SHUTDOWN_DELAY = 5
"""`serve --shutdown-delay`'s default, which the manifests keep: a deleted replica still
answers this long."""
HOLD_SECONDS = 2 * SHUTDOWN_DELAY
"""The new pods' own init container (run before ours, `init-first: "false"`) sleeps this long,
so a pod admitted just before its replica is lost starts fetching after that replica's ports
have closed: without it, a quick kubelet started every such pod's fetch within the drain and
none had to retry (seen once in a fresh-clone run)."""


def second_replica(first: dict[str, Any]) -> dict[str, Any]:
    """The manifests' injector Deployment as a second Deployment of one pod on other ports.

    Same image, Secret, ServiceAccount, probes and labels (so the Service, the PDB and the
    topology spread count it as one of the injector's replicas), plus REPLICA_LABEL in its own
    selector so the two Deployments never claim each other's pods."""
    second = copy.deepcopy(first)
    second["metadata"]["name"] = SECOND
    second["spec"]["selector"]["matchLabels"][REPLICA_LABEL] = "b"
    template = second["spec"]["template"]
    template["metadata"]["labels"][REPLICA_LABEL] = "b"
    [container] = template["spec"]["containers"]
    for port in container["ports"]:
        port["containerPort"] = SECOND_PORTS[port["name"]]
    for env in container["env"]:
        for name, variable in PORT_ENV.items():
            if env["name"] == variable:
                env["value"] = str(SECOND_PORTS[name])
        if env["name"] == ENV_BROKER_URL:  # the pods it admits fetch from it (no kube-proxy)
            env["value"] = f"https://{install.BROKER_HOST}:{SECOND_PORTS['broker']}"
    return second


@dataclass(frozen=True)
class Installed:
    kube: Kube
    values: dict[str, Any]


@pytest.fixture(scope="module")
def two_replicas(
    target: Target, kube: Kube, image: str, sakura: Sakura, node: str, run_id: str
) -> Iterator[Installed]:
    install.require_installable(target, "the HA test")
    with install.exclusive():
        for ns in (install.NAMESPACE, APP_NS):
            install.wait_until_gone(kube, ns)
        objects = install.rendered(kube, image, run_id)
        [first] = [
            o
            for o in objects
            if o["kind"] == "Deployment" and o["metadata"]["name"] == install.NAME
        ]
        objects.append(second_replica(first))
        kube.apply(*install.api_key_secret(sakura))
        try:
            kube.apply(*objects)
            kube.wait_for(
                "both injector replicas ready behind the Service, and the certs Deployment",
                lambda: len(_webhook_endpoints(kube)) == 2 and _ready(kube, CERTS),
                240,
                2,
            )
            kube.apply(*install.app_namespace(APP_NS, run_id, SERVICE_ACCOUNT, "db-password"))
            yield Installed(kube, sakura.values)
        finally:
            install.uninstall(kube, objects, APP_NS)


def _webhook_endpoints(kube: Kube) -> list[tuple[str, int]]:
    """The ready (address, port) pairs the API server may call for the webhook."""
    endpoints = kube.get("endpoints", install.NAME, install.NAMESPACE)
    return [
        (address["ip"], port["port"])
        for subset in endpoints.get("subsets") or []
        for address in subset.get("addresses") or []
        for port in subset.get("ports") or []
        if port.get("name") == "webhook"
    ]


def _ready(kube: Kube, selector: str) -> bool:
    pods = kube.pods(install.NAMESPACE, selector)
    return bool(pods) and all(
        c.get("ready") for p in pods for c in p["status"].get("containerStatuses", [])
    )


def app(*, new: bool) -> dict[str, Any]:
    """The app's Deployment: the old version never runs (no scheduler picks it up, so it costs
    the node nothing); the new one reads its secret from the injector and stays up."""
    command = "cat /sakura/secrets/db; echo; echo DONE; exec sleep 3600"
    spec = manifests.pod_spec(command, service_account=SERVICE_ACCOUNT, run_as=(1000, 1000))
    if new:
        spec["hostAliases"] = [{"ip": "127.0.0.1", "hostnames": [install.BROKER_HOST]}]
        spec["initContainers"] = [
            {
                "name": "hold",
                "image": manifests.APP_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sleep", str(HOLD_SECONDS)],
            }
        ]
        annotations = manifests.pod_annotations({"secret-db": "db-password", "init-first": "false"})
    else:
        spec["schedulerName"] = "sakura-e2e-nobody"
        annotations = {}
    deployment = manifests.deployment(APP, APP_NS, spec, annotations, replicas=REPLICAS)
    deployment["spec"]["strategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": SURGE, "maxUnavailable": 0},
    }
    return deployment


def _new_pods(kube: Kube) -> list[dict[str, Any]]:
    return [
        p
        for p in kube.pods(APP_NS, f"app={APP}")
        if p["spec"].get("schedulerName") != "sakura-e2e-nobody"
    ]


def _rolled_out(kube: Kube) -> bool:
    status = kube.get("deployment", APP, APP_NS).get("status", {})
    done = all(
        status.get(key) == REPLICAS
        for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    )
    return done and len(kube.pods(APP_NS, f"app={APP}")) == REPLICAS


def test_losing_a_replica_mid_rollout_fails_no_pod(two_replicas: Installed) -> None:
    kube = two_replicas.kube
    kube.apply(app(new=False))
    kube.wait_for(
        f"the old version's {REPLICAS} pods to be created",
        lambda: len(kube.pods(APP_NS, f"app={APP}")) == REPLICAS,
        120,
        1,
    )
    started = time.monotonic()
    kube.apply(app(new=True))

    def moment_to_lose() -> int | None:
        """A few pods admitted, the newest with its init container not started: the broker
        port of the replica that admitted it (the one the API server is most likely calling
        now, and the one that pod will fetch from)."""
        pods = sorted(_new_pods(kube), key=lambda p: p["metadata"]["creationTimestamp"])
        if len(pods) < ADMITTED_BEFORE_LOSS or _init_started(pods[-1]):
            return None
        return _admitted_by(pods[-1])

    lost = kube.wait_for(f"{ADMITTED_BEFORE_LOSS} new pods admitted", moment_to_lose, 120, 0.2)
    selector = REPLICAS_BY_BROKER_PORT[lost]
    [doomed] = kube.pods(install.NAMESPACE, selector)
    admitted = len(_new_pods(kube))
    kube.run("delete", "pod", doomed["metadata"]["name"], "-n", install.NAMESPACE, "--wait=false")
    lost_at, lost_wall = time.monotonic() - started, time.time()
    webhook_port = install.PORT if lost == install.BROKER_PORT else SECOND_PORTS["webhook"]
    kube.wait_for(
        "the lost replica's endpoint to leave the Service",
        lambda: webhook_port not in [port for _, port in _webhook_endpoints(kube)],
        30,
        0.2,
    )
    left = time.time() - lost_wall
    try:
        kube.wait_for("the rollout to finish", lambda: _rolled_out(kube), 300, 2)
    except TimeoutError as error:
        described = [kube.describe("pod", p["metadata"]["name"], APP_NS) for p in _new_pods(kube)]
        raise AssertionError(f"{error}\n{_events(kube)}\n{''.join(described[:3])}") from None
    took = time.monotonic() - started

    failed = [
        e for e in kube.get("events", namespace=APP_NS)["items"] if e["reason"] == "FailedCreate"
    ]
    assert not failed, _events(kube)
    pods = _new_pods(kube)
    assert len(pods) == REPLICAS
    retried = []
    for pod in pods:
        name = pod["metadata"]["name"]
        assert pod["metadata"]["annotations"]["sakura-secrets.io/status"] == "injected"
        [init] = [s for s in pod["status"]["initContainerStatuses"] if s["name"] == INIT_CONTAINER]
        assert init["state"]["terminated"]["exitCode"] == 0, kube.describe("pod", name, APP_NS)
        assert _up(pod), name
        if init.get("restartCount") or RETRY_LINE in kube.logs(APP_NS, name, INIT_CONTAINER):
            retried.append(name)
        assert kube.logs(APP_NS, name, "app").splitlines()[:2] == [
            two_replicas.values["db-password"],
            "DONE",
        ], name
    [replacement] = kube.wait_for(
        "the lost replica's replacement to be ready",
        lambda: [
            p
            for p in kube.pods(install.NAMESPACE, selector)
            if p["metadata"]["name"] != doomed["metadata"]["name"] and _ready(kube, selector)
        ],
        120,
        2,
    )
    back = _ready_since(replacement)
    alone = [p for p in pods if lost_wall + 1 < _created(p) < back - 1]
    by_replica = collections.Counter(_admitted_by(p) for p in pods)
    sys.stderr.write(
        f"[e2e] replica {doomed['metadata']['name']} (broker port {lost}) deleted "
        f"{lost_at:.1f} s into the rollout, after {admitted} of {REPLICAS} new pods were "
        f"admitted, the newest by it; its endpoint left the Service within {left:.1f} s; the "
        f"rollout finished in {took:.0f} s with no FailedCreate; {len(retried)} init "
        f"containers retried the broker while it was gone; its replacement was ready "
        f"{back - lost_wall:.0f} s after the loss, and {len(alone)} pods were created in "
        f"between (more than 1 s from either end); pods admitted by broker port: "
        f"{dict(sorted(by_replica.items()))}\n"
    )
    assert admitted < REPLICAS  # the loss fell inside the rollout's admissions
    assert retried, "no init container ran while its broker's replica was gone"


def _admitted_by(pod: dict[str, Any]) -> int:
    """The broker port of the replica that admitted `pod`: each names its own in the pods it
    injects (the first the manifests' 9443, the second its 9444)."""
    [init] = [c for c in pod["spec"]["initContainers"] if c["name"] == INIT_CONTAINER]
    [url] = [e["value"] for e in init["env"] if e["name"] == ENV_BROKER_URL]
    return int(url.rsplit(":", 1)[1])


def _init_started(pod: dict[str, Any]) -> bool:
    """Whether our init container has begun (it may be talking to its broker already)."""
    statuses = pod.get("status", {}).get("initContainerStatuses") or []
    return any(
        set(s.get("state", {})) & {"running", "terminated"}
        for s in statuses
        if s.get("name") == INIT_CONTAINER
    )


def _up(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return bool(statuses) and all(s.get("ready") for s in statuses)


def _timestamp(text: str) -> float:
    return (
        datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
        .replace(tzinfo=datetime.UTC)
        .timestamp()
    )


def _created(pod: dict[str, Any]) -> float:
    return _timestamp(pod["metadata"]["creationTimestamp"])


def _ready_since(pod: dict[str, Any]) -> float:
    [ready] = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
    return _timestamp(ready["lastTransitionTime"])


def _events(kube: Kube) -> str:
    return kube.run("get", "events", "-n", APP_NS, "--sort-by=.lastTimestamp", check=False).stdout
