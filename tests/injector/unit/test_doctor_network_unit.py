"""doctor's NetworkPolicy and broker checks on the edges of the objects they read: rules
without peers, ranges with host bits, endpoints by port name or number, egress rules of the
workload's namespace that do or do not let its pods reach the broker."""

from __future__ import annotations

from typing import Any

import pytest

from injector.operations.doctor import network
from injector.operations.doctor.results import Result, Status
from tests.support import doctor_facts as world

APPLY = (
    "kubectl apply -k manifests/ (Kubernetes 1.30+; manifests/legacy on 1.21 to 1.29, "
    "manifests/legacy-1.20 on 1.20)"
)
PASSED = (
    "https://sakura-secrets-injector.sakura-secrets.svc: 2 ready endpoint(s), NetworkPolicy "
    "admits pods of shop (read from the objects; no connection made)"
)


def blocks(*cidrs: str) -> dict[str, Any]:
    policy = world.network_policy()
    policy["spec"]["ingress"][0]["from"] = [{"ipBlock": {"cidr": c}} for c in cidrs]
    return policy


def test_a_policy_without_a_webhook_rule_fails_exactly() -> None:
    for policy in ({}, {"spec": {"ingress": []}}):
        assert network.network_policy(world.healthy(network_policy=policy)) == Result(
            "network-policy",
            Status.FAIL,
            "no rule opens the webhook port: where NetworkPolicy is enforced, the API server "
            "cannot call the webhook",
            APPLY,
        )


def test_a_webhook_rule_without_peers_is_open_to_every_address() -> None:
    policy = world.network_policy()
    del policy["spec"]["ingress"][0]["from"]
    assert network.network_policy(world.healthy(network_policy=policy)) == Result(
        "network-policy", Status.PASS, "the webhook port is open to every address"
    )


def test_every_api_server_left_out_is_named_with_its_block() -> None:
    facts = world.healthy(
        network_policy=blocks("10.0.0.10/32", "10.0.1.0/24"),
        api_server_addresses=("10.0.0.10", "10.0.2.1", "10.0.3.1"),
    )
    assert network.network_policy(facts) == Result(
        "network-policy",
        Status.WARN,
        "the webhook port's ipBlocks (10.0.0.10/32, 10.0.1.0/24) leave out the API server "
        "address(es) 10.0.2.1, 10.0.3.1: where NetworkPolicy is enforced, an API server "
        "connecting from its own address cannot call the webhook (konnectivity agents in "
        "kube-system pass)",
        "add ipBlock 10.0.2.1/32 10.0.3.1/32 under `# API servers:` in "
        "manifests/base/networkpolicy.yaml and apply it",
    )
    no_blocks = world.network_policy()
    no_blocks["spec"]["ingress"][0]["from"] = no_blocks["spec"]["ingress"][0]["from"][:1]
    assert network.network_policy(world.healthy(network_policy=no_blocks)).summary.startswith(
        "the webhook port's ipBlocks (none) leave out the API server address(es) 10.0.0.10:"
    )


def test_api_servers_inside_ranges_pass_even_with_host_bits_set() -> None:
    facts = world.healthy(
        network_policy=blocks("10.0.0.1/24", "10.0.1.0/24"),
        api_server_addresses=("10.0.0.10", "10.0.1.7"),
    )
    assert network.network_policy(facts) == Result(
        "network-policy",
        Status.PASS,
        "the webhook port admits the API server(s) 10.0.0.10, 10.0.1.7 (10.0.0.1/24, 10.0.1.0/24)",
    )
    unknown = world.healthy(
        network_policy=blocks("10.0.0.1/24", "10.0.1.0/24"), api_server_addresses=()
    )
    assert network.network_policy(unknown).summary == (
        "the webhook port admits 10.0.0.1/24, 10.0.1.0/24 (the API servers' addresses are "
        "unknown: no endpoints default/kubernetes)"
    )


def test_an_address_that_is_no_ip_is_never_inside_a_range() -> None:
    facts = world.healthy(api_server_addresses=("api.example",))
    assert network.network_policy(facts).status == Status.WARN


def test_a_service_without_a_broker_port_fails() -> None:
    only_webhook = world.obj("Service")
    only_webhook["spec"]["ports"] = [
        p for p in only_webhook["spec"]["ports"] if p["name"] == "webhook"
    ]
    for service in ({}, only_webhook):
        assert network.broker(world.healthy(service=service)) == Result(
            "broker",
            Status.FAIL,
            "Service sakura-secrets/sakura-secrets-injector has no port to the broker",
            APPLY,
        )
    only_broker = world.obj("Service")
    only_broker["spec"]["ports"] = [
        p for p in only_broker["spec"]["ports"] if p["name"] == "broker"
    ]
    assert network.broker(world.healthy(service=only_broker)).status == Status.PASS
    assert network.broker(world.healthy(service=None)) == Result(
        "broker", Status.FAIL, "Service sakura-secrets/sakura-secrets-injector not found", APPLY
    )


@pytest.mark.parametrize(
    ("endpoints", "ready"),
    [
        (None, 0),
        (
            {
                "subsets": [
                    {"addresses": [{"ip": "a"}], "ports": [{"name": "webhook", "port": 8443}]}
                ]
            },
            0,
        ),
        ({"subsets": [{"addresses": [{"ip": "a"}], "ports": [{"port": 9443}]}]}, 1),
        ({"subsets": [{"addresses": [{"ip": "a"}], "ports": [{"name": "broker", "port": 1}]}]}, 1),
    ],
)
def test_ready_endpoints_are_those_of_the_broker_port(endpoints: Any, ready: int) -> None:
    result = network.broker(world.healthy(endpoints=endpoints))
    assert result.status == (Status.PASS if ready else Status.FAIL)
    if ready:
        assert result.summary.startswith(
            f"https://sakura-secrets-injector.sakura-secrets.svc: {ready} ready"
        )


def test_the_broker_rule_is_matched_against_the_namespaces_labels() -> None:
    policy = world.network_policy()
    policy["spec"]["ingress"][1]["from"] = [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]
    labelled = world.namespace({"sakura-secrets-injection": "enabled", "team": "a"})
    assert (
        network.broker(world.healthy(network_policy=policy, namespace_object=labelled)).status
        == Status.PASS
    )
    assert network.broker(world.healthy(network_policy=policy)).status == Status.FAIL
    pods_only = world.network_policy()
    pods_only["spec"]["ingress"][1]["from"] = [{"podSelector": {}}]
    assert network.broker(world.healthy(network_policy=pods_only)).status == Status.FAIL


def test_without_a_namespace_the_broker_speaks_of_every_namespace() -> None:
    facts = world.healthy(namespace="", namespace_object=None)
    assert network.broker(facts).summary == (
        "https://sakura-secrets-injector.sakura-secrets.svc: 2 ready endpoint(s), NetworkPolicy "
        "admits pods of every namespace (read from the objects; no connection made)"
    )


def egress(*rules: dict[str, Any], name: str | None = "locked") -> dict[str, Any]:
    policy: dict[str, Any] = {"spec": {"policyTypes": ["Ingress", "Egress"], "egress": list(rules)}}
    if name is not None:
        policy["metadata"] = {"name": name}
    return policy


INJECTOR_NS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "sakura-secrets"}}
}
OTHER_NS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "elsewhere"}}}


@pytest.mark.parametrize(
    "policy",
    [
        {},
        {"metadata": {"name": "ingress-only"}, "spec": {"policyTypes": ["Ingress"]}},
        egress({"ports": [{"port": 53}]}, {"ports": [{"port": 9443}]}),
        egress({"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 9443}]}),
        egress({"to": [OTHER_NS, INJECTOR_NS]}),
        egress({"to": [INJECTOR_NS], "ports": [{"port": 9443}]}),
    ],
)
def test_egress_rules_that_let_the_broker_through(policy: dict[str, Any]) -> None:
    assert network.broker(world.healthy(namespace_policies=(policy,))) == Result(
        "broker", Status.PASS, PASSED
    )


@pytest.mark.parametrize(
    "policy",
    [
        egress(),
        egress({"to": [OTHER_NS], "ports": [{"port": 9443}]}),
        egress({"to": [{"podSelector": {}}]}),
        egress({"to": [INJECTOR_NS], "ports": [{"port": 443}]}),
    ],
)
def test_egress_rules_that_block_the_broker_warn(policy: dict[str, Any]) -> None:
    result = network.broker(world.healthy(namespace_policies=(policy,)))
    assert result.status == Status.WARN
    assert result.summary.startswith(
        "NetworkPolicy shop/locked restricts egress and allows no TCP 9443"
    )


def test_the_port_egress_must_allow_is_the_brokers_pod_port_and_a_nameless_policy_is_shown() -> (
    None
):
    deployment = world.ready(world.obj("Deployment"), 2)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [broker] = [p for p in container["ports"] if p["name"] == "broker"]
    broker["containerPort"] = 8444
    blocked = egress({"ports": [{"port": 9443}]}, name=None)
    result = network.broker(world.healthy(deployment=deployment, namespace_policies=(blocked,)))
    assert result == Result(
        "broker",
        Status.WARN,
        "NetworkPolicy shop/? restricts egress and allows no TCP 8444 (the broker's pod port) "
        "to namespace sakura-secrets: the pods it selects cannot reach the broker",
        "add an egress rule to namespace sakura-secrets (namespaceSelector "
        "kubernetes.io/metadata.name: sakura-secrets) on TCP 8444, and DNS",
    )
    allowed = egress({"ports": [{"port": 8444}]})
    assert (
        network.broker(world.healthy(deployment=deployment, namespace_policies=(allowed,))).status
        == Status.PASS
    )
    assert (
        network.broker(world.healthy(deployment=None, namespace_policies=(allowed,))).status
        == Status.WARN
    )


def test_the_broker_url_is_the_installed_one() -> None:
    deployment = world.ready(world.obj("Deployment"), 2)
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    env.append({"name": "SAKURA_SECRETS_BROKER_URL", "value": "https://broker.example:8444"})
    assert network.broker(world.healthy(deployment=deployment)).summary.startswith(
        "https://broker.example:8444: 2 ready endpoint(s)"
    )
