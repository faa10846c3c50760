"""`env-VAR` annotations: parsing and denials, the gate (`WebhookSettings.env_files`), and the
pod they make, validated strictly against the Kubernetes 1.35, 1.36 and 1.37 schemas (the
versions whose kubelets read `fileKeyRef` variables), with no value anywhere in it.

support.admission_harness's `admitted` validates against 1.25, which has no `fileKeyRef`: the
pods here are validated against the newer schemas instead (`_admit`).
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
from support.admission_harness import INIT, P, denied, pod, run, settings

from contract import Plan, SecretRef
from contract.env_file import EnvSpec
from contract.plan import ENV_DIRECTORY

ENV_SCHEMAS = ("1.35.0", "1.36.0", "1.37.0")
ON = settings(env_files=True)
ENV_VOLUME = "sakura-secrets-env"


def _fkr(name: str) -> dict[str, Any]:
    ref = {"volumeName": ENV_VOLUME, "path": "secrets.env", "key": name, "optional": False}
    return {"name": name, "valueFrom": {"fileKeyRef": ref}}


def _env_pod(notes: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    return pod({f"{P}env-DB_PASSWORD": "db#password", **(notes or {})}, **kw)


async def _admit(obj: dict[str, Any], webhook: Any = ON) -> dict[str, Any]:
    """The admitted pod, validated strictly against each schema with `fileKeyRef`."""
    answer = await run(obj, webhook=webhook)
    response = answer["response"]
    assert response["allowed"] is True, response
    patch = json.loads(base64.b64decode(response["patch"]))
    mutated: dict[str, Any] = jsonpatch.apply_patch(obj, patch)
    for schema in ENV_SCHEMAS:
        kubernetes_validate.validate(copy.deepcopy(mutated), schema, strict=True)
    return mutated


def _plan(mutated: dict[str, Any]) -> Plan:
    (init,) = [c for c in mutated["spec"]["initContainers"] if c["name"] == INIT]
    (text,) = [e["value"] for e in init["env"] if e["name"] == "SAKURA_SECRETS_PLAN"]
    return Plan.from_json(text)


async def _message(obj: dict[str, Any], webhook: Any = ON) -> str:
    response = await denied(obj, webhook=webhook)
    return str(response["status"]["message"])


async def test_the_pod_gets_file_key_refs_and_the_init_container_writes_the_env_file() -> None:
    notes = {f"{P}env-API_KEY": "api@3", f"{P}env-a": "x"}
    mutated = await _admit(_env_pod(notes))
    spec = mutated["spec"]
    (app,) = spec["containers"]
    assert app["env"] == [_fkr("API_KEY"), _fkr("DB_PASSWORD"), _fkr("a")]
    assert {"name": ENV_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "2Mi"}} in spec[
        "volumes"
    ]
    (init,) = spec["initContainers"]
    assert {"name": ENV_VOLUME, "mountPath": ENV_DIRECTORY} in init["volumeMounts"]
    assert all(m["name"] != ENV_VOLUME for m in app["volumeMounts"])  # no app mounts it
    plan = _plan(mutated)
    assert plan.env == (
        EnvSpec("API_KEY", SecretRef("api", 3)),
        EnvSpec("DB_PASSWORD", SecretRef("db", key="password")),
        EnvSpec("a", SecretRef("x")),
    )
    assert json.loads(plan.to_json())["format"] == 3  # an older init image refuses it
    assert [f.name for f in plan.files] == ["db-password"]


async def test_a_pod_with_variables_only_gets_no_file() -> None:
    obj = pod({f"{P}env-TOKEN": "token"}, inject=False)
    obj["metadata"]["annotations"][f"{P}inject"] = "true"
    plan = _plan(await _admit(obj))
    assert (plan.files, [v.name for v in plan.env]) == ((), ["TOKEN"])


async def test_only_the_target_containers_get_the_variables() -> None:
    containers = [{"name": "app", "image": "a"}, {"name": "metrics", "image": "m"}]
    obj = _env_pod({f"{P}containers": "app"}, containers=containers)
    spec = (await _admit(obj))["spec"]
    assert spec["containers"][0]["env"] == [_fkr("DB_PASSWORD")]
    assert "env" not in spec["containers"][1]


async def test_existing_env_is_kept_and_the_variables_appended() -> None:
    containers = [{"name": "app", "image": "a", "env": [{"name": "MODE", "value": "prod"}]}]
    spec = (await _admit(_env_pod(containers=containers)))["spec"]
    assert spec["containers"][0]["env"] == [{"name": "MODE", "value": "prod"}, _fkr("DB_PASSWORD")]


async def test_a_variable_the_container_defines_is_denied_naming_the_container() -> None:
    own = [{"name": "DB_PASSWORD", "value": "dev"}, {"name": "MODE", "value": "prod"}]
    obj = _env_pod(containers=[{"name": "app", "image": "a", "env": own}])
    assert await _message(obj) == (
        f"annotation {P}env-DB_PASSWORD: container 'app' already defines variable DB_PASSWORD "
        f"in its env; remove that entry, or add DB_PASSWORD to {P}replace-env to let the "
        "secret replace it"
    )


async def test_replace_env_replaces_the_container_s_entry_where_it_is() -> None:
    own = [{"name": "DB_PASSWORD", "value": "dev"}, {"name": "MODE", "value": "prod"}]
    containers = [{"name": "app", "image": "a", "env": own}]
    obj = _env_pod({f"{P}replace-env": "DB_PASSWORD"}, containers=containers)
    spec = (await _admit(obj))["spec"]
    assert spec["containers"][0]["env"] == [_fkr("DB_PASSWORD"), {"name": "MODE", "value": "prod"}]


async def test_without_env_files_the_pod_is_denied_pointing_to_the_file_form() -> None:
    message = await _message(_env_pod(), webhook=settings())
    assert message == (
        f"annotation {P}env-DB_PASSWORD: environment variables from the injector need "
        "Kubernetes 1.35 or later, where the kubelet reads them from the env file the init "
        "container writes (fileKeyRef, the EnvFiles feature, on by default from 1.35; 1.34's "
        "alpha reads another file format), and this cluster is older or the injector runs "
        f"with --env-files=never; the file form works on every Kubernetes version: {P}"
        "secret-FILE with the same value, read by the app from the mounted file"
    )


async def test_without_env_files_a_pod_without_variables_is_admitted_as_before() -> None:
    answer = await run(pod(), webhook=settings())
    assert answer["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("notes", "message"),
    [
        (
            {f"{P}env-": "x"},
            f"annotation {P}env- names no variable; write {P}env-VAR, e.g. {P}env-DB_PASSWORD",
        ),
        *(
            (
                {f"{P}env-{var}": "x"},
                f"annotation {P}env-{var}: {var!r} is not a variable this annotation can set; "
                "write VAR with letters, digits and '_', starting with a letter or '_' and ending "
                "with a letter or digit, at most 59 characters (Kubernetes allows 63 after the "
                "'/' of an annotation key)",
            )
            for var in ("9LIVES", "MY-VAR", "A.B", "TRAILING_", "_", "x" * 60)
        ),
        (
            {f"{P}env-X": "db@0"},
            f"annotation {P}env-X: version '0' in 'db@0' is not a whole number >= 1; write "
            "NAME@3, or NAME for the latest version",
        ),
        (
            {f"{P}env-X": "x", f"{P}replace-env": " , "},
            f"annotation {P}replace-env is empty; list the variables (VAR of {P}env-VAR) that "
            "may replace a container's own, separated by commas, or remove it",
        ),
        (
            {f"{P}env-X": "x", f"{P}replace-env": "X,Y"},
            f"annotation {P}replace-env names 'Y', which no env-VAR annotation sets; variables "
            "set: DB_PASSWORD, X",
        ),
        *(
            (
                {f"{P}mount-path": path},
                f"annotation {P}mount-path: {path} overlaps {ENV_DIRECTORY}, where the init "
                "container writes the env file of the env-VAR annotations; choose another "
                "directory",
            )
            for path in (ENV_DIRECTORY, f"{ENV_DIRECTORY}/app")
        ),
    ],
)
async def test_bad_annotations_are_denied_naming_the_annotation(
    notes: dict[str, str], message: str
) -> None:
    assert await _message(_env_pod(notes)) == message


async def test_the_longest_variable_name_an_annotation_key_can_hold_is_taken() -> None:
    name = "V" * 59
    spec = (await _admit(pod({f"{P}env-{name}": "x"})))["spec"]
    assert spec["containers"][0]["env"] == [_fkr(name)]


async def test_too_many_variables_are_denied() -> None:
    notes = {f"{P}env-V{i:03}": "x" for i in range(257)}
    assert await _message(pod(notes)) == (
        f"annotation {P}env-V256: the pod's env-VAR annotations ask for 257 variables, more "
        "than the 256 a pod may have; set fewer (a file can hold several secrets: template-FILE)"
    )
    await _admit(pod({f"{P}env-V{i:03}": "x" for i in range(256)}))


async def test_a_refresh_interval_with_variables_only_is_denied() -> None:
    obj = pod({f"{P}env-TOKEN": "token", f"{P}refresh-interval": "1m"}, inject=False)
    obj["metadata"]["annotations"][f"{P}inject"] = "true"
    assert await _message(obj) == (
        f"annotation {P}refresh-interval: this pod has only env-VAR annotations, and a running "
        f"process keeps its environment, so there is nothing to refresh; remove {P}"
        f"refresh-interval, or read the secrets that rotate as files ({P}secret-FILE)"
    )


async def test_the_injector_s_env_volume_name_and_mount_are_its_own() -> None:
    taken = _env_pod(volumes=[{"name": ENV_VOLUME, "emptyDir": {}}])
    assert await _message(taken) == (
        f"the pod already has a volume named {ENV_VOLUME!r}, which the injector adds for its "
        "env-VAR annotations; rename that volume"
    )
    mount = {"name": ENV_VOLUME, "mountPath": "/env"}
    mounted = _env_pod(containers=[{"name": "app", "image": "a", "volumeMounts": [mount]}])
    assert await _message(mounted) == (
        f"container 'app' mounts volume {ENV_VOLUME!r}, which the injector adds for its init "
        "container only (the kubelet reads it for the variables); remove that volumeMount"
    )


async def test_no_value_and_no_template_text_reaches_the_pod_spec() -> None:
    """The pod names the variables, the file and the secrets, never a value: the values
    exist only in the env file on the node's tmpfs."""
    mutated = await _admit(_env_pod())
    text = json.dumps(mutated)
    assert "valueFrom" in text and '"value": "db' not in text
    for container in mutated["spec"]["containers"]:
        for entry in container["env"]:
            assert "value" not in entry and set(entry["valueFrom"]) == {"fileKeyRef"}


async def test_every_target_gets_the_variables_whatever_the_order() -> None:
    containers = [
        {"name": "metrics", "image": "m", "env": [{"name": "DB_PASSWORD", "value": "own"}]},
        {"name": "app", "image": "a"},
        {"name": "worker", "image": "w"},
        {"name": "cron", "image": "c", "env": [{"name": "MODE", "value": "x"}]},
    ]
    obj = _env_pod({f"{P}containers": "app,worker,cron"}, containers=containers)
    spec = (await _admit(obj))["spec"]
    assert [c.get("env") for c in spec["containers"]] == [
        [{"name": "DB_PASSWORD", "value": "own"}],  # not a target: its own variable stays
        [_fkr("DB_PASSWORD")],
        [_fkr("DB_PASSWORD")],
        [{"name": "MODE", "value": "x"}, _fkr("DB_PASSWORD")],
    ]


async def test_a_later_target_defining_the_variable_is_named() -> None:
    containers = [
        {"name": "metrics", "image": "m"},
        {"name": "app", "image": "a", "env": [{"name": "DB_PASSWORD", "value": "own"}]},
    ]
    message = await _message(_env_pod({f"{P}containers": "app"}, containers=containers))
    assert message.startswith(f"annotation {P}env-DB_PASSWORD: container 'app' already defines")


async def test_an_env_entry_that_is_no_object_is_left_to_the_api_server() -> None:
    """A malformed entry (the API server refuses it after the webhooks) is not an error here."""
    containers = [{"name": "app", "image": "a", "env": ["junk", {"name": "MODE", "value": "x"}]}]
    answer = await run(_env_pod(containers=containers), webhook=ON)
    assert answer["response"]["allowed"] is True


async def test_replace_env_without_variables_says_none_are_set() -> None:
    assert await _message(pod({f"{P}replace-env": "X"})) == (
        f"annotation {P}replace-env names 'X', which no env-VAR annotation sets; variables "
        "set: none"
    )


async def test_an_init_container_may_not_mount_the_env_volume() -> None:
    mount = {"name": ENV_VOLUME, "mountPath": "/env"}
    obj = _env_pod(initContainers=[{"name": "setup", "image": "s", "volumeMounts": [mount]}])
    assert await _message(obj) == (
        f"container 'setup' mounts volume {ENV_VOLUME!r}, which the injector adds for its init "
        "container only (the kubelet reads it for the variables); remove that volumeMount"
    )


async def test_the_refresh_container_s_plan_has_no_variables() -> None:
    """A running process keeps its environment: the refresh reads the files' secrets only."""
    obj = _env_pod({f"{P}refresh-interval": "1m", f"{P}env-TOKEN": "token"})
    spec = (await _admit(obj, settings(env_files=True, native_sidecars=True)))["spec"]
    _, refresh = spec["initContainers"]
    assert refresh["name"] == "sakura-secrets-refresh"
    (text,) = [e["value"] for e in refresh["env"] if e["name"] == "SAKURA_SECRETS_PLAN"]
    plan = Plan.from_json(text)
    assert (plan.env, [f.name for f in plan.files]) == ((), ["db-password"])
    assert json.loads(text)["format"] == 1
    assert [v.name for v in _plan({"spec": spec}).env] == ["DB_PASSWORD", "TOKEN"]  # init's


async def test_variables_alone_that_overflow_the_plan_are_denied() -> None:
    obj = pod({f"{P}env-X": "s#" + "k" * 130_000}, inject=False)
    obj["metadata"]["annotations"][f"{P}inject"] = "true"
    message = await _message(obj)
    assert message.startswith(f"annotations {P}env-*: the pod's 1 variables make a plan of ")
    assert message.endswith(
        "bytes, more than the 130048 (127 KiB) the init container's environment can carry; set "
        "fewer variables per pod"
    )


async def test_a_pod_that_asks_for_nothing_is_told_of_files_and_variables() -> None:
    obj = pod(inject=True)
    del obj["metadata"]["annotations"][f"{P}secret-db-password"]
    assert await _message(obj) == (
        f"annotation {P}inject is 'true' but no file or variable is requested; add "
        f'{P}secret-FILE: "NAME" (or template-FILE) for each file to write, or env-VAR: "NAME" '
        "for each environment variable"
    )
