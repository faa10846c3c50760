"""What the NetworkPolicies let through, read from the objects (no connection is made): the
webhook port to the API servers, the broker port to a namespace's pods. Whether the network
enforces NetworkPolicy at all cannot be read from the API; these say what it would allow."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from injector.operations.doctor.facts import PLACEHOLDER_CIDR, Facts, Json, container_port
from injector.operations.doctor.install import APPLY
from injector.operations.doctor.results import Finding, Result, Status, judged
from injector.operations.doctor.selectors import selects

WEBHOOK_PORT = ("webhook", 8443)
BROKER_PORT = ("broker", 9443)
POLICY_FILE = "manifests/base/networkpolicy.yaml"


def _rules(policy: Json | None, port: tuple[str, int]) -> list[Json]:
    """The policy's ingress rules that open `port` (by name or number; no ports: every port)."""
    if policy is None:
        return []
    return [
        rule
        for rule in policy.get("spec", {}).get("ingress") or []
        if not rule.get("ports") or any(p.get("port") in port for p in rule["ports"])
    ]


def _peers(rules: Iterable[Json]) -> list[Json] | None:
    """The `from` peers of the rules; None when one rule has none (everyone may connect)."""
    peers: list[Json] = []
    for rule in rules:
        if not rule.get("from"):
            return None
        peers.extend(rule["from"])
    return peers


def network_policy(facts: Facts) -> Result:
    check = "network-policy"
    ns, name = facts.install.namespace, facts.install.name
    if facts.network_policy is None:
        return Result(
            check, Status.WARN, f"no NetworkPolicy {ns}/{name}: every pod may call /mutate", APPLY
        )
    rules = _rules(facts.network_policy, WEBHOOK_PORT)
    if not rules:
        return Result(
            check,
            Status.FAIL,
            "no rule opens the webhook port: where NetworkPolicy is enforced, the API server "
            "cannot call the webhook",
            APPLY,
        )
    peers = _peers(rules)
    if peers is None:
        return Result(check, Status.PASS, "the webhook port is open to every address")
    cidrs = [p["ipBlock"]["cidr"] for p in peers if p.get("ipBlock", {}).get("cidr")]
    outside = [a for a in facts.api_server_addresses if not _within(a, cidrs)]
    if outside:
        return Result(
            check,
            Status.WARN,
            f"the webhook port's ipBlocks ({', '.join(cidrs) or 'none'}) leave out the API "
            f"server address(es) {', '.join(outside)}: where NetworkPolicy is enforced, an API "
            "server connecting from its own address cannot call the webhook (konnectivity "
            "agents in kube-system pass)",
            f"add ipBlock {' '.join(f'{a}/32' for a in outside)} under `# API servers:` in "
            f"{POLICY_FILE} and apply it",
        )
    if cidrs in ([], [PLACEHOLDER_CIDR]):
        return Result(
            check,
            Status.WARN,
            "the webhook port admits kube-system's pods and only the shipped placeholder "
            f"{PLACEHOLDER_CIDR}; the API servers' addresses are unknown (no endpoints "
            "default/kubernetes)",
            f"set the ipBlock under `# API servers:` in {POLICY_FILE} to your API servers' "
            'addresses (docs/webhook.md, "The NetworkPolicy and its one setting") and apply it',
        )
    if not facts.api_server_addresses:
        return Result(
            check,
            Status.PASS,
            f"the webhook port admits {', '.join(cidrs)} (the API servers' addresses are "
            "unknown: no endpoints default/kubernetes)",
        )
    return Result(
        check,
        Status.PASS,
        f"the webhook port admits the API server(s) {', '.join(facts.api_server_addresses)} "
        f"({', '.join(cidrs)})",
    )


def _within(address: str, cidrs: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(c, strict=False) for c in cidrs)
    except ValueError:
        return False


def broker_url(facts: Facts) -> str:
    env = facts.container_env()
    return env.get("SAKURA_SECRETS_BROKER_URL") or f"https://{facts.install.host}"


def broker(facts: Facts) -> Result:
    check = "broker"
    ns, name = facts.install.namespace, facts.install.name
    if facts.service is None:
        return Result(check, Status.FAIL, f"Service {ns}/{name} not found", APPLY)
    ports = [
        p
        for p in facts.service.get("spec", {}).get("ports") or []
        if p.get("targetPort") in BROKER_PORT
    ]
    if not ports:
        return Result(check, Status.FAIL, f"Service {ns}/{name} has no port to the broker", APPLY)
    findings = []
    ready = _ready_endpoints(facts.endpoints)
    if not ready:
        findings.append(
            Finding(
                Status.FAIL,
                f"no ready endpoint behind Service {name}: init containers cannot fetch",
                f"kubectl -n {ns} describe pods -l app.kubernetes.io/component=injector",
            )
        )
    labels = (facts.namespace_object or {}).get("metadata", {}).get("labels") or {}
    whose = f"pods of {facts.namespace}" if facts.namespace else "pods of every namespace"
    if facts.network_policy is not None:
        peers = _peers(_rules(facts.network_policy, BROKER_PORT))
        opened = bool(_rules(facts.network_policy, BROKER_PORT))
        admitted = peers is None or any(
            "namespaceSelector" in p and selects(p["namespaceSelector"], labels) for p in peers
        )
        if not opened or not admitted:
            findings.append(
                Finding(
                    Status.FAIL,
                    f"NetworkPolicy {ns}/{name} does not admit {whose} to the broker port",
                    f"give the broker rule of {POLICY_FILE} `from: [namespaceSelector: {{}}]` "
                    "and apply it",
                )
            )
    # network plugins match egress after the Service's translation: the pod's port counts
    port = container_port(facts.deployment, *BROKER_PORT)
    for policy in facts.namespace_policies:
        if not _egress_allows(policy, port, facts.injector_namespace_labels):
            policy_name = policy.get("metadata", {}).get("name", "?")
            findings.append(
                Finding(
                    Status.WARN,
                    f"NetworkPolicy {facts.namespace}/{policy_name} restricts egress and allows "
                    f"no TCP {port} (the broker's pod port) to namespace {ns}: the pods it "
                    "selects cannot reach the broker",
                    f"add an egress rule to namespace {ns} (namespaceSelector "
                    f"kubernetes.io/metadata.name: {ns}) on TCP {port}, and DNS",
                )
            )
    return judged(
        check,
        findings,
        f"{broker_url(facts)}: {ready} ready endpoint(s), NetworkPolicy admits {whose} "
        "(read from the objects; no connection made)",
    )


def _ready_endpoints(endpoints: Json | None) -> int:
    if endpoints is None:
        return 0
    return sum(
        len(subset.get("addresses") or [])
        for subset in endpoints.get("subsets") or []
        if any(
            p.get("name") == BROKER_PORT[0] or p.get("port") == BROKER_PORT[1]
            for p in subset.get("ports") or []
        )
    )


def _egress_allows(policy: Json, port: int, injector_labels: dict[str, str]) -> bool:
    spec = policy.get("spec", {})
    if "Egress" not in (spec.get("policyTypes") or []):
        return True
    for rule in spec.get("egress") or []:
        ports = rule.get("ports") or []
        if ports and not any(p.get("port") == port for p in ports):
            continue
        peers = rule.get("to") or []
        if not peers or any(
            "ipBlock" in p
            or ("namespaceSelector" in p and selects(p["namespaceSelector"], injector_labels))
            for p in peers
        ):
            return True
    return False
