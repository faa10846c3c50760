"""Who owns the files: annotations, then the targets' securityContexts, then a fallback."""

from __future__ import annotations

from typing import Any

import pytest
from admission_harness import P, admitted, pod

from injector.checks import Denied
from injector.pod.ownership import resolve_owner


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


def test_no_user_anywhere_falls_back_with_a_warning() -> None:
    resolved = _resolve(_spec(None, None, {"readOnlyRootFilesystem": True}))
    assert (resolved.uid, resolved.gid) == (65532, 65532)
    assert len(resolved.warnings) == 1 and "run-as-user" in resolved.warnings[0]


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
