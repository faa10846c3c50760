"""The broker's tuning refuses, when built, every value it could not work with."""

from __future__ import annotations

import pytest

from injector.broker.cache import CacheSettings
from injector.broker.tuning import BrokerTuning
from injector.setting import OutOfRange

EDGES: dict[str, float] = {
    **dict.fromkeys(("review_ttl", "reject_ttl", "pod_ttl", "allow_ttl", "deny_ttl"), 0.0),
    "rate_per_minute": 100,
    "negative_ttl": 30,
    "rate_burst": 1,
    "waiting_per_namespace": 1,
    "sakura_retries": 0,
    "admission_timeout": 9.99,
}
"""Every field at the bound it may still take."""


def test_the_defaults_work_and_every_bound_itself_is_accepted() -> None:
    tuning = BrokerTuning()
    assert (tuning.negative_ttl, tuning.listing_ttl, tuning.rate_per_minute) == (10.0, 30.0, 90.0)
    edge = BrokerTuning(cache=CacheSettings(latest_ttl=0, stale_for=0), **EDGES)  # type: ignore[arg-type]
    assert (edge.rate_per_minute, edge.negative_ttl, edge.sakura_retries) == (100, 30, 0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"review_ttl": -1}, "review_ttl must be 0 seconds or more"),
        ({"reject_ttl": -1}, "reject_ttl must be 0 seconds or more"),
        ({"pod_ttl": -0.1}, "pod_ttl must be 0 seconds or more"),
        ({"allow_ttl": -1}, "allow_ttl must be 0 seconds or more"),
        ({"deny_ttl": float("nan")}, "deny_ttl must be 0 seconds or more"),
        ({"kube_timeout": 0}, "kube_timeout must be above 0 seconds"),
        ({"listing_ttl": 0, "negative_ttl": 0.5}, "listing_ttl must be above 0 seconds"),
        ({"sakura_deadline": 0}, "sakura_deadline must be above 0 seconds"),
        ({"sakura_timeout": -1}, "sakura_timeout must be above 0 seconds"),
        ({"rate_per_minute": 0}, "rate_per_minute must be above 0 and at most 100, Sakura's quota"),
        ({"rate_per_minute": 100.5}, "rate_per_minute must be above 0 and at most 100"),
        ({"admission_timeout": 0}, "admission_timeout must be above 0 and under the webhook's"),
        (
            {"admission_timeout": 10},
            r"admission_timeout must be above 0 and under the webhook's timeoutSeconds \(10\)$",
        ),
        ({"negative_ttl": 0}, r"negative_ttl must be above 0 and at most 30s \(how long a vault"),
        ({"negative_ttl": 21, "listing_ttl": 20}, "negative_ttl must be above 0 and at most 20s"),
        ({"rate_burst": 0}, "rate_burst must be at least 1"),
        ({"waiting_per_namespace": 0}, "waiting_per_namespace must be at least 1"),
        ({"sakura_retries": -1}, "sakura_retries must be 0 or more"),
    ],
)
def test_a_value_that_cannot_work_is_refused_naming_the_field(
    fields: dict[str, float], message: str
) -> None:
    with pytest.raises(OutOfRange, match=f"^{message}") as caught:
        BrokerTuning(**fields)  # type: ignore[arg-type]
    assert caught.value.setting == next(iter(fields))
