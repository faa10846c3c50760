"""The namespace label's values are bounded: a tenant posting made-up namespaces cannot grow
Prometheus's series without end."""

from __future__ import annotations

import pytest

from injector.namespace_labels import LIMIT, OTHER, NamespaceLabels


def test_a_namespace_is_its_own_label_and_none_is_empty() -> None:
    labels = NamespaceLabels()
    assert labels("shop") == "shop"
    assert labels("a") == "a"
    assert labels("kube-system") == "kube-system"
    assert labels("0-9") == "0-9"
    assert labels("") == ""
    assert LIMIT == 1000


@pytest.mark.parametrize(
    "name",
    ["Shop", "-shop", "shop-", "sh_op", "sh.op", "shop ", " shop", "a" * 64, "ш", "x\n", OTHER],
)
def test_a_name_no_namespace_can_have_is_other(name: str) -> None:
    labels = NamespaceLabels()
    assert labels(name) == OTHER
    assert labels._named == set()  # takes no place among the named


def test_the_longest_namespace_name_is_its_own_label() -> None:
    assert NamespaceLabels()("a" * 63) == "a" * 63


def test_past_the_limit_new_names_are_other_and_the_named_stay_named() -> None:
    labels = NamespaceLabels(limit=2)
    assert [labels("a"), labels("b"), labels("c"), labels("a"), labels("b")] == [
        "a",
        "b",
        OTHER,
        "a",
        "b",
    ]
    assert labels("") == ""  # "no namespace" is never filed under OTHER
    assert OTHER == "_other"


def test_one_name_is_named_once() -> None:
    labels = NamespaceLabels(limit=1)
    assert [labels("a"), labels("a"), labels("b")] == ["a", "a", OTHER]


@pytest.mark.parametrize("limit", [0, -1])
def test_the_limit_is_at_least_one(limit: int) -> None:
    with pytest.raises(ValueError, match=f"limit must be at least 1, not {limit}"):
        NamespaceLabels(limit)
