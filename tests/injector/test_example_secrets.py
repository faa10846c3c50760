"""manifests/examples: one sakura-api-key Secret for each kind of Sakura credentials, valid
Kubernetes, holding exactly the keys the injector reads for that kind (and no real key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions
from support.secret_volume import write_secret_volume

from injector.broker.key_files import KEY_FILES, PRINCIPAL_FILES, SakuraKeyFiles
from injector.reread import Unreadable

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
OPTIONAL = {"SAKURA_SECRETS_DEFAULT_VAULT_ID", "SAKURA_ZONE", "SAKURA_ENDPOINTS_SECRETMANAGER"}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return data


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("sakura-api-key.api-key.yaml", set(KEY_FILES)),
        ("sakura-api-key.service-principal.yaml", set(PRINCIPAL_FILES)),
    ],
)
def test_each_example_is_a_valid_secret_with_one_kinds_keys(name: str, keys: set[str]) -> None:
    secret = load(name)
    for version in all_versions()[-3:]:
        kubernetes_validate.validate(secret, version, strict=True)
    assert secret["metadata"] == {"name": "sakura-api-key", "namespace": "sakura-secrets"}
    given = set(secret["stringData"])
    assert keys <= given and given - keys <= OPTIONAL


def test_the_examples_hold_placeholders_the_injector_refuses_not_keys(tmp_path: Path) -> None:
    data = load("sakura-api-key.service-principal.yaml")["stringData"]
    write_secret_volume(tmp_path, data)
    with pytest.raises(Unreadable, match="could not be read as a PEM private key"):
        SakuraKeyFiles(tmp_path).current()
    assert sorted(p.name for p in EXAMPLES.iterdir()) == [
        "sakura-api-key.api-key.yaml",
        "sakura-api-key.service-principal.yaml",
    ]
