"""A service principal from Sakura's own environment names and profile fields, with the key
pair's precedence rules; both kinds at once, or half a principal, named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sakura.config import (
    BOTH_KINDS,
    DEFAULT_TOKEN_ENDPOINT,
    MAX_PRIVATE_KEY_BYTES,
    PrincipalSettings,
    SakuraConfig,
)
from sakura.errors import SakuraConfigError

PEM = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"
SP_ENV = {
    "SAKURA_SERVICE_PRINCIPAL_ID": "113000000001",
    "SAKURA_SERVICE_PRINCIPAL_KEY_ID": "kid-1",
    "SAKURA_PRIVATE_KEY": PEM,
}


def profile(root: Path, **values: object) -> None:
    (root / "default").mkdir(parents=True)
    (root / "default" / "config.json").write_text(json.dumps(values))


def test_the_environment_names_a_service_principal(tmp_path: Path) -> None:
    config = SakuraConfig.from_env({**SP_ENV, "HOME": str(tmp_path / "nowhere")})
    assert config.kind == "service-principal"
    assert config.principal == PrincipalSettings(
        "113000000001", "kid-1", PEM, "SAKURA_PRIVATE_KEY", DEFAULT_TOKEN_ENDPOINT
    )
    assert (config.access_token, config.access_token_secret) == ("", "")
    assert PEM not in repr(config) and "MIIE" not in repr(config.principal)


def test_a_key_path_and_a_token_endpoint(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text(PEM)
    env = {k: v for k, v in SP_ENV.items() if k != "SAKURA_PRIVATE_KEY"}
    env |= {"SAKURA_PRIVATE_KEY_PATH": str(key), "SAKURA_TOKEN_ENDPOINT": "http://127.0.0.1:9/t"}
    principal = SakuraConfig.from_env(env).principal
    assert principal is not None
    assert (principal.private_key, principal.key_source) == (PEM, str(key))
    assert principal.token_endpoint == "http://127.0.0.1:9/t"


def test_the_key_text_wins_over_a_path(tmp_path: Path) -> None:
    env = {**SP_ENV, "SAKURA_PRIVATE_KEY_PATH": str(tmp_path / "absent.pem")}
    principal = SakuraConfig.from_env(env).principal
    assert principal is not None and principal.private_key == PEM


def test_profile_fields_and_env_beats_profile(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text(PEM)
    profile(
        tmp_path / "p",
        ServicePrincipalID="113000000009",
        ServicePrincipalKeyID="kid-9",
        ServicePrivateKeyPath=str(key),
        TokenEndpoint="https://token.example/t",
        Zone="is1a",
    )
    env = {"SAKURA_PROFILE_DIR": str(tmp_path / "p")}
    config = SakuraConfig.from_env(env)
    assert config.principal == PrincipalSettings(
        "113000000009", "kid-9", PEM, str(key), "https://token.example/t"
    )
    assert config.zone == "is1a"
    over = SakuraConfig.from_env({**env, "SAKURA_SERVICE_PRINCIPAL_KEY_ID": "kid-env"})
    assert over.principal is not None and over.principal.key_id == "kid-env"


def test_a_profile_key_text_is_named_as_the_profile_field(tmp_path: Path) -> None:
    profile(
        tmp_path / "p", ServicePrincipalID="1", ServicePrincipalKeyID="k", ServicePrivateKey=PEM
    )
    principal = SakuraConfig.from_env({"SAKURA_PROFILE_DIR": str(tmp_path / "p")}).principal
    assert principal is not None
    assert principal.key_source == "the profile's ServicePrivateKey"


def test_both_kinds_at_once_is_an_error_naming_both(tmp_path: Path) -> None:
    env = {**SP_ENV, "SAKURA_ACCESS_TOKEN": "t", "SAKURA_ACCESS_TOKEN_SECRET": "s"}
    with pytest.raises(SakuraConfigError) as caught:
        SakuraConfig.from_env(env)
    assert str(caught.value) == BOTH_KINDS
    assert "SAKURA_ACCESS_TOKEN" in BOTH_KINDS and "SAKURA_SERVICE_PRINCIPAL_ID" in BOTH_KINDS
    profile(tmp_path / "p", AccessToken="t", AccessTokenSecret="s")
    with pytest.raises(SakuraConfigError, match="both an API key"):
        SakuraConfig.from_env(
            {**SP_ENV, "SAKURA_PROFILE_DIR": str(tmp_path / "p"), "SAKURA_PROFILE": "default"}
        )
    with pytest.raises(SakuraConfigError, match="both an API key"):
        SakuraConfig(access_token="t", principal=PrincipalSettings("1", "k", PEM))


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        ("SAKURA_SERVICE_PRINCIPAL_ID", "SAKURA_SERVICE_PRINCIPAL_ID"),
        ("SAKURA_SERVICE_PRINCIPAL_KEY_ID", "SAKURA_SERVICE_PRINCIPAL_KEY_ID"),
        ("SAKURA_PRIVATE_KEY", "SAKURA_PRIVATE_KEY (or SAKURA_PRIVATE_KEY_PATH)"),
    ],
)
def test_half_a_principal_names_what_is_missing(tmp_path: Path, drop: str, named: str) -> None:
    env = {k: v for k, v in SP_ENV.items() if k != drop} | {"HOME": str(tmp_path)}
    with pytest.raises(SakuraConfigError) as caught:
        SakuraConfig.from_env(env)
    assert str(caught.value) == f"the service principal is only partly configured: set {named}"


def test_a_key_file_that_cannot_be_used_is_named_never_quoted(tmp_path: Path) -> None:
    env = {k: v for k, v in SP_ENV.items() if k != "SAKURA_PRIVATE_KEY"}
    missing = tmp_path / "absent.pem"
    with pytest.raises(SakuraConfigError) as caught:
        SakuraConfig.from_env({**env, "SAKURA_PRIVATE_KEY_PATH": str(missing)})
    assert str(caught.value) == (
        f"the private key file {missing} cannot be read (FileNotFoundError); check "
        "SAKURA_PRIVATE_KEY_PATH and the file's permissions"
    )
    big = tmp_path / "big.pem"
    big.write_bytes(b"A" * (MAX_PRIVATE_KEY_BYTES + 1))
    with pytest.raises(SakuraConfigError, match=r"larger than 65536 bytes: not a PEM private key$"):
        SakuraConfig.from_env({**env, "SAKURA_PRIVATE_KEY_PATH": str(big)})
    exact = tmp_path / "exact.pem"
    exact.write_bytes(b"A" * MAX_PRIVATE_KEY_BYTES)
    assert SakuraConfig.from_env({**env, "SAKURA_PRIVATE_KEY_PATH": str(exact)}).principal
    der = tmp_path / "key.der"
    der.write_bytes(b"\x30\x82\xff\xfe secret-bytes")
    with pytest.raises(SakuraConfigError) as caught:
        SakuraConfig.from_env({**env, "SAKURA_PRIVATE_KEY_PATH": str(der)})
    assert "is not PEM text (a DER file?" in str(caught.value)
    assert "secret-bytes" not in str(caught.value)


def test_a_token_endpoint_must_be_a_url() -> None:
    with pytest.raises(SakuraConfigError) as caught:
        SakuraConfig.from_env({**SP_ENV, "SAKURA_TOKEN_ENDPOINT": "token.example/t"})
    assert str(caught.value) == (
        "SAKURA_TOKEN_ENDPOINT 'token.example/t' must start with http:// or https://"
    )


def test_explicit_principal_env_never_touches_the_profile_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o000)
    try:
        assert SakuraConfig.from_env({**SP_ENV, "HOME": str(home)}).principal is not None
    finally:
        home.chmod(0o700)


def test_missing_everything_mentions_both_kinds(tmp_path: Path) -> None:
    with pytest.raises(SakuraConfigError) as caught:
        SakuraConfig.from_env({"HOME": str(tmp_path)})
    assert "or a service principal (SAKURA_SERVICE_PRINCIPAL_ID" in str(caught.value)
    assert SakuraConfig("t", "s").kind == "api-key"
