"""A service principal from the mounted Secret: chosen by the files there, the key checked
as it is read (its fault named, never its content), a move from an API key to a service
principal by editing the Secret, both kinds at once refused, and `serve`'s configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.clock import HandClock
from support.principal_kit import private_pem, rsa_key
from support.secret_volume import write_secret_volume

from injector.broker.key_files import BOTH_KINDS, SakuraKeyFiles
from injector.operations.errors import UsageError
from injector.operations.sakura_credentials import sakura_credentials
from sakura.credentials import ApiKey
from sakura.principal import ServicePrincipal

API_KEY = {"SAKURA_ACCESS_TOKEN": "token-one", "SAKURA_ACCESS_TOKEN_SECRET": "secret-one-9f8e7d"}


def principal_files(kid: str = "kid-1") -> dict[str, str]:
    return {
        "SAKURA_SERVICE_PRINCIPAL_ID": "113000000001",
        "SAKURA_SERVICE_PRINCIPAL_KEY_ID": kid,
        "SAKURA_PRIVATE_KEY": private_pem(rsa_key()),
    }


def test_the_principal_files_give_a_service_principal(tmp_path: Path) -> None:
    write_secret_volume(tmp_path, principal_files())
    files = SakuraKeyFiles(tmp_path, token_endpoint="http://127.0.0.1:9/t")
    key = files.current()
    assert isinstance(key, ServicePrincipal)
    assert (key.principal_id, key.key_id, key.token_endpoint) == (
        "113000000001",
        "kid-1",
        "http://127.0.0.1:9/t",
    )
    assert files.problem is None and files.loaded_at > 0


def test_an_edit_of_the_secret_moves_from_a_key_to_a_principal(tmp_path: Path) -> None:
    clock = HandClock()
    write_secret_volume(tmp_path, API_KEY)
    files = SakuraKeyFiles(tmp_path, floor=1.0, clock=clock)
    assert isinstance(files.current(), ApiKey)
    write_secret_volume(tmp_path, principal_files())
    clock.now += 1
    assert isinstance(files.current(), ServicePrincipal)
    write_secret_volume(tmp_path, principal_files("kid-2"))
    clock.now += 1
    key = files.current()
    assert isinstance(key, ServicePrincipal) and key.key_id == "kid-2"


def test_both_kinds_at_once_keep_the_last_good_and_say_why(tmp_path: Path) -> None:
    write_secret_volume(tmp_path, API_KEY)
    files = SakuraKeyFiles(tmp_path, floor=0)
    first = files.current()
    write_secret_volume(tmp_path, {**API_KEY, **principal_files()})
    assert files.current() == first
    assert files.problem == f"{tmp_path} {BOTH_KINDS}"
    assert "SAKURA_ACCESS_TOKEN and SAKURA_ACCESS_TOKEN_SECRET" in BOTH_KINDS
    assert "SAKURA_SERVICE_PRINCIPAL_ID, SAKURA_SERVICE_PRINCIPAL_KEY_ID" in BOTH_KINDS
    fresh = SakuraKeyFiles(tmp_path, floor=0)
    with pytest.raises(ValueError, match="holds both an API key"):
        fresh.current()


def test_a_bad_key_is_named_and_the_last_good_kept(tmp_path: Path) -> None:
    write_secret_volume(tmp_path, principal_files())
    files = SakuraKeyFiles(tmp_path, floor=0)
    first = files.current()
    write_secret_volume(tmp_path, {**principal_files(), "SAKURA_PRIVATE_KEY": "MIIE-not-pem"})
    assert files.current() == first
    problem = files.problem or ""
    assert problem.startswith(f"the service principal in {tmp_path}: ")
    assert "SAKURA_PRIVATE_KEY is not a PEM private key" in problem
    assert "MIIE-not-pem" not in problem


def test_serve_configures_the_principal_from_the_directory(tmp_path: Path) -> None:
    write_secret_volume(tmp_path, principal_files())
    config, files = sakura_credentials(
        str(tmp_path), {"SAKURA_TOKEN_ENDPOINT": "http://127.0.0.1:9/t", "SAKURA_ZONE": "is1a"}
    )
    assert config.kind == "service-principal" and config.zone == "is1a"
    assert config.principal is not None
    assert config.principal.token_endpoint == "http://127.0.0.1:9/t"
    assert files is not None and isinstance(files.current(), ServicePrincipal)


@pytest.mark.parametrize(
    "variable", ["SAKURA_SERVICE_PRINCIPAL_ID", "SAKURA_PRIVATE_KEY", "SAKURA_PRIVATE_KEY_PATH"]
)
def test_serve_refuses_a_directory_and_principal_variables(tmp_path: Path, variable: str) -> None:
    write_secret_volume(tmp_path, principal_files())
    with pytest.raises(UsageError, match=f"and the environment \\({variable}\\) both give"):
        sakura_credentials(str(tmp_path), {variable: "x"})


def test_an_empty_directory_names_both_kinds_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        sakura_credentials(str(tmp_path), {})
    assert str(caught.value).endswith(
        "it needs the keys SAKURA_ACCESS_TOKEN and SAKURA_ACCESS_TOKEN_SECRET, or "
        "SAKURA_SERVICE_PRINCIPAL_ID, SAKURA_SERVICE_PRINCIPAL_KEY_ID, SAKURA_PRIVATE_KEY for a "
        "service principal)"
    )


def test_a_token_endpoint_file_in_the_secret_wins_over_the_environment(tmp_path: Path) -> None:
    write_secret_volume(
        tmp_path, {**principal_files(), "SAKURA_TOKEN_ENDPOINT": "http://10.0.0.9:8080/t\n"}
    )
    key = SakuraKeyFiles(tmp_path, token_endpoint="https://env.example/t").current()
    assert isinstance(key, ServicePrincipal) and key.token_endpoint == "http://10.0.0.9:8080/t"


def test_a_token_endpoint_file_that_is_no_url_is_named(tmp_path: Path) -> None:
    write_secret_volume(tmp_path, {**principal_files(), "SAKURA_TOKEN_ENDPOINT": "token.example"})
    with pytest.raises(ValueError, match=r"SAKURA_TOKEN_ENDPOINT 'token\.example' is not an http"):
        SakuraKeyFiles(tmp_path).current()
