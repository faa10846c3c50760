"""The pod builders, pure: the exact init container, volumes, mounts and resources they add.

test_injector_admission.py checks the whole patch an admission produces (and e2e runs it);
these pin every field of each part, so a changed security setting or env var is seen here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from contract import Broker, Direct, FileSpec, Plan, SecretRef
from injector.webhook.errors import Denied
from injector.webhook.pod.init_container import init_container
from injector.webhook.pod.mounts import read_only_mount, target_containers
from injector.webhook.pod.ownership import resolve_owner
from injector.webhook.pod.resources import Resources
from injector.webhook.pod.volumes import secrets_volume, token_volume
from injector.webhook.pod_checks import check_mount_path, check_owner, check_targets
from injector.webhook.quantity import parse_quantity
from injector.webhook.settings import WebhookSettings

SETTINGS = WebhookSettings(
    image="registry.example/sakura-secrets-injector:1.0",
    broker_url="https://sakura-secrets.sakura-secrets.svc:8443",
    broker_ca_pem="-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
    image_pull_policy="Always",
    sakura_endpoint="https://sakura.example/secretmanager",
    sakura_zone="is1a",
)
SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 2000,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def plan(mode: str = "broker", uid: int = 1000, gid: int = 2000) -> Plan:
    return Plan(
        files=(FileSpec("db", 0o400, secret=SecretRef("db")),),
        directory="/run/secrets/app",
        mode=Broker() if mode == "broker" else Direct("sakura-creds"),
        vault_id="110000000001",
        uid=uid,
        gid=gid,
    )


def test_the_broker_mode_init_container() -> None:
    the_plan = plan()
    container = init_container(the_plan, Resources(), SETTINGS)
    assert container == {
        "name": "sakura-secrets-init",
        "image": "registry.example/sakura-secrets-injector:1.0",
        "imagePullPolicy": "Always",
        "command": ["python", "-m", "sidecar"],
        "env": [
            {"name": "SAKURA_SECRETS_PLAN", "value": the_plan.to_json()},
            {
                "name": "SAKURA_SECRETS_BROKER_URL",
                "value": "https://sakura-secrets.sakura-secrets.svc:8443",
            },
            {"name": "SAKURA_SECRETS_BROKER_CA", "value": SETTINGS.broker_ca_pem},
            {
                "name": "SAKURA_SECRETS_TOKEN_FILE",
                "value": "/var/run/secrets/sakura-secrets.io/token",
            },
        ],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "128Mi"},
        },
        "securityContext": SECURITY,
        "volumeMounts": [
            {"name": "sakura-secrets", "mountPath": "/run/secrets/app"},
            {
                "name": "sakura-secrets-token",
                "mountPath": "/var/run/secrets/sakura-secrets.io",
                "readOnly": True,
            },
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def test_the_direct_mode_init_container_reads_the_credentials_secret() -> None:
    the_plan = plan("direct")
    container = init_container(the_plan, Resources("1", "2", "3", "4"), SETTINGS)
    keys = [
        "SAKURA_ACCESS_TOKEN",
        "SAKURA_ACCESS_TOKEN_SECRET",
        "SAKURA_SERVICE_PRINCIPAL_ID",
        "SAKURA_SERVICE_PRINCIPAL_KEY_ID",
        "SAKURA_PRIVATE_KEY",
        "SAKURA_TOKEN_ENDPOINT",
    ]
    assert container["env"] == [
        {"name": "SAKURA_SECRETS_PLAN", "value": the_plan.to_json()},
        *(
            {
                "name": key,
                "valueFrom": {
                    "secretKeyRef": {"name": "sakura-creds", "key": key, "optional": True}
                },
            }
            for key in keys
        ),
        {"name": "SAKURA_ENDPOINTS_SECRETMANAGER", "value": "https://sakura.example/secretmanager"},
        {"name": "SAKURA_ZONE", "value": "is1a"},
    ]
    assert container["volumeMounts"] == [
        {"name": "sakura-secrets", "mountPath": "/run/secrets/app"}
    ]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "3"},
        "limits": {"cpu": "2", "memory": "4"},
    }


def test_direct_mode_without_endpoint_or_zone_sets_neither() -> None:
    bare = WebhookSettings(image="img", broker_url="https://b")
    env = init_container(plan("direct"), Resources(), bare)["env"]
    assert [e["name"] for e in env] == [
        "SAKURA_SECRETS_PLAN",
        "SAKURA_ACCESS_TOKEN",
        "SAKURA_ACCESS_TOKEN_SECRET",
        "SAKURA_SERVICE_PRINCIPAL_ID",
        "SAKURA_SERVICE_PRINCIPAL_KEY_ID",
        "SAKURA_PRIVATE_KEY",
        "SAKURA_TOKEN_ENDPOINT",
    ]
    assert init_container(plan(), Resources(), bare)["imagePullPolicy"] == "IfNotPresent"


def test_the_volumes() -> None:
    assert secrets_volume("8Mi") == {
        "name": "sakura-secrets",
        "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"},
    }
    assert token_volume() == {
        "name": "sakura-secrets-token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": "sakura-secrets-injector",
                        "expirationSeconds": 600,
                        "path": "token",
                    }
                }
            ]
        },
    }


SPEC = {
    "initContainers": [{"name": "migrate"}],
    "containers": [
        {"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data/"}]},
        {"name": "sidecar"},
    ],
}


def test_the_target_containers() -> None:
    assert target_containers(SPEC, None, ()) == ("app", "sidecar")
    assert target_containers(SPEC, ["sidecar"], ()) == ("sidecar",)
    with pytest.raises(Denied) as caught:
        check_targets(SPEC, ["sidecar", "web", "db"])
    assert str(caught.value) == (
        "annotation sakura-secrets.io/containers names 'web', 'db', which is not an app container "
        "of this pod; app containers: app, sidecar"
    )
    with pytest.raises(Denied) as caught:
        check_targets(SPEC, ["migrate"])
    assert str(caught.value) == (
        "annotation sakura-secrets.io/containers names 'migrate', which is not an app container "
        "of this pod (init containers cannot get the mount); app containers: app, sidecar"
    )
    for spec in ({}, {"containers": []}, {"containers": None}):
        with pytest.raises(Denied) as caught:
            check_targets(spec, None)
        assert str(caught.value) == (
            "the pod has no containers (spec.containers is empty); add the app container"
        )


def test_a_mount_path_in_use_by_a_target_container_is_refused() -> None:
    with pytest.raises(Denied) as caught:
        check_mount_path(SPEC, ("app", "sidecar"), "/data")
    assert str(caught.value) == (
        "annotation sakura-secrets.io/mount-path: container 'app' already mounts volume 'data' "
        "at /data; set sakura-secrets.io/mount-path to a free directory"
    )
    check_mount_path(SPEC, ("sidecar",), "/data")  # not a target: its mounts do not matter
    later = {"containers": [SPEC["containers"][1], SPEC["containers"][0]]}
    with pytest.raises(Denied, match="container 'app' already mounts"):
        check_mount_path(later, ("app",), "/data")  # found past a container that is no target
    check_mount_path(SPEC, ("app",), "/data/x")
    check_mount_path({}, ("app",), "/data")
    assert read_only_mount("/run/s") == {
        "name": "sakura-secrets",
        "mountPath": "/run/s",
        "readOnly": True,
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("2.", Decimal(2)),
        ("50m", Decimal("0.05")),
        ("3n", Decimal("3e-9")),
        ("3u", Decimal("3e-6")),
        ("2k", Decimal(2000)),
        ("2M", Decimal(2_000_000)),
        ("1G", Decimal(10**9)),
        ("1T", Decimal(10**12)),
        ("1P", Decimal(10**15)),
        ("1E", Decimal(10**18)),
        ("64Ki", Decimal(64 * 1024)),
        ("64Mi", Decimal(64 * 2**20)),
        ("1Gi", Decimal(2**30)),
        ("1Ti", Decimal(2**40)),
        ("1Pi", Decimal(2**50)),
        ("1Ei", Decimal(2**60)),
        ("1e3", Decimal(1000)),
        ("1E-3", Decimal("0.001")),
        ("5e+2", Decimal(500)),
    ],
)
def test_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "-1", "1.5.5", "64mb", "1Ki2", " 1", "1 ", "e3", "Mi"])
def test_not_quantities(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_quantity(text)
    assert str(caught.value) == (
        f"{text!r} is not a Kubernetes quantity; write e.g. 50m or 0.5 (cpu), 64Mi or 1G (memory)"
    )


@pytest.mark.parametrize("text", ["0", "0m", "0.0Gi", "0e3"])
def test_zero_is_refused(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_quantity(text)
    assert str(caught.value) == f"{text!r} is zero; give an amount greater than zero"


def _owner_denial(spec: dict[str, Any]) -> str:
    with pytest.raises(Denied) as caught:
        check_owner(spec, ("app",), run_as_user=None, run_as_group=None)
    return str(caught.value)


def test_ids_kubernetes_would_refuse_are_named_where_they_are() -> None:
    big = 2**31
    assert _owner_denial(
        {"securityContext": {"runAsUser": -1}, "containers": [{"name": "app"}]}
    ) == (
        "the pod's securityContext.runAsUser is -1, not a valid id (0 to 2147483647); fix the "
        "pod's securityContext"
    )
    app = {"name": "app", "securityContext": {"runAsUser": 1000, "runAsGroup": big}}
    assert _owner_denial({"containers": [app]}) == (
        f"container 'app' securityContext.runAsGroup is {big}, not a valid id (0 to 2147483647); "
        "fix the pod's securityContext"
    )
    fs = {"securityContext": {"fsGroup": big}, "containers": [{"name": "app"}]}
    assert _owner_denial({**fs, "securityContext": {"runAsUser": 7, "fsGroup": big}}) == (
        f"the pod's securityContext.fsGroup is {big}, not a valid id (0 to 2147483647); fix the "
        "pod's securityContext"
    )
    top = {"name": "app", "securityContext": {"runAsUser": 2**31 - 1}}
    owner = resolve_owner(
        {"containers": [top]}, ("app",), run_as_user=None, run_as_group=None, fallback_uid=1
    )
    assert (owner.uid, owner.gid) == (2**31 - 1, 2**31 - 1)


def test_an_app_running_as_root_is_refused_with_the_fix() -> None:
    root = {"securityContext": {"runAsUser": 0}, "containers": [{"name": "app"}]}
    assert _owner_denial(root) == (
        "annotation sakura-secrets.io/run-as-user: the target containers run as root (uid 0) and "
        "the init container must not run as root; set run-as-user to a non-root uid (an app "
        "running as root can still read the files)"
    )


def test_the_owner_check_lets_through_what_resolution_may_use() -> None:
    top = {"name": "app", "securityContext": {"runAsUser": 2**31 - 1, "runAsGroup": 2**31 - 1}}
    check_owner({"containers": [top]}, ("app",), run_as_user=None, run_as_group=None)
    groups = {
        "containers": [
            {"name": "a", "securityContext": {"runAsUser": 7, "runAsGroup": 1}},
            {"name": "b", "securityContext": {"runAsUser": 7, "runAsGroup": 2}},
        ]
    }
    check_owner(groups, ("a", "b"), run_as_user=None, run_as_group=42)  # the annotation wins
    with pytest.raises(Denied, match="disagree on runAsGroup"):
        check_owner(groups, ("a", "b"), run_as_user=None, run_as_group=None)


def test_owner_resolution_is_total() -> None:
    """Without targets (the checks never let that through) the fallback owns the files."""
    owner = resolve_owner(
        {"containers": []}, (), run_as_user=None, run_as_group=None, fallback_uid=9
    )
    assert (owner.uid, owner.gid, owner.file_mode) == (9, 9, 0o444)
