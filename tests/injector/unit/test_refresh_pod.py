"""The refresh container in the pod (`refresh-interval`): its exact shape, where it goes in
each mode (native sidecar, plain container), the pods it refuses, and the pods it makes,
validated strictly against a Kubernetes 1.29 schema (the first with native sidecars on).

The builders are pinned field by field here (as test_pod_builders.py pins the init
container's); the admission tests run the real `review` through support.admission_harness,
which also validates every admitted pod against its older (1.25) schema, where a container's
`restartPolicy` does not exist: the native shape is validated here against 1.29 instead.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
from support.admission_harness import (
    INIT,
    P,
    denied,
    pod,
    run,
    settings,
)

from contract import Broker, Direct, FileSpec, Plan, SecretRef
from injector.webhook.errors import Denied
from injector.webhook.pod.init_container import init_container
from injector.webhook.pod.refresh_container import refresh_container
from injector.webhook.pod.resources import REFRESH_DEFAULTS, Resources
from injector.webhook.pod_checks import check_plain_refresh, check_room
from injector.webhook.settings import WebhookSettings

NATIVE_SCHEMA = "1.29.0"
REFRESH = "sakura-secrets-refresh"
CLASSIC = settings()
NATIVE = settings(native_sidecars=True)
SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 2000,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def plan(mode: str = "broker") -> Plan:
    return Plan(
        files=(FileSpec("db", 0o400, secret=SecretRef("db")),),
        directory="/run/secrets/app",
        mode=Broker() if mode == "broker" else Direct("sakura-creds"),
        vault_id="110000000001",
        uid=1000,
        gid=2000,
        refresh_interval=60,
    )


def test_the_classic_refresh_container_is_the_init_containers_shape_with_its_own_command() -> None:
    the_plan = plan()
    container = refresh_container(the_plan, REFRESH_DEFAULTS, CLASSIC)
    # test_pod_builders.py pins the init container's every field; this one is the same but
    # for its name, command and (here) its small default resources
    assert container["name"] == REFRESH
    assert container["command"] == ["python", "-m", "sidecar", "refresh"]
    assert container["resources"] == {
        "requests": {"cpu": "10m", "memory": "48Mi"},
        "limits": {"cpu": "200m", "memory": "128Mi"},
    }
    assert container["volumeMounts"][0] == {
        "name": "sakura-secrets",
        "mountPath": "/run/secrets/app",
    }
    assert "restartPolicy" not in container
    init = init_container(the_plan, REFRESH_DEFAULTS, CLASSIC)
    assert {**init, "name": REFRESH, "command": container["command"]} == container


def test_the_native_refresh_container_restarts_always_and_is_otherwise_the_same() -> None:
    classic = refresh_container(plan(), REFRESH_DEFAULTS, CLASSIC)
    native = refresh_container(plan(), REFRESH_DEFAULTS, NATIVE)
    assert native == {**classic, "restartPolicy": "Always"}


def test_the_direct_mode_refresh_container_gets_the_credentials_not_a_token() -> None:
    the_plan = plan("direct")
    container = refresh_container(the_plan, Resources("1", "2", "3", "4"), CLASSIC)
    assert [e["name"] for e in container["env"]] == [
        "SAKURA_SECRETS_PLAN",
        "SAKURA_ACCESS_TOKEN",
        "SAKURA_ACCESS_TOKEN_SECRET",
        "SAKURA_SERVICE_PRINCIPAL_ID",
        "SAKURA_SERVICE_PRINCIPAL_KEY_ID",
        "SAKURA_PRIVATE_KEY",
        "SAKURA_TOKEN_ENDPOINT",
    ]
    assert container["env"][1]["valueFrom"] == {
        "secretKeyRef": {"name": "sakura-creds", "key": "SAKURA_ACCESS_TOKEN", "optional": True}
    }
    assert container["volumeMounts"] == [
        {"name": "sakura-secrets", "mountPath": "/run/secrets/app"}
    ]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "3"},
        "limits": {"cpu": "2", "memory": "4"},
    }


def _refreshing(**notes: str) -> dict[str, Any]:
    return pod({f"{P}refresh-interval": "1m", **{f"{P}{k}": v for k, v in notes.items()}})


async def _admit(obj: dict[str, Any], webhook: WebhookSettings, schema: str) -> dict[str, Any]:
    """The admitted pod, validated strictly against `schema`."""
    answer = await run(obj, webhook=webhook)
    response = answer["response"]
    assert response["allowed"] is True, response
    patch = json.loads(base64.b64decode(response["patch"]))
    mutated: dict[str, Any] = jsonpatch.apply_patch(obj, patch)
    kubernetes_validate.validate(copy.deepcopy(mutated), schema, strict=True)
    return mutated


def _names(containers: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in containers]


async def test_the_classic_shape_adds_a_plain_container_after_the_apps() -> None:
    obj = _refreshing()
    for schema in ("1.25.0", NATIVE_SCHEMA):
        result = await _admit(obj, CLASSIC, schema)
    spec = result["spec"]
    assert _names(spec["initContainers"]) == [INIT]
    assert _names(spec["containers"]) == ["app", REFRESH]
    refresh = spec["containers"][1]
    assert "restartPolicy" not in refresh
    assert refresh["command"] == ["python", "-m", "sidecar", "refresh"]
    # the refresh container writes, the app reads only and never sees the token
    assert refresh["volumeMounts"][0] == {"name": "sakura-secrets", "mountPath": "/sakura/secrets"}
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "sakura-secrets", "mountPath": "/sakura/secrets", "readOnly": True}
    ]
    env = {e["name"]: e["value"] for e in refresh["env"]}
    assert Plan.from_json(env["SAKURA_SECRETS_PLAN"]).refresh_interval == 60
    # one more container: kubectl's logs and exec still pick the app's by default
    assert result["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "app"


async def test_a_default_container_the_pod_names_is_kept() -> None:
    obj = _refreshing()
    obj["spec"]["containers"].insert(0, {**obj["spec"]["containers"][0], "name": "proxy"})
    assert _names(obj["spec"]["containers"]) == ["proxy", "app"]
    first = await _admit(obj, CLASSIC, NATIVE_SCHEMA)
    assert first["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "proxy"
    obj["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] = "app"
    kept = await _admit(obj, CLASSIC, NATIVE_SCHEMA)
    assert kept["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "app"


async def test_the_native_shape_adds_a_sidecar_right_after_the_init_container() -> None:
    result = await _admit(_refreshing(), NATIVE, NATIVE_SCHEMA)
    spec = result["spec"]
    assert _names(spec["initContainers"]) == [INIT, REFRESH]
    assert _names(spec["containers"]) == ["app"]
    assert "kubectl.kubernetes.io/default-container" not in result["metadata"]["annotations"]
    assert spec["initContainers"][1]["restartPolicy"] == "Always"
    assert "restartPolicy" not in spec["initContainers"][0]
    # the schema check can fail: before 1.28 (alpha there, behind a gate) a container has no
    # restartPolicy
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicy"):
        kubernetes_validate.validate(copy.deepcopy(result), "1.27.0", strict=True)


@pytest.mark.parametrize(
    ("first", "order"),
    [("true", [INIT, REFRESH, "migrate"]), ("false", ["migrate", INIT, REFRESH])],
)
async def test_the_native_sidecar_follows_ours_wherever_init_first_puts_it(
    first: str, order: list[str]
) -> None:
    obj = _refreshing(**{"init-first": first})
    obj["spec"]["initContainers"] = [{"name": "migrate", "image": "shop/migrate:1"}]
    result = await _admit(obj, NATIVE, NATIVE_SCHEMA)
    assert _names(result["spec"]["initContainers"]) == order
    # everything else is added as well
    assert _names(result["spec"]["volumes"]) == ["sakura-secrets", "sakura-secrets-token"]
    assert result["metadata"]["annotations"][f"{P}status"] == "injected"
    assert result["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] is True


async def test_without_refresh_interval_no_refresh_container_in_either_mode() -> None:
    for webhook in (CLASSIC, NATIVE):
        result = await _admit(pod(), webhook, NATIVE_SCHEMA)
        names = _names(result["spec"]["initContainers"]) + _names(result["spec"]["containers"])
        assert REFRESH not in names
        assert "kubectl.kubernetes.io/default-container" not in result["metadata"]["annotations"]


async def test_the_refresh_container_is_sized_by_its_own_annotations() -> None:
    obj = _refreshing(**{"refresh-memory-limit": "64Mi", "cpu-limit": "300m"})
    result = await _admit(obj, CLASSIC, NATIVE_SCHEMA)
    refresh = result["spec"]["containers"][1]
    init = result["spec"]["initContainers"][0]
    assert refresh["resources"] == {
        "requests": {"cpu": "10m", "memory": "48Mi"},
        "limits": {"cpu": "300m", "memory": "64Mi"},
    }
    assert init["resources"]["limits"] == {"cpu": "300m", "memory": "128Mi"}


JOB_OWNER = {"apiVersion": "batch/v1", "kind": "Job", "name": "nightly-28000000", "uid": "u1"}
PLAIN = (
    "but on this cluster the refresh container 'sakura-secrets-refresh' is a plain container "
    "that runs until the pod is deleted, so the pod would never complete; remove "
    "sakura-secrets.io/refresh-interval (the init container still fetches the files once), "
    "or run it on Kubernetes 1.29+, where the refresh container is a native sidecar that "
    "stops when the app ends"
)


def _job_pod(policy: str | None = "Never", owners: Any = (JOB_OWNER,)) -> dict[str, Any]:
    obj = _refreshing()
    obj["metadata"]["ownerReferences"] = list(owners)
    if policy is not None:
        obj["spec"]["restartPolicy"] = policy
    return obj


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        (
            _job_pod(),
            "this pod belongs to Job 'nightly-28000000', which waits for it to complete",
        ),
        (_job_pod(policy=None), "belongs to Job 'nightly-28000000'"),
        (_job_pod("OnFailure", owners=()), "this pod has restartPolicy OnFailure, so it is meant"),
        (_job_pod("Never", owners=()), "this pod has restartPolicy Never, so it is meant"),
    ],
)
async def test_a_pod_that_must_terminate_cannot_refresh_with_a_plain_container(
    obj: dict[str, Any], why: str
) -> None:
    response = await denied(obj, webhook=CLASSIC)
    message = response["status"]["message"]
    assert message.startswith(f"annotation {P}refresh-interval: ")
    assert why in message
    assert message.endswith(PLAIN)
    assert response["status"]["code"] == 400
    await _admit(obj, NATIVE, NATIVE_SCHEMA)  # a native sidecar ends with the Job's pod


def test_the_terminating_pod_rule_reads_only_what_it_should() -> None:
    def check(obj: dict[str, Any]) -> str | None:
        try:
            check_plain_refresh(obj)
        except Denied as denial:
            return str(denial)
        return None

    assert check(_job_pod("Always", owners=())) is None
    assert check(_job_pod(None, owners=())) is None
    assert check({"spec": {}}) is None  # no metadata at all
    replica_set = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u"}
    assert check(_job_pod("Always", owners=(replica_set,))) is None
    both = check(_job_pod("Always", owners=(replica_set, "junk", JOB_OWNER)))
    assert both is not None and "Job 'nightly-28000000'" in both
    malformed = _job_pod("Always", owners=())
    malformed["metadata"]["ownerReferences"] = {"kind": "Job"}  # the API server refuses it
    assert check(malformed) is None
    message = check(_job_pod("Never", owners=()))
    assert message == (
        "annotation sakura-secrets.io/refresh-interval: this pod has restartPolicy Never, so it "
        f"is meant to terminate, {PLAIN}"
    )


async def test_a_job_without_refresh_interval_is_not_concerned() -> None:
    obj = _job_pod()
    del obj["metadata"]["annotations"][f"{P}refresh-interval"]
    answer = await run(obj, webhook=CLASSIC)
    assert answer["response"]["allowed"] is True


@pytest.mark.parametrize("where", ["containers", "initContainers"])
def test_the_refresh_containers_name_is_the_injectors(where: str) -> None:
    spec: dict[str, Any] = {"containers": [{"name": "app"}]}
    spec.setdefault(where, []).append({"name": REFRESH})
    with pytest.raises(Denied) as caught:
        check_room(spec, ("app",), "/sakura/secrets")
    assert str(caught.value) == (
        "the pod already has a container named 'sakura-secrets-refresh', which the injector "
        "adds; rename that container"
    )


async def test_the_name_is_taken_even_for_a_pod_that_does_not_refresh() -> None:
    obj = pod(containers=[{"name": "app", "image": "x"}, {"name": REFRESH, "image": "y"}])
    obj["metadata"]["annotations"][f"{P}containers"] = "app"
    response = await denied(obj)
    assert "container named 'sakura-secrets-refresh'" in response["status"]["message"]
