"""doctor on a given workload: the webhook's core offline with the installed settings, the
ServiceAccount's grants (can-i's answers), and the installed injector's dry-run answer."""

from __future__ import annotations

from typing import Any

import pytest

from injector.broker.can_i import Answer
from injector.operations.doctor import workload
from injector.operations.doctor.diagnosis import diagnose_workload
from injector.operations.doctor.results import Result, Status
from injector.operations.doctor.workload import DryRun, Preview, Workload
from injector.operations.errors import UsageError
from tests.support import doctor_facts as world
from tests.support.values import VAULT

ENABLED = {"sakura-secrets-injection": "enabled"}


def pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    shown = {"sakura-secrets.io/inject": "true", "sakura-secrets.io/secret-db": "db-password"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "api",
            "namespace": "shop",
            "annotations": shown if annotations is None else annotations,
        },
        "spec": {
            "serviceAccountName": "api",
            "containers": [{"name": "app", "image": "app:1"}],
            **spec,
        },
    }


def seen(given: Workload, vault: str = VAULT) -> Preview:
    env = world.healthy().container_env()
    return workload.preview(given, workload.installed_settings(env, "sakura-secrets", vault))


def test_the_installed_settings_are_the_deployments_env() -> None:
    settings = workload.installed_settings(world.healthy().container_env(), "sakura-secrets", VAULT)
    assert settings.image == "sakura-secrets-injector:0.1.0"
    assert settings.broker_url == "https://sakura-secrets-injector.sakura-secrets.svc"
    assert settings.default_vault_id == VAULT
    bad = {**world.healthy().container_env(), "SAKURA_SECRETS_NATIVE_SIDECARS": "maybe"}
    with pytest.raises(UsageError, match="--native-sidecars 'maybe'"):
        workload.installed_settings(bad, "sakura-secrets", VAULT)


def test_an_opted_in_pod_would_be_injected_and_its_plan_is_kept() -> None:
    given = Workload("pod in api.yaml", pod(), "shop")
    preview = seen(given)
    assert preview.plan is not None and preview.service_account == "api"
    assert workload.injection(world.healthy(), given, ENABLED, preview) == Result(
        "workload-injection",
        Status.PASS,
        f"pod in api.yaml would be injected: 1 secret(s) of vault {VAULT} (the webhook's core, "
        "offline, with the installed settings)",
    )


def test_a_pod_without_the_annotation_fails_with_the_annotation_to_add() -> None:
    given = Workload("pod in api.yaml", pod({}), "shop")
    result = workload.injection(world.healthy(), given, ENABLED, seen(given))
    assert result.status == Status.FAIL
    assert result.summary.startswith("pod in api.yaml would not be injected (not-opted-in): ")
    assert result.fix == 'annotate the pod (template) with sakura-secrets.io/inject: "true"'


def test_a_pod_in_an_unselected_namespace_fails_with_the_label() -> None:
    given = Workload("pod in api.yaml", pod(), "shop")
    assert workload.injection(world.healthy(), given, {}, seen(given)) == Result(
        "workload-injection",
        Status.FAIL,
        "pod in api.yaml: namespace shop is not selected by the webhook, so it is never injected",
        "kubectl label namespace shop sakura-secrets-injection=enabled",
    )


def test_a_refused_pod_fails_with_the_webhooks_message() -> None:
    given = Workload("pod in api.yaml", pod(), "shop")
    result = workload.injection(world.healthy(), given, ENABLED, seen(given, vault=""))
    assert result.status == Status.FAIL
    assert result.summary.startswith("pod in api.yaml would be refused (invalid): no vault: ")
    assert result.fix == "--vault VAULT_ID names the default vault to doctor"


def test_a_deployment_is_reviewed_as_the_pod_its_replicaset_creates() -> None:
    template = pod()
    live = {
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"template": {"metadata": template["metadata"], "spec": template["spec"]}},
    }
    made = workload.pod_of_deployment(live)
    assert made["metadata"]["generateName"] == "api-"
    assert made["metadata"]["namespace"] == "shop"
    assert isinstance(
        seen(Workload("Deployment shop/api", made, "shop")).decision, workload.Injected
    )


def test_access_passes_when_every_grant_is_there_and_names_each_missing_one() -> None:
    given = Workload("pod in api.yaml", pod(), "shop")
    preview = seen(given)
    granted = [Answer(f"vault {VAULT}", True), Answer(f"{VAULT}/db-password", True)]
    assert workload.access(given, preview, granted) == Result(
        "workload-access",
        Status.PASS,
        f"serviceaccount shop/api may read vault {VAULT}, {VAULT}/db-password "
        "(SubjectAccessReviews)",
    )
    denied = [
        granted[0],
        Answer(f"{VAULT}/db-password", False, "shop/api may not get it; grant it so"),
        Answer(f"{VAULT}/api-key", False, "no grant"),
    ]
    assert workload.access(given, preview, denied) == Result(
        "workload-access",
        Status.FAIL,
        f"serviceaccount shop/api may not read {VAULT}/db-password, {VAULT}/api-key",
        "grant it so; no grant",
    )
    assert workload.access(given, seen(Workload("x", pod({}), "shop")), None) is None


def test_the_dry_run_passes_when_injected_and_fails_with_the_api_servers_message() -> None:
    given = Workload("pod in api.yaml", pod(), "shop")
    injected = {"metadata": {"annotations": {"sakura-secrets.io/status": "injected"}}}
    assert workload.admission(given, DryRun(created=injected)).status == Status.PASS
    refused = DryRun(refusal='admission webhook "pods.sakura-secrets.io" denied: may not get')
    assert workload.admission(given, refused) == Result(
        "workload-admission",
        Status.FAIL,
        "the API server refused a server-side dry run of pod in api.yaml: admission webhook "
        '"pods.sakura-secrets.io" denied: may not get',
    )
    x509 = DryRun(refusal="failed calling webhook: x509: certificate signed by unknown authority")
    assert workload.admission(given, x509).fix == "see ca-bundle"
    timeout = DryRun(refusal="failed calling webhook: context deadline exceeded")
    assert workload.admission(given, timeout).fix == "see replicas and network-policy"
    plain = DryRun(created={"metadata": {}})
    assert workload.admission(given, plain) == Result(
        "workload-admission",
        Status.FAIL,
        "a server-side dry run of pod in api.yaml was admitted without injection",
        "see namespace and workload-injection",
    )


def test_a_dry_run_injected_without_the_existence_check_says_why() -> None:
    given = Workload("pod in api.yaml", pod(), "shop")
    warned = {
        "metadata": {
            "annotations": {
                "sakura-secrets.io/status": "injected",
                "sakura-secrets.io/status-warnings": "Sakura rejected the injector's credentials "
                "(401); the pod is admitted",
            }
        }
    }
    result = workload.admission(given, DryRun(created=warned))
    assert (result.status, result.fix) == (Status.FAIL, workload.HOW_TO_FIX)
    unreachable = {
        "metadata": {
            "annotations": {
                "sakura-secrets.io/status": "injected",
                "sakura-secrets.io/status-warnings": "Sakura could not be reached to check",
            }
        }
    }
    assert workload.admission(given, DryRun(created=unreachable)) == Result(
        "workload-admission",
        Status.WARN,
        "a server-side dry run of pod in api.yaml was injected unchecked: Sakura could not be "
        "reached to check",
    )


def test_the_workload_lines_come_in_order() -> None:
    given = Workload("pod in api.yaml", pod(), "shop")
    preview = seen(given)
    answers = [Answer(f"vault {VAULT}", True), Answer(f"{VAULT}/db-password", True)]
    created = DryRun(
        created={"metadata": {"annotations": {"sakura-secrets.io/status": "injected"}}}
    )
    found = diagnose_workload(world.healthy(), given, ENABLED, preview, answers, created)
    assert [(r.check, r.status) for r in found] == [
        ("workload-injection", Status.PASS),
        ("workload-access", Status.PASS),
        ("workload-admission", Status.PASS),
    ]


def test_the_settings_take_the_injectors_namespace_literal_env_and_a_default_image() -> None:
    env = {"SAKURA_ZONE": "is1b", "SAKURA_SECRETS_BROKER_CA_FILE": "/nowhere/ca.crt"}
    settings = workload.installed_settings(env, "elsewhere", "")
    assert settings.injector_namespace == "elsewhere"
    assert settings.image == "sakura-secrets-injector"
    assert settings.sakura_zone == "is1b"
    assert settings.broker_ca_pem == ""  # a file in the injector's pod, not on this machine
    assert settings.default_vault_id is None


def test_the_preview_reviews_the_pod_in_its_namespace_and_keeps_nothing_it_did_not_check() -> None:
    given = Workload("pod in api.yaml", pod(), "shop")
    preview = seen(given)
    assert (preview.decision.uid, preview.decision.pod.namespace) == ("doctor", "shop")
    skipped = seen(Workload("x", pod({}), "shop"))
    assert (skipped.service_account, skipped.plan) == ("", None)


def test_a_deployment_without_a_template_is_an_empty_pod() -> None:
    assert workload.pod_of_deployment({}) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "default", "generateName": "doctor-"},
        "spec": {},
    }


def test_other_skips_and_refusals_have_no_fix_of_doctors_own() -> None:
    excluded = Workload("pod in api.yaml", pod(), "kube-system")
    result = workload.injection(world.healthy(), excluded, ENABLED, seen(excluded))
    assert (result.check, result.status, result.fix) == ("workload-injection", Status.FAIL, "")
    assert "(excluded-namespace)" in result.summary
    bad = Workload("pod in api.yaml", pod({"sakura-secrets.io/inject": "maybe"}), "shop")
    refused = workload.injection(world.healthy(), bad, ENABLED, seen(bad))
    assert (refused.check, refused.status, refused.fix) == ("workload-injection", Status.FAIL, "")
    assert refused.summary.startswith("pod in api.yaml would be refused (invalid): ")


def test_a_pod_reading_sakura_with_its_own_key_has_no_grants_to_review() -> None:
    annotations = {
        "sakura-secrets.io/inject": "true",
        "sakura-secrets.io/secret-db": "db-password",
        "sakura-secrets.io/credentials-secret": "own-key",
    }
    given = Workload("pod in api.yaml", pod(annotations), "shop")
    preview = seen(given)
    assert preview.plan is not None
    assert workload.access(given, preview, [Answer(f"vault {VAULT}", False, "x; y")]) is None


def test_the_fix_of_a_denial_is_everything_after_its_first_clause() -> None:
    given = Workload("pod in api.yaml", pod(), "shop")
    denied = [Answer(f"{VAULT}/db-password", False, "may not; grant it; e.g. the rule")]
    result = workload.access(given, seen(given), denied)
    assert result is not None and result.fix == "grant it; e.g. the rule"


def _created(warnings: str | None) -> DryRun:
    annotations = {"sakura-secrets.io/status": "injected"}
    if warnings is not None:
        annotations["sakura-secrets.io/status-warnings"] = warnings
    return DryRun(created={"metadata": {"annotations": annotations}})


def test_the_dry_runs_warnings_that_matter_and_those_that_do_not() -> None:
    given = Workload("pod in api.yaml", pod(), "shop")
    assert workload.admission(given, _created(None)) == Result(
        "workload-admission",
        Status.PASS,
        "a server-side dry run of pod in api.yaml was injected by the installed injector (its "
        "key listed the vault and every secret exists)",
    )
    assert workload.admission(given, _created("the image decides the user")).status == Status.PASS
    two = workload.admission(
        given, _created("could not check access now\nthe image decides\nSakura was slow")
    )
    assert two == Result(
        "workload-admission",
        Status.WARN,
        "a server-side dry run of pod in api.yaml was injected unchecked: could not check access "
        "now; Sakura was slow",
    )
    refused = DryRun(refusal="failed calling webhook: dial tcp: connection refused")
    assert workload.admission(given, refused).fix == "see replicas and network-policy"
    assert workload.admission(given, DryRun(created={})).status == Status.FAIL
