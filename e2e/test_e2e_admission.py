"""Scenarios 2, 3 and 6: what the webhook denies, what it leaves alone, and that a pod
reinvoked through a second webhook is injected once."""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx
import pytest
from harness import manifests
from harness.bump import BUMPED_LABEL, BumpWebhook
from harness.kube import Kube
from harness.manifests import OTHER_VAULT_ID, VAULT_ID
from harness.stack import Sakura, Webhook
from harness.webhooks import BUMP_LABEL

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def labelled(kube: Kube, webhook: Webhook) -> str:
    ns = webhook.namespace("admission")
    kube.apply(
        manifests.service_account("reader", ns),
        manifests.service_account("intruder", ns),
        *manifests.grant("read-db", ns, "reader", manifests.pairs("db-password")),
        # the intruder may open the vault, but no secret in it
        *manifests.grant("open-vault", ns, "intruder", []),
        # both vaults, one pair in each: never db-password from the second vault
        manifests.service_account("pairs", ns),
        *manifests.grant(
            "read-pairs",
            ns,
            "pairs",
            [*manifests.pairs("db-password"), *manifests.pairs("stripe-key", vault=OTHER_VAULT_ID)],
            vaults=(VAULT_ID, OTHER_VAULT_ID),
        ),
    )
    return ns


def _pod(name: str, ns: str, entries: dict[str, str] | None, sa: str = "reader") -> dict[str, Any]:
    annotations = manifests.pod_annotations(entries) if entries is not None else {}
    spec = manifests.pod_spec("sleep 3600", service_account=sa)
    return manifests.pod(name, ns, spec, annotations=annotations)


def _denial(kube: Kube, pod: dict[str, Any]) -> str:
    proc = kube.create(pod)
    assert proc.returncode != 0, f"pod {pod['metadata']['name']} was admitted:\n{proc.stdout}"
    name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
    assert kube.run("get", "pod", name, "-n", ns, check=False).returncode != 0, "pod exists"
    assert "denied the request" in proc.stderr, proc.stderr
    return proc.stderr


# ------------------------------------------------------------------ 2. RBAC at admission


def test_a_pod_without_a_grant_is_denied_with_the_missing_grant(kube: Kube, labelled: str) -> None:
    message = _denial(kube, _pod("intruder", labelled, {"secret-loot": "forbidden"}, "intruder"))
    assert (
        f"serviceaccount {labelled}/intruder may not get sakura-secrets.io secrets "
        f'"{VAULT_ID}/forbidden"; grant it with a Role/RoleBinding (verb get, apiGroup '
        f"sakura-secrets.io, resource secrets, resourceName {VAULT_ID}/forbidden), e.g. the rule "
        "{apiGroups: [sakura-secrets.io], resources: [secrets], resourceNames: "
        f'["{VAULT_ID}/forbidden"], verbs: [get]}}' in message
    ), message


def test_a_grant_covers_only_the_secrets_it_names(kube: Kube, labelled: str) -> None:
    message = _denial(
        kube,
        _pod("greedy", labelled, {"secret-db": "db-password", "secret-key": "api-key"}),
    )
    wanted = f'may not get sakura-secrets.io secrets "{VAULT_ID}/api-key"'
    assert f"serviceaccount {labelled}/reader {wanted}" in message, message
    assert '"db-password"' not in message


def test_a_name_grant_does_not_open_another_vault(
    kube: Kube, labelled: str, sakura: Sakura
) -> None:
    """reader may get db-password in the default vault; OTHER_VAULT_ID has one too."""
    pod = _pod("cross-vault", labelled, {"secret-db": "db-password", "vault-id": OTHER_VAULT_ID})
    message = _denial(kube, pod)
    print(f"[e2e] cross-vault pod: {message.strip()}")
    grant = (
        f"serviceaccount {labelled}/reader may not get sakura-secrets.io vaults "
        f'"{OTHER_VAULT_ID}"; grant it with a Role/RoleBinding (verb get, apiGroup '
        f"sakura-secrets.io, resource vaults, resourceName {OTHER_VAULT_ID}), e.g. the rule "
        "{apiGroups: [sakura-secrets.io], resources: [vaults], resourceNames: "
        f'["{OTHER_VAULT_ID}"], verbs: [get]}}'
    )
    assert grant in message, message
    assert sakura.other_vault["db-password"] not in message


def test_the_broker_refuses_a_valid_token_asking_another_vault(
    kube: Kube, labelled: str, webhook: Webhook, sakura: Sakura
) -> None:
    """A pod of reader's asks the broker directly, with its real bound token."""
    kube.apply(_pod("direct", labelled, None))
    token = kube.bound_token(labelled, "reader", "direct")
    context = ssl.create_default_context(cafile=str(webhook.pki.ca_file))
    url = f"{webhook.injector.broker_url}/v1/secrets"
    headers = {"Authorization": f"Bearer {token}"}

    def ask(vault_id: str) -> httpx.Response:
        body = {"vault_id": vault_id, "secrets": [{"name": "db-password", "version": None}]}
        return httpx.post(url, json=body, headers=headers, verify=context, timeout=30)

    def unveils() -> int:
        return sakura.emulator.knobs.calls.get("unveil", 0)

    calls_before = unveils()
    other = ask(OTHER_VAULT_ID)
    print(f"[e2e] direct request for vault {OTHER_VAULT_ID}: {other.status_code} {other.text}")
    assert other.status_code == 403, other.text
    assert f'may not get sakura-secrets.io vaults "{OTHER_VAULT_ID}"' in other.json()["error"]
    assert sakura.other_vault["db-password"] not in other.text
    assert unveils() == calls_before, "a refused request must cost no Sakura call"
    # the same token in its own vault: it was a valid token all along
    own = ask(sakura.vault_id)
    assert own.status_code == 200, own.text
    assert own.json()["secrets"][0]["value"] == sakura.values["db-password"]


def test_grants_by_pair_never_combine_across_vaults(
    kube: Kube, labelled: str, webhook: Webhook, sakura: Sakura
) -> None:
    """`pairs` may get VAULT_ID/db-password and OTHER_VAULT_ID/stripe-key (and both vaults).

    Each pair is admitted and served; db-password from the second vault, where it exists, is
    denied at admission and refused by the broker, naming the pair, at no Sakura call.
    """
    admitted = _pod("pair-grant", labelled, {"secret-db": "db-password"}, "pairs")
    assert kube.create(admitted).returncode == 0
    second = {"secret-key": "stripe-key", "vault-id": OTHER_VAULT_ID}
    assert kube.create(_pod("pair-grant-2", labelled, second, "pairs")).returncode == 0
    cross_entries = {"secret-key": "stripe-key", "secret-db": "db-password"}
    cross_pod = _pod("cross-pair", labelled, {**cross_entries, "vault-id": OTHER_VAULT_ID}, "pairs")
    message = _denial(kube, cross_pod)
    print(f"[e2e] cross-pair pod: {message.strip()}")
    pair = f"{OTHER_VAULT_ID}/db-password"
    rule = (
        f'serviceaccount {labelled}/pairs may not get sakura-secrets.io secrets "{pair}"; grant '
        "it with a Role/RoleBinding (verb get, apiGroup sakura-secrets.io, resource secrets, "
        f"resourceName {pair}), e.g. the rule {{apiGroups: [sakura-secrets.io], resources: "
        f'[secrets], resourceNames: ["{pair}"], verbs: [get]}}'
    )
    assert rule in message, message
    assert sakura.other_vault["db-password"] not in message

    token = kube.bound_token(labelled, "pairs", "pair-grant")
    context = ssl.create_default_context(cafile=str(webhook.pki.ca_file))

    def ask(vault_id: str, name: str) -> httpx.Response:
        return httpx.post(
            f"{webhook.injector.broker_url}/v1/secrets",
            json={"vault_id": vault_id, "secrets": [{"name": name, "version": None}]},
            headers={"Authorization": f"Bearer {token}"},
            verify=context,
            timeout=30,
        )

    first = ask(VAULT_ID, "db-password")
    assert first.status_code == 200, first.text
    assert first.json()["secrets"][0]["value"] == sakura.values["db-password"]
    other = ask(OTHER_VAULT_ID, "stripe-key")
    assert other.status_code == 200, other.text
    assert other.json()["secrets"][0]["value"] == sakura.other_vault["stripe-key"]
    unveils = sakura.emulator.knobs.calls.get("unveil", 0)
    cross = ask(OTHER_VAULT_ID, "db-password")
    print(f"[e2e] cross-pair request: {cross.status_code} {cross.text}")
    assert cross.status_code == 403, cross.text
    assert cross.json() == {"error": rule}
    assert sakura.emulator.knobs.calls.get("unveil", 0) == unveils, "a refusal costs no unveil"


# ------------------------------------------------------------------ 3. left unchanged


def _assert_untouched(pod: dict[str, Any]) -> None:
    spec = pod["spec"]
    assert not spec.get("initContainers"), spec.get("initContainers")
    names = {v["name"] for v in spec.get("volumes", [])}
    assert not names & {"sakura-secrets", "sakura-secrets-token"}, names
    assert "sakura-secrets.io/status" not in (pod["metadata"].get("annotations") or {})
    assert [c["name"] for c in spec["containers"]] == ["app"]
    assert not [m for m in spec["containers"][0].get("volumeMounts", []) if "sakura" in m["name"]]


def test_a_pod_in_an_unlabelled_namespace_is_left_unchanged(kube: Kube, webhook: Webhook) -> None:
    ns = webhook.namespace("unlabelled", injection=False)
    kube.apply(_pod("annotated", ns, {"secret-db": "db-password"}, sa="default"))
    _assert_untouched(kube.get("pod", "annotated", ns))


def test_an_unannotated_pod_in_a_labelled_namespace_is_left_unchanged(
    kube: Kube, labelled: str
) -> None:
    kube.apply(_pod("plain", labelled, None))
    _assert_untouched(kube.get("pod", "plain", labelled))


def test_inject_false_leaves_the_pod_unchanged(kube: Kube, labelled: str) -> None:
    pod = _pod("optout", labelled, {"secret-db": "db-password"})
    pod["metadata"]["annotations"]["sakura-secrets.io/inject"] = "false"
    kube.apply(pod)
    _assert_untouched(kube.get("pod", "optout", labelled))


# ------------------------------------------------------------------ 6. invalid annotations


@pytest.mark.parametrize(
    ("entries", "annotation", "explanation"),
    [
        ({"secret-db": "db-password", "sekret-x": "y"}, "sekret-x", "is not a known annotation"),
        ({"secret-.hidden": "db-password"}, "secret-.hidden", "is not a plain file name"),
        ({"secret-db": "db-password@latest"}, "secret-db", "is not a whole number >= 1"),
        ({"template-conf": "{{ secret('db-password') "}, "template-conf", "does not parse"),
        ({"secret-db": "db-password", "file-mode": "0999"}, "file-mode", "0999"),
        ({"secret-db": "db-password", "vault-id": "12"}, "vault-id", "12"),
    ],
    ids=["unknown-key", "hidden-file", "bad-version", "bad-template", "bad-mode", "bad-vault"],
)
def test_invalid_annotations_are_denied_naming_the_annotation(
    kube: Kube, labelled: str, entries: dict[str, str], annotation: str, explanation: str
) -> None:
    message = _denial(kube, _pod("invalid", labelled, entries))
    assert f"sakura-secrets.io/{annotation}" in message, message
    assert explanation in message, message
    assert "db-pw-" not in message


def test_rotation_in_a_pod_that_must_terminate_is_refused_where_sidecars_are_plain(
    kube: Kube, labelled: str
) -> None:
    """The local cluster is 1.20: the injector (`--native-sidecars=auto`) makes the refresh
    container a plain one, so a Job's pod and a bare `restartPolicy: Never` pod are refused,
    saying why and that 1.29+ lifts it (a Job learns it from its FailedCreate event)."""
    entries = {"secret-db": "db-password", "refresh-interval": "10s"}
    spec = manifests.pod_spec("true", service_account="reader", restart="Never")
    kube.apply(manifests.job("refreshing", labelled, spec, manifests.pod_annotations(entries)))

    def refused() -> str | None:
        events = json.loads(
            kube.run(
                "get", "events", "-n", labelled, "-o", "json",
                "--field-selector", "involvedObject.kind=Job,involvedObject.name=refreshing",
            ).stdout
        )  # fmt: skip
        found = [e["message"] for e in events["items"] if e.get("reason") == "FailedCreate"]
        return found[0] if found else None

    message = kube.wait_for("the Job's FailedCreate event", refused, timeout=60)
    assert "sakura-secrets.io/refresh-interval: this pod belongs to Job 'refreshing'" in message
    assert "Kubernetes 1.29+" in message, message
    assert kube.pods(labelled, "job-name=refreshing") == []
    kube.delete("job", "refreshing", labelled)

    bare = manifests.pod("once", labelled, spec, annotations=manifests.pod_annotations(entries))
    message = _denial(kube, bare)
    assert "this pod has restartPolicy Never, so it is meant to terminate" in message, message


# ------------------------------------------------------------------ 6. reinvocation


def test_a_reinvoked_pod_is_injected_once(
    kube: Kube, labelled: str, webhook: Webhook, bump: BumpWebhook
) -> None:
    pod = _pod("reinvoked", labelled, {"secret-db": "db-password"})
    pod["metadata"]["labels"][BUMP_LABEL] = "yes"
    calls_before = webhook.admitted()
    kube.apply(pod)
    created = kube.get("pod", "reinvoked", labelled)
    # the second webhook saw (and changed) the pod after the injector had injected it ...
    assert ("reinvoked", ["sakura-secrets-init"]) in bump.seen, bump.seen
    assert created["metadata"]["labels"][BUMPED_LABEL] == "yes"
    # ... so the API server called the injector a second time (IfNeeded) ...
    assert webhook.admitted() - calls_before == 2
    # ... and the pod still has one init container, one volume of each, one mount
    spec = created["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["sakura-secrets-init"]
    volumes = [v["name"] for v in spec["volumes"]]
    assert volumes.count("sakura-secrets") == 1
    assert volumes.count("sakura-secrets-token") == 1
    mounts = [m["name"] for m in spec["containers"][0]["volumeMounts"]]
    assert mounts.count("sakura-secrets") == 1
