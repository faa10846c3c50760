"""The small parts: selection, quantities, settings, modes."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from support.admission_harness import P, settings

from contract import Direct
from injector.webhook.annotations import parse_annotations
from injector.webhook.errors import Denied, SettingsError
from injector.webhook.quantity import parse_quantity
from injector.webhook.selection import skip_reason


@pytest.mark.parametrize(
    ("annotations", "namespace", "code", "reason"),
    [
        ({f"{P}inject": "true"}, "shop", None, None),
        ({f"{P}inject": "TRUE "}, "shop", None, None),
        ({}, "shop", "not-opted-in", "no sakura-secrets.io/inject annotation"),
        ({f"{P}inject": "false"}, "shop", "opted-out", '"false"'),
        ({f"{P}inject": "true"}, "kube-system", "excluded-namespace", "never injected"),
        ({f"{P}inject": "true"}, "sakura-secrets", "excluded-namespace", "never injected"),
        (
            {f"{P}inject": "true", f"{P}status": "injected"},
            "shop",
            "already-injected",
            "already injected",
        ),
    ],
)
def test_skip_reason(
    annotations: dict[str, str], namespace: str, code: str | None, reason: str | None
) -> None:
    got = skip_reason(annotations, namespace, settings())
    if reason is None:
        assert got is None
    else:
        assert got is not None and got[0] == code and reason in got[1]


def test_an_unclear_inject_value_is_denied_not_ignored() -> None:
    with pytest.raises(Denied, match=r'sakura-secrets.io/inject: \'1\' is not "true" or "false"'):
        skip_reason({f"{P}inject": "1"}, "shop", settings())


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("50m", Decimal("0.05")),
        ("1", Decimal(1)),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("64Mi", Decimal(64 * 2**20)),
        ("1Gi", Decimal(2**30)),
        ("128M", Decimal(128 * 10**6)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
        ("100u", Decimal("0.0001")),
    ],
)
def test_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "5mi", "-1", "+1", "1 Mi", "0", "0Mi"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("text", "mode"), [("0400", 0o400), ("400", 0o400), ("0644", 0o644), ("0004", 0o4)]
)
def test_file_modes_are_octal_with_or_without_leading_zero(text: str, mode: int) -> None:
    injection = parse_annotations(
        {
            f"{P}secret-a": "a",
            f"{P}file-mode": text,
            f"{P}secret-b": "b",
            f"{P}file-mode-b": "0440",
        },
        settings(),
    )
    assert {f.name: f.mode for f in injection.files} == {"a": mode, "b": 0o440}


def test_parsed_options_and_plan() -> None:
    injection = parse_annotations(
        {
            f"{P}inject": "true",
            f"{P}secret-z": "z@4",
            f"{P}secret-a": "a#k",
            f"{P}mount-path": "/run/s/",
            f"{P}containers": "x,y",
            f"{P}init-first": "False",
            f"{P}run-as-user": "10",
            f"{P}run-as-group": "20",
            f"{P}credentials-secret": "creds",
            f"{P}vault-id": "000000000001",
        },
        settings(),
    )
    options = injection.options
    assert options.mount_path == "/run/s"
    assert options.containers == ("x", "y")
    assert options.init_first is False
    assert (options.run_as_user, options.run_as_group) == (10, 20)
    assert injection.mode == Direct("creds")
    assert [f.name for f in injection.files] == ["a", "z"]  # stable order
    assert injection.vault_id == "000000000001"


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"image": " "}, "image"),
        ({"broker_url": "http://insecure"}, "https://"),
        ({"default_vault_id": "1"}, "default_vault_id"),
        ({"image_pull_policy": "Sometimes"}, "image_pull_policy"),
        ({"injector_namespace": ""}, "injector_namespace"),
        ({"fallback_uid": 0}, "fallback_uid"),
        ({"mesh_proxy_containers": ("Envoy",)}, "mesh_proxy_containers: 'Envoy' is not a"),
        ({"mesh_proxy_containers": ("",)}, "mesh_proxy_containers: '' is not a container name"),
        ({"mesh_proxy_containers": ("a" * 64,)}, "at most 63 characters"),
        ({"volume_size_limit": "8 MiB"}, "volume_size_limit: '8 MiB' is not a Kubernetes quantity"),
        ({"volume_size_limit": "0"}, "volume_size_limit: '0' is zero"),
    ],
)
def test_settings_refuse_bad_values(kw: dict[str, object], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        settings(**kw)
