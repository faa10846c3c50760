"""Every check of an installation, in the order an operator reads them: the webhook and its
TLS, the replicas, Sakura, the network, then the namespace and the workload asked about."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from injector.broker.can_i import Answer
from injector.operations.doctor import install, network, tls, workload
from injector.operations.doctor.facts import Facts
from injector.operations.doctor.results import Result


def diagnose(facts: Facts, *, workload_given: bool) -> list[Result]:
    results = [
        install.webhook_configuration(facts),
        tls.ca_bundle(facts),
        tls.certificate_expiry(facts),
        install.match_conditions(facts),
        install.replicas(facts),
        install.disruption_budget(facts),
        install.sakura_key(facts),
    ]
    vault = install.default_vault(facts, workload_given)
    results += [vault] if vault is not None else []
    results += [network.network_policy(facts), network.broker(facts)]
    if facts.namespace:
        results.append(install.namespace_label(facts))
    return results


def diagnose_workload(
    facts: Facts,
    given: workload.Workload,
    labels: Mapping[str, str],
    seen: workload.Preview,
    answers: Sequence[Answer] | None,
    dry_run: workload.DryRun,
) -> list[Result]:
    access = workload.access(given, seen, answers)
    return [
        workload.injection(facts, given, labels, seen),
        *([access] if access is not None else []),
        workload.admission(given, dry_run),
    ]
