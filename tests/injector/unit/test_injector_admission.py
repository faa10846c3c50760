"""The admission pipeline end to end, without a server: AdmissionReview bytes in, answer out."""

from __future__ import annotations

import asyncio
import copy
import json
import os
from typing import Any

import jsonpatch
import pytest
from support.admission_harness import (
    CA_PEM,
    INIT,
    VAULT,
    P,
    RecordingCheck,
    admitted,
    denied,
    pod,
    review_body,
    settings,
    untouched,
    validate_pod,
)

from contract import Broker, Direct, FileSpec, Plan, SecretRef
from injector.serving import review_queue as admission
from injector.serving.admission_review import admission_review
from injector.webhook.annotations import parse_annotations
from injector.webhook.checks import CheckOutcome
from injector.webhook.errors import MalformedReview
from injector.webhook.mutation import inject
from injector.webhook.pod.mounts import target_containers
from injector.webhook.settings import MESH_PROXIES


async def review(body: bytes, **kw: Any) -> dict[str, Any]:
    """The AdmissionReview the HTTP shell answers `body` with."""
    return admission_review(await admission.review(body, **kw))


# --- the typical pod -------------------------------------------------------------------


async def test_typical_pod_gets_volume_init_container_mount_and_status() -> None:
    result = await admitted(pod())
    spec = result.pod["spec"]
    assert result.pod["metadata"]["annotations"][f"{P}status"] == "injected"
    assert spec["volumes"] == [
        {"name": "sakura-secrets", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
        {
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
        },
    ]
    assert [c["name"] for c in spec["initContainers"]] == [INIT]
    init = result.init
    assert init["image"] == "registry.example/sakura-secrets-injector:0.1.0"
    assert init["imagePullPolicy"] == "IfNotPresent"
    assert init["command"] == ["python", "-m", "sidecar"]
    assert init["terminationMessagePath"] == "/dev/termination-log"
    assert init.get("terminationMessagePolicy", "File") == "File"
    assert init["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert init["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "128Mi"},
    }
    assert init["volumeMounts"] == [
        {"name": "sakura-secrets", "mountPath": "/sakura/secrets"},
        {
            "name": "sakura-secrets-token",
            "mountPath": "/var/run/secrets/sakura-secrets.io",
            "readOnly": True,
        },
    ]
    assert {k: v.get("value") for k, v in result.env.items()} == {
        "SAKURA_SECRETS_PLAN": result.plan.to_json(),
        "SAKURA_SECRETS_BROKER_URL": "https://sakura-secrets-injector.sakura-secrets.svc",
        "SAKURA_SECRETS_BROKER_CA": CA_PEM,
        "SAKURA_SECRETS_TOKEN_FILE": "/var/run/secrets/sakura-secrets.io/token",
    }
    assert result.container("app")["volumeMounts"] == [
        {"name": "sakura-secrets", "mountPath": "/sakura/secrets", "readOnly": True}
    ]
    assert "automountServiceAccountToken" not in spec
    assert result.plan == Plan(
        files=(FileSpec("db-password", 0o400, secret=SecretRef("db-password")),),
        directory="/sakura/secrets",
        mode=Broker(),
        vault_id=VAULT,
        uid=1000,
        gid=1000,
    )


async def test_the_uid_is_echoed_and_the_check_sees_namespace_service_account_and_plan() -> None:
    check = RecordingCheck()
    obj = pod(serviceAccountName="shop-api")
    result = await admitted(obj, check=check, uid="abc-123", namespace="shop")
    assert result.response["uid"] == "abc-123"
    [(namespace, account, plan)] = check.calls
    assert (namespace, account) == ("shop", "shop-api")
    assert plan == result.plan  # the checked plan is the one the init container gets


async def test_the_service_account_defaults_to_default() -> None:
    check = RecordingCheck()
    await admitted(pod(), check=check)
    assert check.calls[0][1] == "default"


async def test_the_namespace_falls_back_to_the_pods_metadata() -> None:
    obj = pod()
    obj["metadata"]["namespace"] = "billing"
    body = json.loads(review_body(obj))
    del body["request"]["namespace"]
    check = RecordingCheck()
    answer = await review(json.dumps(body).encode(), settings=settings(), check=check)
    assert answer["response"]["allowed"] is True
    assert check.calls[0][0] == "billing"


async def test_check_warnings_become_review_warnings() -> None:
    check = RecordingCheck(
        CheckOutcome(warnings=("Sakura was unreachable; existence not checked",))
    )
    result = await admitted(pod(), check=check)
    assert result.warnings == ["Sakura was unreachable; existence not checked"]


async def test_check_denial_is_a_403_with_its_text_and_warnings() -> None:
    text = 'serviceaccount shop/default may not get sakura-secrets.io secrets "db-password"'
    check = RecordingCheck(CheckOutcome(denial=text, warnings=("w1",)))
    response = await denied(pod(), check=check)
    assert response["status"] == {
        "code": 403,
        "message": text,
    }
    assert response["warnings"] == ["w1"]


async def test_dry_run_gets_the_same_answer() -> None:
    real = await admitted(pod(), dry_run=False)
    dry = await admitted(pod(), dry_run=True)
    assert dry.response == real.response
    assert dry.check.calls == real.check.calls  # the check only reads; it runs either way


async def test_no_secret_value_appears_in_the_patch() -> None:
    values = {"db-password": "hunter2-value", "api": '{"user": "u-value", "token": "t-value"}'}
    obj = pod(
        {
            f"{P}secret-api-user": "api#user",
            f"{P}template-dsn": (
                'postgres://{{ secret("api#user") }}:{{ secret("db-password") }}@db'
            ),
        }
    )
    result = await admitted(obj)
    text = json.dumps(result.patch)
    for value in ("hunter2-value", "u-value", "t-value", *values.values()):
        assert value not in text
    assert "db-password" in text and "api" in text  # names, yes


# --- idempotency and other injectors --------------------------------------------------------


async def test_a_second_pass_over_the_injected_pod_changes_nothing() -> None:
    first = await admitted(pod())
    check = RecordingCheck()
    await untouched(first.pod, check=check)
    assert check.calls == []


def _realistic_pod() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "shop-api-7d9f-",
            "labels": {"app": "shop-api", "pod-template-hash": "7d9f"},
            "annotations": {
                f"{P}inject": "true",
                f"{P}secret-db-password": "db@3#password",
                f"{P}secret-api-key": "payments-api-key",
                f"{P}template-config.yaml": (
                    'db:\n  user: {{ secret("db@3#user") }}\n'
                    '  password: {{ secret("db", version=3, key="password") }}\n'
                ),
                f"{P}file-mode": "0440",
                f"{P}file-mode-config.yaml": "0444",
                f"{P}containers": "api,worker",
                f"{P}mount-path": "/etc/shop/secrets",
                "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z",
                "vault.hashicorp.com/agent-inject-status": "injected",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "shop-api-7d9f",
                    "uid": "0b7a3c2e-1111-4222-8333-444455556666",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": "shop-api",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000},
            "initContainers": [
                {
                    "name": "istio-init",
                    "image": "istio/proxyv2:1.22",
                    "args": ["istio-iptables"],
                    "securityContext": {"runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}},
                },
                {"name": "migrate", "image": "shop/migrate:1", "command": ["migrate", "up"]},
            ],
            "containers": [
                {
                    "name": "api",
                    "image": "shop/api:1",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": "CONFIG", "value": "/etc/shop/config"}],
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/shop/config", "readOnly": True},
                        {
                            "name": "kube-api-access-abcde",
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                            "readOnly": True,
                        },
                    ],
                    "resources": {"requests": {"cpu": "100m"}},
                },
                {
                    "name": "worker",
                    "image": "shop/worker:1",
                    "securityContext": {"readOnlyRootFilesystem": True},
                },
                {
                    "name": "istio-proxy",
                    "image": "istio/proxyv2:1.22",
                    "securityContext": {"runAsUser": 1337, "runAsGroup": 1337},
                },
            ],
            "volumes": [
                {"name": "config", "configMap": {"name": "shop-config"}},
                {
                    "name": "kube-api-access-abcde",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
                        ]
                    },
                },
            ],
        },
    }


async def test_realistic_pod_patch_applied_equals_the_built_pod() -> None:
    obj = _realistic_pod()
    result = await admitted(obj, namespace="shop")
    webhook = settings()
    injection = parse_annotations(obj["metadata"]["annotations"], webhook)
    options = injection.options
    targets = target_containers(obj["spec"], options.containers, webhook.mesh_proxy_containers)
    plan = Plan(
        files=injection.files,
        directory=options.mount_path,
        mode=injection.mode,
        vault_id=injection.vault_id,
        uid=1000,
        gid=3000,
    )
    built = inject(obj, plan, injection.options, targets, webhook, ())
    assert jsonpatch.apply_patch(obj, result.patch) == built
    validate_pod(built)

    spec = result.pod["spec"]
    # our init container first, other injectors' init containers kept in order and unchanged
    assert [c["name"] for c in spec["initContainers"]] == [INIT, "istio-init", "migrate"]
    assert spec["initContainers"][1:] == obj["spec"]["initContainers"]
    # only the listed containers get the mount; istio-proxy (uid 1337) is not a target
    mount = {"name": "sakura-secrets", "mountPath": "/etc/shop/secrets", "readOnly": True}
    assert result.container("api")["volumeMounts"][-1] == mount
    assert (
        result.container("api")["volumeMounts"][:-1] == obj["spec"]["containers"][0]["volumeMounts"]
    )
    assert result.container("worker")["volumeMounts"] == [mount]
    assert "volumeMounts" not in result.container("istio-proxy")
    # the token is in the init container only
    for container in [*spec["containers"], *spec["initContainers"][1:]]:
        assert all(m["name"] != "sakura-secrets-token" for m in container.get("volumeMounts", []))
    assert result.init["securityContext"]["runAsUser"] == 1000
    assert result.init["securityContext"]["runAsGroup"] == 3000
    assert {f.name: oct(f.mode) for f in result.plan.files} == {
        "api-key": "0o440",
        "config.yaml": "0o444",
        "db-password": "0o440",
    }
    assert result.plan.secrets() == (
        SecretRef("db", 3).fetch,
        SecretRef("payments-api-key").fetch,
    )
    assert result.pod["metadata"]["annotations"]["vault.hashicorp.com/agent-inject-status"] == (
        "injected"
    )
    assert result.pod["metadata"]["ownerReferences"] == obj["metadata"]["ownerReferences"]


async def test_init_first_false_appends_after_other_init_containers() -> None:
    obj = _realistic_pod()
    obj["metadata"]["annotations"][f"{P}init-first"] = "false"
    result = await admitted(obj)
    names = [c["name"] for c in result.pod["spec"]["initContainers"]]
    assert names == ["istio-init", "migrate", INIT]


async def test_init_first_true_is_the_default_and_accepted() -> None:
    obj = _realistic_pod()
    obj["metadata"]["annotations"][f"{P}init-first"] = "true"
    result = await admitted(obj)
    assert result.pod["spec"]["initContainers"][0]["name"] == INIT


def test_a_pod_without_annotations_or_volumes_gets_them_created_by_the_patch() -> None:
    obj = pod()
    webhook = settings()
    injection = parse_annotations(obj["metadata"]["annotations"], webhook)
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": obj["spec"]}
    plan = Plan(files=injection.files, directory="/sakura/secrets", vault_id=VAULT, uid=1, gid=1)
    built = inject(bare, plan, injection.options, ("app",), webhook, ())
    patch = jsonpatch.make_patch(bare, built)
    assert jsonpatch.apply_patch(bare, patch) == built
    assert built["metadata"]["annotations"] == {f"{P}status": "injected"}
    validate_pod(built)
    warned = inject(bare, plan, injection.options, ("app",), webhook, ("one", "two"))
    assert warned["metadata"]["annotations"] == {
        f"{P}status": "injected",
        f"{P}status-warnings": "one\ntwo",
    }


# --- containers selection -------------------------------------------------------------------

THREE = [
    {"name": "a", "image": "x", "securityContext": {"runAsUser": 1000}},
    {"name": "b", "image": "x", "securityContext": {"runAsUser": 1000}},
    {"name": "c", "image": "x", "securityContext": {"runAsUser": 1000}},
]


@pytest.mark.parametrize(
    ("value", "mounted"),
    [
        (None, {"a", "b", "c"}),
        ("b", {"b"}),
        ("a, c", {"a", "c"}),
        ("c,a,c", {"a", "c"}),
    ],
)
async def test_containers_annotation_selects_the_mounted_containers(
    value: str | None, mounted: set[str]
) -> None:
    notes = {} if value is None else {f"{P}containers": value}
    result = await admitted(pod(notes, copy.deepcopy(THREE)))
    got = {c["name"] for c in result.pod["spec"]["containers"] if c.get("volumeMounts")}
    assert got == mounted


def _meshed(proxy: str) -> dict[str, Any]:
    """A pod whose mesh's webhook ran before ours: its proxy runs as the mesh's own user."""
    return pod(
        containers=[
            {"name": "app", "image": "x", "securityContext": {"runAsUser": 1000}},
            {"name": proxy, "image": "mesh/proxy", "securityContext": {"runAsUser": 1337}},
        ]
    )


@pytest.mark.parametrize("proxy", ["istio-proxy", "linkerd-proxy"])
async def test_a_known_mesh_proxy_is_not_a_target_by_default(proxy: str) -> None:
    result = await admitted(_meshed(proxy))
    assert "volumeMounts" not in result.container(proxy)
    assert result.container("app")["volumeMounts"][0]["name"] == "sakura-secrets"
    assert (result.plan.uid, result.plan.gid) == (1000, 1000)  # the app's, not the proxy's
    assert result.warnings == []


async def test_an_app_whose_image_decides_its_user_next_to_istio_gets_readable_files() -> None:
    obj = _meshed("istio-proxy")
    del obj["spec"]["containers"][0]["securityContext"]
    result = await admitted(obj)
    assert [f.mode for f in result.plan.files] == [0o444]  # the proxy's 1337 is not the owner
    assert result.plan.uid == 65532
    assert "volumeMounts" not in result.container("istio-proxy")


async def test_more_mesh_proxies_come_from_the_settings() -> None:
    obj = _meshed("envoy")
    response = await denied(obj)
    assert "disagree on runAsUser (app: 1000, envoy: 1337)" in response["status"]["message"]
    webhook = settings(mesh_proxy_containers=(*MESH_PROXIES, "envoy"))
    result = await admitted(obj, webhook=webhook)
    assert "volumeMounts" not in result.container("envoy")


async def test_a_mesh_proxy_named_in_containers_is_a_target() -> None:
    obj = _meshed("istio-proxy")
    obj["metadata"]["annotations"][f"{P}containers"] = "app,istio-proxy"
    obj["metadata"]["annotations"][f"{P}run-as-user"] = "1000"
    result = await admitted(obj)
    assert result.container("istio-proxy")["volumeMounts"][0]["name"] == "sakura-secrets"


async def test_a_pod_of_mesh_proxies_only_is_denied() -> None:
    obj = pod(containers=[{"name": "istio-proxy", "image": "x"}, {"name": "linkerd-proxy"}])
    response = await denied(obj)
    assert response["status"]["message"] == (
        "the pod's only containers are mesh proxies (istio-proxy, linkerd-proxy); add the app "
        f"container, or name the proxy in {P}containers"
    )


# --- direct mode ----------------------------------------------------------------------------


async def test_direct_mode_swaps_the_token_for_credentials_from_the_secret() -> None:
    webhook = settings(sakura_endpoint="http://emulator:8080", sakura_zone="is1a")
    result = await admitted(pod({f"{P}credentials-secret": "sakura-creds"}), webhook=webhook)
    spec = result.pod["spec"]
    assert [v["name"] for v in spec["volumes"]] == ["sakura-secrets"]
    assert result.init["volumeMounts"] == [
        {"name": "sakura-secrets", "mountPath": "/sakura/secrets"}
    ]
    assert result.env["SAKURA_ACCESS_TOKEN"] == {
        "name": "SAKURA_ACCESS_TOKEN",
        "valueFrom": {
            "secretKeyRef": {"name": "sakura-creds", "key": "SAKURA_ACCESS_TOKEN", "optional": True}
        },
    }
    for key in ("SAKURA_ACCESS_TOKEN_SECRET", "SAKURA_SERVICE_PRINCIPAL_ID", "SAKURA_PRIVATE_KEY"):
        assert result.env[key]["valueFrom"] == {
            "secretKeyRef": {"name": "sakura-creds", "key": key, "optional": True}
        }
    assert result.env["SAKURA_ENDPOINTS_SECRETMANAGER"]["value"] == "http://emulator:8080"
    assert result.env["SAKURA_ZONE"]["value"] == "is1a"
    assert not {"SAKURA_SECRETS_BROKER_URL", "SAKURA_SECRETS_TOKEN_FILE"} & set(result.env)
    assert result.plan.mode == Direct("sakura-creds")
    assert len(result.check.calls) == 1  # the real check decides what direct mode needs


async def test_direct_mode_without_endpoint_settings_sets_only_the_credentials() -> None:
    result = await admitted(pod({f"{P}credentials-secret": "creds.v2"}))
    assert set(result.env) == {
        "SAKURA_SECRETS_PLAN",
        "SAKURA_ACCESS_TOKEN",
        "SAKURA_ACCESS_TOKEN_SECRET",
        "SAKURA_SERVICE_PRINCIPAL_ID",
        "SAKURA_SERVICE_PRINCIPAL_KEY_ID",
        "SAKURA_PRIVATE_KEY",
        "SAKURA_TOKEN_ENDPOINT",
    }


# --- each annotation's effect ---------------------------------------------------------------


async def test_vault_id_annotation_overrides_the_default() -> None:
    result = await admitted(pod({f"{P}vault-id": "999999999999"}))
    assert result.plan.vault_id == "999999999999"


async def test_mount_path_is_used_by_init_container_app_and_plan() -> None:
    result = await admitted(pod({f"{P}mount-path": "/run/app-secrets/"}))
    assert result.plan.directory == "/run/app-secrets"
    assert result.init["volumeMounts"][0]["mountPath"] == "/run/app-secrets"
    assert result.container("app")["volumeMounts"][0]["mountPath"] == "/run/app-secrets"


async def test_resources_annotations_override_the_defaults() -> None:
    notes = {
        f"{P}cpu-request": "100m",
        f"{P}cpu-limit": "1",
        f"{P}memory-request": "32Mi",
        f"{P}memory-limit": "0.5Gi",
    }
    result = await admitted(pod(notes))
    assert result.init["resources"] == {
        "requests": {"cpu": "100m", "memory": "32Mi"},
        "limits": {"cpu": "1", "memory": "0.5Gi"},
    }


async def test_a_request_below_the_default_limit_keeps_the_default_limit() -> None:
    result = await admitted(pod({f"{P}memory-request": "100Mi"}))
    assert result.init["resources"]["limits"]["memory"] == "128Mi"


async def test_templates_list_the_secrets_they_read() -> None:
    template = '{{ secret("db#user") }}:{{ secret("db#pass") }}@{{ secret("host", version=2) }}'
    result = await admitted(pod({f"{P}template-dsn": template}))
    (dsn,) = [f for f in result.plan.files if f.name == "dsn"]
    assert dsn.template == template
    assert dsn.template_refs == (
        SecretRef("db", None, "user"),
        SecretRef("db", None, "pass"),
        SecretRef("host", 2),
    )


async def test_settings_pull_policy_and_volume_size_are_used() -> None:
    webhook = settings(image_pull_policy="Always", volume_size_limit="1Mi")
    result = await admitted(pod(), webhook=webhook)
    assert result.init["imagePullPolicy"] == "Always"
    assert result.pod["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "1Mi"


async def test_run_as_annotations_set_the_owner_and_init_container_user() -> None:
    result = await admitted(pod({f"{P}run-as-user": "4242", f"{P}run-as-group": "0"}))
    assert (result.plan.uid, result.plan.gid) == (4242, 0)
    context = result.init["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (4242, 0)


async def test_fallback_owner_comes_with_a_warning() -> None:
    result = await admitted(pod(containers=[{"name": "app", "image": "x"}]))
    assert (result.plan.uid, result.plan.gid) == (65532, 65532)
    (warning,) = result.warnings
    assert "65532" in warning and f"{P}run-as-user" in warning
    assert len(warning) <= 256  # the API server may truncate longer warnings


# --- not injected ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "namespace"),
    [
        (pod(inject=False), "shop"),
        (pod({f"{P}inject": "false"}), "shop"),
        (pod(), "kube-system"),
        (pod(), "sakura-secrets"),
        (pod({f"{P}status": "injected"}), "shop"),
        (pod({f"{P}status": "injected", f"{P}bogus": "x"}), "shop"),
        ({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a"}]}}, "shop"),
    ],
    ids=[
        "no-annotation",
        "inject-false",
        "kube-system",
        "own-namespace",
        "status",
        "status-2",
        "bare",
    ],
)
async def test_pods_that_are_not_injected_are_admitted_without_a_patch(
    obj: dict, namespace: str
) -> None:
    check = RecordingCheck()
    await untouched(obj, namespace=namespace, check=check)
    assert check.calls == []


@pytest.mark.parametrize("operation", ["UPDATE", "DELETE", "CONNECT"])
async def test_operations_other_than_create_are_admitted_without_a_patch(operation: str) -> None:
    await untouched(pod(), operation=operation)


async def test_other_kinds_and_subresources_are_admitted_without_a_patch() -> None:
    body = json.loads(review_body(pod()))
    body["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    answer = await review(json.dumps(body).encode(), settings=settings(), check=RecordingCheck())
    assert answer["response"] == {"uid": body["request"]["uid"], "allowed": True}
    body = json.loads(review_body(pod()))
    body["request"]["subResource"] = "ephemeralcontainers"
    answer = await review(json.dumps(body).encode(), settings=settings(), check=RecordingCheck())
    assert answer["response"] == {"uid": body["request"]["uid"], "allowed": True}


# --- every denial path ----------------------------------------------------------------------

DENIALS = [
    # (extra annotations, containers or None, expected fragments)
    ({f"{P}mountpath": "/x"}, None, [f"{P}mountpath", f"did you mean {P}mount-path"]),
    ({f"{P}secrets-api": "api"}, None, [f"{P}secrets-api", f"did you mean {P}secret-api"]),
    ({f"{P}fle-mode": "0400"}, None, [f"did you mean {P}file-mode"]),
    ({f"{P}zzzz": "1"}, None, [f"{P}zzzz is not a known annotation", "secret-FILE"]),
    ({f"{P}secret-": "db"}, None, [f"{P}secret- names no file", "secret-FILE"]),
    ({f"{P}template": "x"}, None, [f"{P}template names no file"]),
    ({f"{P}secret-.hidden": "db"}, None, [f"{P}secret-.hidden", "not a plain file name"]),
    ({f"{P}template--x": '{{ secret("a") }}'}, None, [f"{P}template--x", "plain file name"]),
    ({f"{P}secret-db-password": "db@x"}, None, [f"{P}secret-db-password", "not a whole number"]),
    ({f"{P}secret-db-password": "db@0"}, None, [f"{P}secret-db-password", "NAME@3"]),
    ({f"{P}secret-db-password": "db#"}, None, [f"{P}secret-db-password", "key"]),
    ({f"{P}secret-db-password": ""}, None, [f"{P}secret-db-password", "not a secret reference"]),
    ({f"{P}template-t": '{{ secret("a") '}, None, [f"{P}template-t", "does not parse"]),
    ({f"{P}template-t": "static"}, None, [f"{P}template-t", "reads no secret"]),
    ({f"{P}template-t": "{{ secret(name) }}"}, None, [f"{P}template-t", "constant"]),
    ({f"{P}template-t": "{{ env }}{{ secret('a') }}"}, None, [f"{P}template-t", "'env'"]),
    (
        {f"{P}template-t": "{{ secret('a') }}{{ " + "(" * 400 + "1" + ")" * 400 + " }}"},
        None,
        [f"{P}template-t", "nests too deeply"],
    ),
    (
        {f"{P}template-db-password": '{{ secret("a") }}'},
        None,
        [f"{P}secret-db-password", f"{P}template-db-password", "keep one"],
    ),
    ({f"{P}vault-id": "12345"}, None, [f"{P}vault-id", "12 digits"]),
    ({f"{P}mount-path": "relative/dir"}, None, [f"{P}mount-path", "not an absolute path"]),
    ({f"{P}mount-path": "/"}, None, [f"{P}mount-path", "root directory"]),
    ({f"{P}mount-path": "/a/../etc"}, None, [f"{P}mount-path", "'..'"]),
    ({f"{P}mount-path": "/a//b"}, None, [f"{P}mount-path", "empty"]),
    ({f"{P}mount-path": "/a b"}, None, [f"{P}mount-path", "whitespace"]),
    (
        {f"{P}mount-path": "/var/run/secrets/sakura-secrets.io"},
        None,
        [f"{P}mount-path", "token"],
    ),
    ({f"{P}mount-path": "/var/run/secrets"}, None, [f"{P}mount-path", "token"]),
    ({f"{P}mount-path": "/var/run/secrets/sakura-secrets.io/x"}, None, [f"{P}mount-path", "token"]),
    ({f"{P}containers": " , "}, None, [f"{P}containers is empty"]),
    ({f"{P}containers": "app,nope"}, None, [f"{P}containers", "'nope'", "app containers: app"]),
    ({f"{P}file-mode": "0800"}, None, [f"{P}file-mode", "octal"]),
    ({f"{P}file-mode": "rw"}, None, [f"{P}file-mode", "octal"]),
    ({f"{P}file-mode": "04000"}, None, [f"{P}file-mode", "octal"]),
    ({f"{P}file-mode": "0200"}, None, [f"{P}file-mode", "no one read"]),
    ({f"{P}file-mode-db-password": "9"}, None, [f"{P}file-mode-db-password", "octal"]),
    ({f"{P}file-mode-other": "0400"}, None, [f"{P}file-mode-other", "files: db-password"]),
    ({f"{P}run-as-user": "nobody"}, None, [f"{P}run-as-user", "numeric"]),
    ({f"{P}run-as-user": "-1"}, None, [f"{P}run-as-user", "numeric"]),
    ({f"{P}run-as-user": "0"}, None, [f"{P}run-as-user", "must not run as root"]),
    ({f"{P}run-as-user": "4294967296"}, None, [f"{P}run-as-user", "numeric"]),
    ({f"{P}run-as-group": "wheel"}, None, [f"{P}run-as-group", "numeric"]),
    ({f"{P}run-as-user": "\u00b2"}, None, [f"{P}run-as-user", "numeric"]),
    ({f"{P}run-as-group": "\u0663"}, None, [f"{P}run-as-group", "numeric"]),
    ({f"{P}init-first": "yes"}, None, [f"{P}init-first", '"true" or "false"']),
    ({f"{P}refresh-interval": "5"}, None, [f"{P}refresh-interval", "30s, 5m", "10s to 24h"]),
    ({f"{P}credentials-secret": "Bad_Name"}, None, [f"{P}credentials-secret", "Secret name"]),
    ({f"{P}credentials-secret": "x" * 254}, None, [f"{P}credentials-secret", "253"]),
    ({f"{P}cpu-request": "lots"}, None, [f"{P}cpu-request", "not a Kubernetes quantity"]),
    ({f"{P}memory-limit": "12XB"}, None, [f"{P}memory-limit", "not a Kubernetes quantity"]),
    ({f"{P}memory-limit": "-1Mi"}, None, [f"{P}memory-limit", "not a Kubernetes quantity"]),
    ({f"{P}cpu-limit": "0"}, None, [f"{P}cpu-limit", "zero"]),
    ({f"{P}cpu-request": "2"}, None, [f"{P}cpu-request", "500m (the default)", f"{P}cpu-limit"]),
    (
        {f"{P}memory-request": "256Mi", f"{P}memory-limit": "128Mi"},
        None,
        [f"{P}memory-request", "exceeds the memory limit 128Mi;"],
    ),
    ({f"{P}memory-limit": "32Mi"}, None, [f"{P}memory-limit", "64Mi exceeds"]),
    ({f"{P}status": "pending"}, None, [f"{P}status", "remove it"]),
    ({f"{P}inject": "yes"}, None, [f"{P}inject", '"true"']),
    # the pod itself
    (
        {},
        [
            {
                "name": "app",
                "image": "x",
                "securityContext": {"runAsUser": 1000},
                "volumeMounts": [{"name": "data", "mountPath": "/sakura/secrets/"}],
            }
        ],
        [f"{P}mount-path", "container 'app' already mounts volume 'data' at /sakura/secrets"],
    ),
    (
        {},
        [{"name": "app", "image": "x", "securityContext": {"runAsUser": 0}}],
        [f"{P}run-as-user", "root", "must not run as root"],
    ),
    (
        {},
        [
            {"name": "a", "image": "x", "securityContext": {"runAsUser": 1000}},
            {"name": "b", "image": "x", "securityContext": {"runAsUser": 2000}},
        ],
        [f"{P}run-as-user", "a: 1000, b: 2000", f"{P}containers"],
    ),
    (
        {},
        [
            {"name": "a", "image": "x", "securityContext": {"runAsUser": 1000}},
            {"name": "b", "image": "x"},
        ],
        [f"{P}run-as-user", "b: image default"],
    ),
    (
        {},
        [
            {"name": "a", "image": "x", "securityContext": {"runAsUser": 1, "runAsGroup": 5}},
            {"name": "b", "image": "x", "securityContext": {"runAsUser": 1, "runAsGroup": 6}},
        ],
        [f"{P}run-as-group", "a: 5, b: 6"],
    ),
    (
        {},
        [{"name": "sakura-secrets-init", "image": "x", "securityContext": {"runAsUser": 1}}],
        ["container named 'sakura-secrets-init'", "rename"],
    ),
    ({}, [], ["no containers"]),
    # ids the API server would refuse later: a denial naming the field, not an internal error
    (
        {},
        [{"name": "app", "image": "x", "securityContext": {"runAsUser": -5}}],
        ["container 'app' securityContext.runAsUser is -5", "not a valid id"],
    ),
    (
        {},
        [{"name": "app", "image": "x", "securityContext": {"runAsUser": 1, "runAsGroup": 2**31}}],
        ["container 'app' securityContext.runAsGroup is 2147483648"],
    ),
    (
        {f"{P}run-as-user": "1000"},
        [{"name": "app", "image": "x", "securityContext": {"runAsGroup": -1}}],
        ["container 'app' securityContext.runAsGroup is -1"],
    ),
]


@pytest.mark.parametrize(
    ("notes", "containers", "fragments"),
    DENIALS,
    ids=[str(i) for i in range(len(DENIALS))],
)
async def test_every_invalid_input_is_denied_naming_the_annotation_and_the_fix(
    notes: dict, containers: list | None, fragments: list[str]
) -> None:
    check = RecordingCheck()
    response = await denied(pod(notes, containers), check=check)
    message = response["status"]["message"]
    assert response["status"]["code"] == 400
    for fragment in fragments:
        assert fragment in message, message
    assert check.calls == []  # an invalid pod never costs an RBAC or Sakura lookup


async def test_no_file_annotation_is_denied() -> None:
    obj = pod(inject=False)
    obj["metadata"]["annotations"] = {f"{P}inject": "true", f"{P}vault-id": VAULT}
    response = await denied(obj)
    assert f"{P}secret-FILE" in response["status"]["message"]


async def test_no_vault_anywhere_is_denied_with_how_to_set_one() -> None:
    response = await denied(pod(), webhook=settings(default_vault_id=None))
    message = response["status"]["message"]
    assert f"{P}vault-id" in message and "default" in message


async def test_containers_naming_an_init_container_says_why() -> None:
    obj = _realistic_pod()
    obj["metadata"]["annotations"][f"{P}containers"] = "migrate"
    response = await denied(obj)
    assert "init containers cannot get the mount" in response["status"]["message"]


async def test_volume_name_clash_is_denied() -> None:
    obj = pod(volumes=[{"name": "sakura-secrets", "emptyDir": {}}])
    response = await denied(obj)
    assert response["status"]["message"] == (
        "the pod already has a volume named 'sakura-secrets', which the injector adds; "
        "rename that volume"
    )


@pytest.mark.parametrize("field", ["containers", "initContainers"])
async def test_container_name_clash_is_denied(field: str) -> None:
    ours = {"name": INIT, "image": "x", "securityContext": {"runAsUser": 1000}}
    obj = pod(containers=[ours]) if field == "containers" else pod(initContainers=[ours])
    response = await denied(obj)
    assert response["status"]["message"] == (
        f"the pod already has a container named {INIT!r}, which the injector adds; "
        "rename that container"
    )


async def test_the_pods_own_volumes_and_annotations_are_kept() -> None:
    theirs = {"name": "data", "emptyDir": {}}
    obj = pod(volumes=[theirs])
    result = await admitted(obj)
    volumes = result.pod["spec"]["volumes"]
    assert volumes[0] == theirs and [v["name"] for v in volumes[1:]] == [
        "sakura-secrets",
        "sakura-secrets-token",
    ]
    assert obj["metadata"]["annotations"].items() <= result.pod["metadata"]["annotations"].items()


def test_a_pod_without_metadata_gets_the_status_annotation() -> None:
    obj = pod()
    webhook = settings()
    injection = parse_annotations(obj["metadata"]["annotations"], webhook)
    bare = {"apiVersion": "v1", "kind": "Pod", "spec": obj["spec"]}
    plan = Plan(files=injection.files, directory="/sakura/secrets", vault_id=VAULT, uid=1, gid=1)
    built = inject(bare, plan, injection.options, ("app",), webhook, ())
    assert built["metadata"] == {"annotations": {f"{P}status": "injected"}}
    warned = inject(bare, plan, injection.options, ("app",), webhook, ("w",))
    assert warned["metadata"] == {
        "annotations": {f"{P}status": "injected", f"{P}status-warnings": "w"}
    }


@pytest.mark.parametrize("volume", ["sakura-secrets-token", "sakura-secrets"])
@pytest.mark.parametrize("field", ["containers", "initContainers"])
async def test_a_container_cannot_pre_mount_the_injected_volumes(volume: str, field: str) -> None:
    # the volume only exists after the patch, so such a mount would pick up the broker token
    # (or a writable view of the files) in a container the injector did not choose
    sneaky = {
        "name": "sneaky",
        "image": "x",
        "securityContext": {"runAsUser": 1000},
        "volumeMounts": [{"name": volume, "mountPath": "/stolen"}],
    }
    obj = pod(containers=[sneaky]) if field == "containers" else pod(initContainers=[sneaky])
    response = await denied(obj)
    message = response["status"]["message"]
    assert message == (
        f"container 'sneaky' mounts volume '{volume}', which the injector adds for its own init "
        "container; remove that volumeMount (app containers get the files read-only through "
        "sakura-secrets.io/containers)"
    )


async def test_a_negative_pod_level_id_is_denied_naming_the_field() -> None:
    for context, field in (({"runAsUser": -1}, "runAsUser"), ({"fsGroup": -2}, "fsGroup")):
        response = await denied(pod(securityContext=context))
        assert f"the pod's securityContext.{field} is -" in response["status"]["message"]
        assert response["status"]["code"] == 400


async def test_a_disagreement_outside_the_selected_containers_does_not_matter() -> None:
    containers = [
        {"name": "a", "image": "x", "securityContext": {"runAsUser": 1000}},
        {"name": "b", "image": "x", "securityContext": {"runAsUser": 2000}},
    ]
    result = await admitted(pod({f"{P}containers": "b"}, containers))
    assert result.plan.uid == 2000


# --- malformed reviews ----------------------------------------------------------------------


def _mangled(change: str) -> bytes:
    body = json.loads(review_body(pod()))
    request = body["request"]
    obj = request["object"]
    if change == "v1beta1":
        body["apiVersion"] = "admission.k8s.io/v1beta1"
    elif change == "kind":
        body["kind"] = "TokenReview"
    elif change == "no-request":
        del body["request"]
    elif change == "no-uid":
        del request["uid"]
    elif change == "uid-int":
        request["uid"] = 7
    elif change == "no-kind":
        del request["kind"]
    elif change == "no-operation":
        del request["operation"]
    elif change == "no-object":
        del request["object"]
    elif change == "no-spec":
        del obj["spec"]
    elif change == "containers-dict":
        obj["spec"]["containers"] = {"name": "app"}
    elif change == "container-name":
        obj["spec"]["containers"] = [{"image": "x"}]
    elif change == "annotation-int":
        obj["metadata"]["annotations"]["x"] = 1
    elif change == "run-as-user-str":
        obj["spec"]["securityContext"] = {"runAsUser": "1000"}
    elif change == "mount-path-int":
        obj["spec"]["containers"][0]["volumeMounts"] = [{"name": "v", "mountPath": 3}]
    elif change == "no-namespace":
        del request["namespace"]
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"AdmissionReview"',
        *(
            _mangled(c)
            for c in (
                "v1beta1",
                "kind",
                "no-request",
                "no-uid",
                "uid-int",
                "no-kind",
                "no-operation",
                "no-object",
                "no-spec",
                "containers-dict",
                "container-name",
                "annotation-int",
                "run-as-user-str",
                "mount-path-int",
                "no-namespace",
            )
        ),
    ],
)
async def test_a_malformed_review_raises_malformed_review(body: bytes) -> None:
    with pytest.raises(MalformedReview) as caught:
        await review(body, settings=settings(), check=RecordingCheck())
    assert str(caught.value)


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


async def test_a_deeply_nested_review_is_malformed_not_an_internal_error() -> None:
    envelope = b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u",'
    too_deep_to_parse = envelope + b'"a":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_002
    obj = pod()
    obj["spec"]["containers"][0]["x"] = _nested(700)  # parses, but copy/diff would recurse
    for body in (too_deep_to_parse, review_body(obj)):
        with pytest.raises(MalformedReview, match="nested more than"):
            await review(body, settings=settings(), check=RecordingCheck())
    shallow = pod()
    shallow["spec"]["containers"][0]["x"] = _nested(40)  # unknown fields are not our business
    answer = await review(review_body(shallow), settings=settings(), check=RecordingCheck())
    assert answer["response"]["allowed"] is True


def test_the_schema_check_used_by_every_mutation_test_can_fail() -> None:
    import kubernetes_validate

    result = pod()
    result["spec"]["initContainers"] = [{"name": INIT, "image": "x", "runAsUser": 1}]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_pod(result)


def test_a_forked_child_still_runs_the_admission_work() -> None:
    """The pool's thread does not survive a fork; the child must get a pool of its own."""
    assert asyncio.run(admission.QUEUE.run("k", lambda: 1)) == 1  # this process's thread runs
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        try:
            ran = asyncio.run(asyncio.wait_for(admission.QUEUE.run("k", lambda: 7), 60))
            code = 0 if ran == 7 else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
