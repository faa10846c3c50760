"""doctor's pure core: each check's PASS and its FAIL (or WARN) with the exact fix, from fixed
facts (tests/support/doctor_facts.py: manifests/base as installed, then one fact broken)."""

from __future__ import annotations

import json

import pytest

from injector.operations.doctor import install, network
from injector.operations.doctor.diagnosis import diagnose
from injector.operations.doctor.facts import Readiness
from injector.operations.doctor.results import Result, Status, as_json, exit_status, text
from injector.operations.doctor.selectors import selects
from tests.support import doctor_facts as world

APPLY = (
    "kubectl apply -k manifests/ (Kubernetes 1.30+; manifests/legacy on 1.21 to 1.29, "
    "manifests/legacy-1.20 on 1.20)"
)
LOGS = (
    "kubectl -n sakura-secrets describe pods -l app.kubernetes.io/component=injector; "
    "kubectl -n sakura-secrets logs deploy/sakura-secrets-injector"
)


def test_a_healthy_install_passes_every_check_and_exits_0() -> None:
    results = diagnose(world.healthy(), workload_given=True)
    assert [(r.check, r.status) for r in results] == [
        (name, Status.PASS)
        for name in (
            "webhook-configuration",
            "ca-bundle",
            "certificate-expiry",
            "match-conditions",
            "replicas",
            "disruption-budget",
            "sakura-key",
            "network-policy",
            "broker",
            "namespace",
        )
    ]
    assert exit_status(results) == 0


def test_without_a_workload_the_default_vault_is_a_warning_that_says_how_to_check_it() -> None:
    [vault] = [
        r for r in diagnose(world.healthy(), workload_given=False) if r.check == "default-vault"
    ]
    assert vault == Result(
        "default-vault",
        Status.WARN,
        "not checked: doctor never reads the sakura-api-key Secret",
        "run doctor with --pod FILE or --deployment NS/NAME naming a secret of the default "
        "vault: its server-side dry run goes through the installed injector, which lists the "
        "vault with its key",
    )


def test_one_line_per_check_and_a_failure_exits_1() -> None:
    results = [
        Result("a", Status.PASS, "fine"),
        Result("b", Status.WARN, "meh", "do x"),
        Result("c", Status.FAIL, "broken", "do y"),
    ]
    assert text(results) == "PASS a: fine\nWARN b: meh -- fix: do x\nFAIL c: broken -- fix: do y\n"
    assert exit_status(results) == 1
    assert exit_status(results[:2]) == 0
    assert as_json(results[:1]) == (
        '[\n  {\n    "check": "a",\n    "status": "PASS",\n    "summary": "fine",\n'
        '    "fix": ""\n  }\n]'
    )
    assert json.loads(as_json(results))[2] == {
        "check": "c",
        "status": "FAIL",
        "summary": "broken",
        "fix": "do y",
    }


# ---------------------------------------------------------------- webhook-configuration


def test_webhook_configuration_passes_as_installed() -> None:
    assert install.webhook_configuration(world.healthy()) == Result(
        "webhook-configuration",
        Status.PASS,
        "sakura-secrets-injector: failurePolicy Fail, timeoutSeconds 10, namespaces labelled "
        "sakura-secrets-injection=enabled",
    )


def test_a_missing_webhook_configuration_fails_with_the_apply() -> None:
    result = install.webhook_configuration(world.healthy(webhook=None))
    assert result == Result(
        "webhook-configuration",
        Status.FAIL,
        "MutatingWebhookConfiguration sakura-secrets-injector not found",
        APPLY,
    )


def test_a_webhook_calling_another_service_fails() -> None:
    configuration = world.webhook()
    configuration["webhooks"][0]["clientConfig"]["service"]["name"] = "other"
    result = install.webhook_configuration(world.healthy(webhook=configuration))
    assert (result.status, result.fix) == (Status.FAIL, APPLY)
    assert result.summary == (
        "no webhook of MutatingWebhookConfiguration sakura-secrets-injector calls Service "
        "sakura-secrets/sakura-secrets-injector"
    )


def test_ignore_a_short_timeout_and_a_selector_without_the_label_are_named_worst_first() -> None:
    configuration = world.webhook()
    hook = configuration["webhooks"][0]
    hook["failurePolicy"] = "Ignore"
    hook["timeoutSeconds"] = 5
    hook["namespaceSelector"] = {}
    result = install.webhook_configuration(world.healthy(webhook=configuration))
    assert result.status == Status.FAIL
    assert result.summary == (
        "its namespaceSelector does not ask for sakura-secrets-injection=enabled; "
        "failurePolicy is Ignore: while no replica answers, pods that asked for secrets start "
        "without them; timeoutSeconds is 5 but the injector sheds reviews it cannot answer "
        "within 10s (SAKURA_SECRETS_WEBHOOK_TIMEOUT)"
    )
    assert result.fix == (
        f"{APPLY}; set failurePolicy: Fail (the manifests' choice; docs/webhook.md, "
        '"failurePolicy: Fail") unless you chose Ignore on purpose; make the webhook\'s '
        "timeoutSeconds and the Deployment's SAKURA_SECRETS_WEBHOOK_TIMEOUT equal"
    )


def test_the_timeout_is_compared_with_the_injectors_own_setting() -> None:
    deployment = world.ready(world.obj("Deployment"), 2)
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    env.append({"name": "SAKURA_SECRETS_WEBHOOK_TIMEOUT", "value": "5"})
    configuration = world.webhook()
    configuration["webhooks"][0]["timeoutSeconds"] = 5
    facts = world.healthy(deployment=deployment, webhook=configuration)
    assert install.webhook_configuration(facts).status == Status.PASS


# ---------------------------------------------------------------- replicas and budget


def test_replicas_pass_when_all_are_ready() -> None:
    assert install.replicas(world.healthy()) == Result(
        "replicas", Status.PASS, "2 of 2 injector replicas ready; certs ready"
    )


def test_no_ready_replica_fails_with_where_to_look() -> None:
    facts = world.healthy(deployment=world.ready(world.obj("Deployment"), 0))
    assert install.replicas(facts) == Result(
        "replicas",
        Status.FAIL,
        "0 of 2 injector replicas ready: opted-in pods are refused (failurePolicy Fail)",
        LOGS,
    )


def test_a_missing_deployment_fails_with_the_apply() -> None:
    result = install.replicas(world.healthy(deployment=None))
    assert result == Result(
        "replicas",
        Status.FAIL,
        "Deployment sakura-secrets/sakura-secrets-injector not found",
        APPLY,
    )


def test_one_replica_short_one_replica_and_no_certs_replica_warn() -> None:
    one = world.obj("Deployment")
    one["spec"]["replicas"] = 1
    short = world.healthy(deployment=world.ready(world.obj("Deployment"), 1))
    assert install.replicas(short) == Result("replicas", Status.WARN, "1 of 2 replicas ready", LOGS)
    single = install.replicas(world.healthy(deployment=world.ready(one, 1)))
    assert single == Result(
        "replicas",
        Status.WARN,
        "1 replica: losing its node refuses opted-in pods until it is back",
        "kubectl -n sakura-secrets scale deploy/sakura-secrets-injector --replicas 2",
    )
    certs = install.replicas(world.healthy(certs_deployment=None))
    assert certs == Result(
        "replicas",
        Status.WARN,
        "Deployment sakura-secrets/sakura-secrets-certs has no ready replica: certificates are "
        "not renewed",
        "kubectl -n sakura-secrets describe deploy/sakura-secrets-certs; kubectl -n "
        "sakura-secrets logs deploy/sakura-secrets-certs",
    )


def test_the_budget_passes_as_installed_and_warns_when_missing_or_blocking() -> None:
    assert install.disruption_budget(world.healthy()) == Result(
        "disruption-budget", Status.PASS, "sakura-secrets-injector: minAvailable 1 of 2 replicas"
    )
    assert install.disruption_budget(world.healthy(pdb=None)) == Result(
        "disruption-budget",
        Status.WARN,
        "no PodDisruptionBudget sakura-secrets/sakura-secrets-injector: a node drain may evict "
        "every replica at once",
        APPLY,
    )
    one = world.obj("Deployment")
    one["spec"]["replicas"] = 1
    assert install.disruption_budget(world.healthy(deployment=one)) == Result(
        "disruption-budget",
        Status.WARN,
        "minAvailable 1 with 1 replica(s): a node drain waits until another replica runs",
        "kubectl -n sakura-secrets scale deploy/sakura-secrets-injector --replicas 2",
    )


# ---------------------------------------------------------------- match-conditions


@pytest.mark.parametrize("minor", ["28", "30", "31+"])
def test_match_conditions_pass_where_served(minor: str) -> None:
    result = install.match_conditions(world.healthy(server_version=("1", minor)))
    assert result.status == Status.PASS
    assert result.summary.startswith("present (Kubernetes 1.")


def test_match_conditions_missing_on_1_30_warn_with_the_default_manifests() -> None:
    configuration = world.webhook()
    del configuration["webhooks"][0]["matchConditions"]
    assert install.match_conditions(world.healthy(webhook=configuration)) == Result(
        "match-conditions",
        Status.WARN,
        "absent on Kubernetes 1.30: every pod created in a labelled namespace waits on the "
        "injector, not only those that opted in",
        "kubectl apply -k manifests/ (Kubernetes 1.30+; the legacy variants have none)",
    )


def test_match_conditions_are_irrelevant_before_1_28() -> None:
    configuration = world.webhook()
    del configuration["webhooks"][0]["matchConditions"]
    facts = world.healthy(webhook=configuration, server_version=("1", "20"))
    assert install.match_conditions(facts) == Result(
        "match-conditions",
        Status.PASS,
        "not supported by Kubernetes 1.20 (the legacy manifests): every pod of a labelled "
        "namespace goes through the webhook",
    )
    assert install.match_conditions(world.healthy(webhook=None)).status == Status.WARN


# ---------------------------------------------------------------- namespace


def test_a_labelled_namespace_passes() -> None:
    assert install.namespace_label(world.healthy()) == Result(
        "namespace",
        Status.PASS,
        "shop is labelled sakura-secrets-injection=enabled and selected by the webhook",
    )


def test_an_unlabelled_namespace_fails_with_the_label_command() -> None:
    facts = world.healthy(namespace_object=world.namespace({}))
    assert install.namespace_label(facts) == Result(
        "namespace",
        Status.FAIL,
        "namespace shop lacks the label sakura-secrets-injection=enabled: its pods are never "
        "injected",
        "kubectl label namespace shop sakura-secrets-injection=enabled",
    )


def test_a_missing_or_excluded_namespace_fails() -> None:
    missing = install.namespace_label(world.healthy(namespace_object=None))
    assert missing == Result(
        "namespace",
        Status.FAIL,
        "namespace shop not found",
        "kubectl create namespace shop; kubectl label namespace shop "
        "sakura-secrets-injection=enabled",
    )
    own = world.healthy(namespace="kube-system")
    assert install.namespace_label(own).fix == "run the workload in another namespace"


def test_a_labelled_namespace_the_selector_does_not_select_fails() -> None:
    configuration = world.webhook()
    configuration["webhooks"][0]["namespaceSelector"]["matchLabels"]["team"] = "a"
    result = install.namespace_label(world.healthy(webhook=configuration))
    assert result.status == Status.FAIL
    assert result.summary.startswith(
        "namespace shop is labelled but the webhook's namespaceSelector does not select it"
    )
    assert result.fix == (
        "give namespace shop the labels the namespaceSelector asks for, or apply the "
        "manifests' selector"
    )


# ---------------------------------------------------------------- sakura-key


REJECTED_REASON = f"{install.REJECTED} (401 unauthorized); {install.HOW_TO_FIX}"
"""What CredentialWatch.readiness says (injector/broker/credentials.py), whatever its fix text."""


def test_the_key_passes_when_every_replica_is_ready() -> None:
    assert install.sakura_key(world.healthy()) == Result(
        "sakura-key",
        Status.PASS,
        "2 replica(s) ready; none reports Sakura rejecting the key (as of its last Sakura call); "
        "credentials: not reported (an older injector)",
    )


def test_the_key_names_each_replicas_credentials_and_token_expiry_never_a_token() -> None:
    principal = {"kind": "service-principal", "fingerprint": "0f1e2d3c4b5a"}
    facts = world.healthy(
        readiness=(
            Readiness(
                "injector-a",
                200,
                {"status": "ready", "sakura": {**principal, "token_expires_in_seconds": 3412}},
            ),
            Readiness(
                "injector-b",
                200,
                {"status": "ready", "sakura": {**principal, "token_expires_in_seconds": None}},
            ),
            Readiness(
                "injector-c",
                200,
                {"status": "ready", "sakura": {"kind": "api-key", "fingerprint": "aa11"}},
            ),
            Readiness("injector-d", 200, {"status": "ready", "sakura": "garbled"}),
        )
    )
    assert install.sakura_key(facts).summary.endswith(
        "credentials: injector-a: service principal key 0f1e2d3c4b5a, its token expires in 3412 s; "
        "injector-b: service principal key 0f1e2d3c4b5a, no token yet; injector-c: API key aa11"
    )


def test_a_replica_reporting_a_rejected_key_fails_with_its_fix() -> None:
    rejected = Readiness("injector-b", 503, {"status": "not ready", "reasons": [REJECTED_REASON]})
    facts = world.healthy(readiness=(world.healthy().readiness[0], rejected))
    result = install.sakura_key(facts)
    assert result == Result(
        "sakura-key",
        Status.FAIL,
        "injector-b: Sakura rejected the injector's credentials (401 unauthorized)",
        install.HOW_TO_FIX,
    )


def test_a_replica_not_ready_for_another_reason_or_out_of_reach() -> None:
    other = Readiness("injector-a", 503, {"status": "not ready", "reasons": ["no TLS files"]})
    result = install.sakura_key(world.healthy(readiness=(other,)))
    assert result == Result(
        "sakura-key",
        Status.FAIL,
        "injector-a is not ready: no TLS files",
        "kubectl -n sakura-secrets logs pod/injector-a",
    )
    unreachable = Readiness("injector-a", error="HTTP 503 no endpoints")
    assert install.sakura_key(world.healthy(readiness=(unreachable,))) == Result(
        "sakura-key",
        Status.WARN,
        "could not ask injector-a's /readyz through the API server (HTTP 503 no endpoints)",
        "kubectl -n sakura-secrets port-forward pod/injector-a 8081 & curl -s "
        "localhost:8081/readyz",
    )
    assert install.sakura_key(world.healthy(readiness=())) == Result(
        "sakura-key",
        Status.FAIL,
        "no injector pod to ask",
        "kubectl -n sakura-secrets get pods -l app.kubernetes.io/component=injector",
    )


# ---------------------------------------------------------------- network-policy and broker


def test_the_webhook_port_admitting_the_api_server_passes() -> None:
    assert network.network_policy(world.healthy()) == Result(
        "network-policy",
        Status.PASS,
        "the webhook port admits the API server(s) 10.0.0.10 (10.0.0.10/32)",
    )


def test_the_shipped_placeholder_warns_with_the_api_servers_addresses() -> None:
    facts = world.healthy(network_policy=world.network_policy("192.0.2.0/24"))
    assert network.network_policy(facts) == Result(
        "network-policy",
        Status.WARN,
        "the webhook port's ipBlocks (192.0.2.0/24) leave out the API server address(es) "
        "10.0.0.10: where NetworkPolicy is enforced, an API server connecting from its own "
        "address cannot call the webhook (konnectivity agents in kube-system pass)",
        "add ipBlock 10.0.0.10/32 under `# API servers:` in manifests/base/networkpolicy.yaml "
        "and apply it",
    )


def test_the_placeholder_warns_even_where_the_api_servers_addresses_are_unknown() -> None:
    facts = world.healthy(
        network_policy=world.network_policy("192.0.2.0/24"), api_server_addresses=()
    )
    assert network.network_policy(facts) == Result(
        "network-policy",
        Status.WARN,
        "the webhook port admits kube-system's pods and only the shipped placeholder "
        "192.0.2.0/24; the API servers' addresses are unknown (no endpoints default/kubernetes)",
        "set the ipBlock under `# API servers:` in manifests/base/networkpolicy.yaml to your "
        'API servers\' addresses (docs/webhook.md, "The NetworkPolicy and its one setting") and '
        "apply it",
    )
    elsewhere = world.healthy(api_server_addresses=())
    assert network.network_policy(elsewhere) == Result(
        "network-policy",
        Status.PASS,
        "the webhook port admits 10.0.0.10/32 (the API servers' addresses are unknown: no "
        "endpoints default/kubernetes)",
    )


def test_no_policy_warns_and_no_webhook_rule_fails() -> None:
    assert network.network_policy(world.healthy(network_policy=None)) == Result(
        "network-policy",
        Status.WARN,
        "no NetworkPolicy sakura-secrets/sakura-secrets-injector: every pod may call /mutate",
        APPLY,
    )
    policy = world.network_policy()
    policy["spec"]["ingress"] = policy["spec"]["ingress"][1:]
    result = network.network_policy(world.healthy(network_policy=policy))
    assert (result.status, result.fix) == (Status.FAIL, APPLY)


def test_the_broker_passes_with_ready_endpoints_and_an_open_rule() -> None:
    assert network.broker(world.healthy()) == Result(
        "broker",
        Status.PASS,
        "https://sakura-secrets-injector.sakura-secrets.svc: 2 ready endpoint(s), NetworkPolicy "
        "admits pods of shop (read from the objects; no connection made)",
    )


def test_a_broker_without_endpoints_fails() -> None:
    result = network.broker(world.healthy(endpoints=world.endpoints([])))
    assert result == Result(
        "broker",
        Status.FAIL,
        "no ready endpoint behind Service sakura-secrets-injector: init containers cannot fetch",
        "kubectl -n sakura-secrets describe pods -l app.kubernetes.io/component=injector",
    )
    assert network.broker(world.healthy(service=None)).fix == APPLY


def test_a_broker_rule_that_leaves_the_namespace_out_fails() -> None:
    policy = world.network_policy()
    policy["spec"]["ingress"][1]["from"] = [{"namespaceSelector": {"matchLabels": {"a": "b"}}}]
    result = network.broker(world.healthy(network_policy=policy))
    assert result == Result(
        "broker",
        Status.FAIL,
        "NetworkPolicy sakura-secrets/sakura-secrets-injector does not admit pods of shop to "
        "the broker port",
        "give the broker rule of manifests/base/networkpolicy.yaml `from: [namespaceSelector: "
        "{}]` and apply it",
    )


def test_an_egress_policy_of_the_namespace_that_blocks_the_broker_warns() -> None:
    deny = {
        "metadata": {"name": "locked"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": 53}]}],
        },
    }
    result = network.broker(world.healthy(namespace_policies=(deny,)))
    assert result == Result(
        "broker",
        Status.WARN,
        "NetworkPolicy shop/locked restricts egress and allows no TCP 9443 (the broker's pod "
        "port) to namespace sakura-secrets: the pods it selects cannot reach the broker",
        "add an egress rule to namespace sakura-secrets (namespaceSelector "
        "kubernetes.io/metadata.name: sakura-secrets) on TCP 9443, and DNS",
    )
    allowed = {
        "metadata": {"name": "open"},
        "spec": {
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "sakura-secrets"}
                            }
                        }
                    ],
                    "ports": [{"port": 9443}],
                }
            ],
        },
    }
    assert network.broker(world.healthy(namespace_policies=(allowed,))).status == Status.PASS


# ---------------------------------------------------------------- selectors


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (None, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {"a": "1"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "1"},
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
            {"a": "2"},
            False,
        ),
    ],
)
def test_label_selectors_match_as_the_api_server_does(
    selector: dict[str, object] | None, labels: dict[str, str], expected: bool
) -> None:
    assert selects(selector, labels) is expected


# ---------------------------------------------------------------- defaults and edges


def test_the_api_servers_defaults_count_as_installed() -> None:
    configuration = world.webhook()
    del configuration["webhooks"][0]["failurePolicy"]
    del configuration["webhooks"][0]["timeoutSeconds"]
    assert install.webhook_configuration(world.healthy(webhook=configuration)).status == Status.PASS


def test_each_webhook_finding_alone_is_a_warning() -> None:
    ignore, short = world.webhook(), world.webhook()
    ignore["webhooks"][0]["failurePolicy"] = "Ignore"
    short["webhooks"][0]["timeoutSeconds"] = 5
    assert install.webhook_configuration(world.healthy(webhook=ignore)).status == Status.WARN
    assert install.webhook_configuration(world.healthy(webhook=short)).status == Status.WARN


def test_replicas_edges() -> None:
    unset = world.ready(world.obj("Deployment"), 1)
    del unset["spec"]["replicas"]
    assert install.replicas(world.healthy(deployment=unset)).summary == (
        "1 replica: losing its node refuses opted-in pods until it is back"
    )
    scaled_down = world.obj("Deployment")
    scaled_down["spec"]["replicas"] = 0
    assert install.replicas(world.healthy(deployment=world.ready(scaled_down, 0))) == Result(
        "replicas",
        Status.FAIL,
        "0 of 0 injector replicas ready: opted-in pods are refused (failurePolicy Fail)",
        LOGS,
    )
    certs = world.ready(world.obj("Deployment", "sakura-secrets-certs"), 0)
    assert install.replicas(world.healthy(certs_deployment=certs)).status == Status.WARN


def test_match_conditions_edges() -> None:
    assert install.match_conditions(world.healthy(webhook=None)) == Result(
        "match-conditions", Status.WARN, "not checked: no webhook configuration", APPLY
    )
    plus = install.match_conditions(world.healthy(server_version=("1", "28+")))
    assert plus.summary == "present (Kubernetes 1.28): only opted-in pods wait"
    configuration = world.webhook()
    del configuration["webhooks"][0]["matchConditions"]
    unknown = install.match_conditions(
        world.healthy(webhook=configuration, server_version=("1", ""))
    )
    assert unknown.status == Status.PASS


def test_the_injectors_own_namespace_is_never_injected() -> None:
    facts = world.healthy(namespace="sakura-secrets")
    assert install.namespace_label(facts) == Result(
        "namespace",
        Status.FAIL,
        "pods of sakura-secrets are never injected (the injector's own namespace and "
        "kube-system are excluded)",
        "run the workload in another namespace",
    )


def test_every_replica_is_asked_and_every_reason_shown() -> None:
    unreachable = Readiness("injector-a", error="timed out")
    reasons = Readiness("injector-b", 503, {"status": "not ready", "reasons": ["one", "two"]})
    result = install.sakura_key(world.healthy(readiness=(unreachable, reasons)))
    assert result.status == Status.FAIL
    assert result.summary == (
        "injector-b is not ready: one; two; could not ask injector-a's /readyz through the API "
        "server (timed out)"
    )
    bare = Readiness("injector-c", 500, {"status": "error"})
    assert install.sakura_key(world.healthy(readiness=(bare,))).summary == (
        "injector-c is not ready: HTTP 500"
    )
