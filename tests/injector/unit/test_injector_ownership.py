"""Who owns the files: annotations, then the targets' securityContexts, then a fallback."""

from __future__ import annotations

from typing import Any

import pytest
from support.admission_harness import P, admitted, pod

from contract import Broker, FileSpec, SecretRef
from injector.webhook.annotations import Injection, PodOptions
from injector.webhook.errors import Denied
from injector.webhook.pod.ownership import Owner, resolve_owner
from injector.webhook.pod_checks import check_owner


def _spec(pod_context: dict[str, Any] | None, *contexts: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {"name": f"c{i}", "image": "x", **({} if c is None else {"securityContext": c})}
            for i, c in enumerate(contexts)
        ]
    }
    if pod_context is not None:
        spec["securityContext"] = pod_context
    return spec


def _resolve(spec: dict[str, Any], user: int | None = None, group: int | None = None):
    targets = [c["name"] for c in spec["containers"]]
    check_owner(spec, targets, run_as_user=user, run_as_group=group)
    return resolve_owner(spec, targets, run_as_user=user, run_as_group=group, fallback_uid=65532)


@pytest.mark.parametrize(
    ("spec", "user", "group", "owner"),
    [
        # pod level only
        (_spec({"runAsUser": 1000, "runAsGroup": 3000}, None, None), None, None, (1000, 3000)),
        # container level overrides pod level
        (_spec({"runAsUser": 1000}, {"runAsUser": 2000}), None, None, (2000, 2000)),
        (_spec({"runAsUser": 1000, "runAsGroup": 7}, {"runAsGroup": 8}), None, None, (1000, 8)),
        # containers that agree, one through the pod level
        (_spec({"runAsUser": 1000}, {"runAsUser": 1000}, None), None, None, (1000, 1000)),
        # fsGroup is the group when no runAsGroup is known (kubelet gives the volume that group)
        (_spec({"runAsUser": 1000, "fsGroup": 2000}, None), None, None, (1000, 2000)),
        # annotations win over everything, even over disagreeing containers
        (_spec(None, {"runAsUser": 1}, {"runAsUser": 2}), 500, 600, (500, 600)),
        (_spec({"runAsUser": 0}, None), 500, None, (500, 500)),
        # group annotation only
        (_spec({"runAsUser": 1000, "runAsGroup": 3000}, None), None, 42, (1000, 42)),
        # the group annotation wins over targets that disagree on runAsGroup
        (_spec({"runAsUser": 1000}, {"runAsGroup": 1}, {"runAsGroup": 2}), None, 42, (1000, 42)),
        # the largest id Kubernetes allows is an id
        (_spec({"runAsUser": 2**31 - 1}, None), None, None, (2**31 - 1, 2**31 - 1)),
        # group 0 is allowed (only uid 0 is refused)
        (_spec({"runAsUser": 1000, "runAsGroup": 0}, None), None, None, (1000, 0)),
    ],
)
def test_owner_resolution(
    spec: dict[str, Any], user: int | None, group: int | None, owner: tuple[int, int]
) -> None:
    resolved = _resolve(spec, user, group)
    assert (resolved.uid, resolved.gid) == owner
    assert resolved.warnings == ()


def _unknown_uid(mode: str, readers: str) -> str:
    return (
        "sakura-secrets: no run-as-user or runAsUser (the image's USER decides the app's uid): "
        f"files without file-mode get uid 65532, mode {mode}, readable by {readers}; "
        f"set {P}run-as-user to limit them to the app"
    )


ANYONE = _unknown_uid("0444", "any user of the containers that mount them")


def test_no_user_anywhere_makes_the_files_readable_by_any_user_of_the_pod() -> None:
    resolved = _resolve(_spec(None, None, {"readOnlyRootFilesystem": True}))
    assert (resolved.uid, resolved.gid, resolved.file_mode) == (65532, 65532, 0o444)
    assert resolved.warnings == (ANYONE,)


@pytest.mark.parametrize(
    ("spec", "group", "gid"),
    [
        (_spec({"fsGroup": 2000}, None), None, 2000),  # a supplementary group of the app
        (_spec({"runAsGroup": 3000, "fsGroup": 2000}, None), None, 3000),  # its own group
        (_spec(None, {"runAsGroup": 4000}, {"runAsGroup": 4000}), None, 4000),
        (_spec({"fsGroup": 2000}, None), 42, 42),  # the annotation
        (_spec({"runAsGroup": 0}, None), None, 0),
    ],
)
def test_no_user_but_a_known_group_makes_the_files_group_readable(
    spec: dict[str, Any], group: int | None, gid: int
) -> None:
    resolved = _resolve(spec, group=group)
    assert (resolved.uid, resolved.gid, resolved.file_mode) == (65532, gid, 0o440)
    assert resolved.warnings == (_unknown_uid("0440", f"group {gid}, which the app runs with"),)


def test_a_known_user_keeps_the_default_mode() -> None:
    assert _resolve(_spec({"runAsUser": 1000, "fsGroup": 2000}, None)).file_mode is None
    assert _resolve(_spec(None, None), user=1000).file_mode is None


def test_the_longest_warning_is_not_truncated_by_the_api_server() -> None:
    spec = _spec({"fsGroup": 2**31 - 1}, None)
    for fallback, group in ((2**31 - 1, None), (2**31 - 1, 2**31 - 1)):
        targets = ["c0"]
        (warning,) = resolve_owner(
            spec, targets, run_as_user=None, run_as_group=group, fallback_uid=fallback
        ).warnings
        assert len(warning) <= 256  # longer warnings may be truncated
    (warning,) = resolve_owner(
        _spec(None, None), ["c0"], run_as_user=None, run_as_group=None, fallback_uid=2**31 - 1
    ).warnings
    assert len(warning) <= 256


def test_the_owner_sets_the_mode_of_the_files_no_annotation_sets() -> None:
    files = (
        FileSpec(name="a", mode=0o400, secret=SecretRef("a")),
        FileSpec(name="b", mode=0o600, secret=SecretRef("b")),
    )
    options = PodOptions(mount_path="/s", explicit_modes=frozenset({"b"}))
    injection = Injection(files, vault_id="123456789012", mode=Broker(), options=options)
    owned = injection.plan(Owner(uid=7, gid=8, file_mode=0o444))
    assert (owned.uid, owned.gid) == (7, 8)
    assert [(f.name, f.mode) for f in owned.files] == [("a", 0o444), ("b", 0o600)]
    assert (owned.directory, owned.vault_id, owned.mode) == ("/s", "123456789012", Broker())
    kept = Injection(files, "123456789012", Broker(), PodOptions()).plan(Owner(uid=7, gid=8))
    assert [f.mode for f in kept.files] == [0o400, 0o600] and kept.uid == 7


async def test_a_pod_without_a_uid_gets_readable_files_and_the_warning_on_itself() -> None:
    obj = pod(
        {f"{P}template-b": '{{ secret("b") }}', f"{P}file-mode-b": "0400"},
        containers=[{"name": "app", "image": "x"}],
    )
    result = await admitted(obj)
    modes = {f.name: f.mode for f in result.plan.files}
    assert modes == {"db-password": 0o444, "b": 0o400}  # an explicit mode is honoured
    assert (result.plan.uid, result.plan.gid) == (65532, 65532)
    assert result.warnings == [ANYONE]
    # the admission warning reaches only the pod's creator (a ReplicaSet controller)
    assert result.pod["metadata"]["annotations"][f"{P}status-warnings"] == ANYONE


async def test_a_pod_level_file_mode_is_honoured_when_the_uid_is_unknown() -> None:
    obj = pod({f"{P}file-mode": "0440"}, containers=[{"name": "app", "image": "x"}])
    result = await admitted(obj)
    assert [f.mode for f in result.plan.files] == [0o440]
    assert result.pod["metadata"]["annotations"][f"{P}status-warnings"] == ANYONE


async def test_a_pod_with_a_known_uid_gets_no_status_warnings() -> None:
    result = await admitted(pod())
    assert [f.mode for f in result.plan.files] == [0o400]
    assert f"{P}status-warnings" not in result.pod["metadata"]["annotations"]
    assert result.pod["metadata"]["annotations"][f"{P}status"] == "injected"


async def test_a_group_annotation_without_a_uid_makes_the_files_group_readable() -> None:
    result = await admitted(pod({f"{P}run-as-group": "5"}, containers=[{"name": "a"}]))
    expected = _unknown_uid("0440", "group 5, which the app runs with")
    assert result.pod["metadata"]["annotations"][f"{P}status-warnings"] == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (_spec(None, {"runAsUser": 1}, {"runAsUser": 2}), f"{P}run-as-user"),
        (_spec({"runAsUser": 1}, {"runAsUser": 2}, None), "c0: 2, c1: 1"),
        (_spec(None, {"runAsUser": 1}, None), "c1: image default"),
        (_spec({"runAsUser": 1}, {"runAsGroup": 1}, {"runAsGroup": 2}), f"{P}run-as-group"),
        (_spec({"runAsUser": 0}, None), "must not run as root"),
        (_spec(None, {"runAsUser": 0}), "must not run as root"),
    ],
)
def test_disagreement_and_root_are_denied(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(Denied) as caught:
        _resolve(spec)
    assert fragment in caught.value.message
    assert caught.value.code == 400


async def test_pod_level_user_reaches_the_init_container() -> None:
    obj = pod(
        containers=[{"name": "app", "image": "x"}],
        securityContext={"runAsUser": 1001, "runAsGroup": 1002, "fsGroup": 1003},
    )
    result = await admitted(obj)
    context = result.init["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (1001, 1002)
    assert (result.plan.uid, result.plan.gid) == (1001, 1002)
    assert result.warnings == []
