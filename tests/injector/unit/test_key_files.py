"""The Sakura key from a mounted Secret: re-read when the kubelet swaps the files, the last good
key kept while the directory is half-written or unreadable (said once, never the value), and
`serve` given the directory or the environment's key, never both."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from support.clock import HandClock
from support.secret_volume import write_secret_volume

from injector.broker.key_files import SakuraKeyFiles
from injector.operations.errors import UsageError
from injector.operations.key_in_use import INFO, LOADED, KeyInUse
from injector.operations.sakura_credentials import sakura_credentials
from injector.reread import RereadFiles, Unreadable
from sakura.credentials import ApiKey, key_fingerprint

KEY_1 = {"SAKURA_ACCESS_TOKEN": "token-one", "SAKURA_ACCESS_TOKEN_SECRET": "secret-one-9f8e7d"}
KEY_2 = {"SAKURA_ACCESS_TOKEN": "token-two", "SAKURA_ACCESS_TOKEN_SECRET": "secret-two-1a2b3c"}


def test_a_swapped_secret_volume_gives_the_new_key_after_the_floor(tmp_path: Path) -> None:
    clock = HandClock()
    write_secret_volume(tmp_path, {**KEY_1, "SAKURA_SECRETS_DEFAULT_VAULT_ID": "1"})
    files = SakuraKeyFiles(tmp_path, floor=1.0, clock=clock)
    first = files.current()
    assert first == ApiKey("token-one", "secret-one-9f8e7d")
    loaded = files.loaded_at
    assert loaded > 0

    write_secret_volume(tmp_path, KEY_2)
    assert files.current() == first  # within the floor: not looked at again
    clock.now += 1.0
    assert files.current() == ApiKey("token-two", "secret-two-1a2b3c")
    assert files.loaded_at >= loaded
    assert files.problem is None


def test_a_key_file_with_a_trailing_newline_reads_as_the_key(tmp_path: Path) -> None:
    write_secret_volume(tmp_path, {k: v + "\n" for k, v in KEY_1.items()})
    assert SakuraKeyFiles(tmp_path).current() == ApiKey("token-one", "secret-one-9f8e7d")


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda d: (d / "..data" / "SAKURA_ACCESS_TOKEN_SECRET").unlink(), "cannot read"),
        (lambda d: (d / "..data" / "SAKURA_ACCESS_TOKEN").write_text("  \n"), "is empty"),
        (lambda d: (d / "..data" / "SAKURA_ACCESS_TOKEN").write_bytes(b"\xe3\x81"), "not text"),
    ],
    ids=["missing", "empty", "not-utf8"],
)
def test_a_half_written_directory_keeps_the_last_good_key_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object, said: str
) -> None:
    write_secret_volume(tmp_path, KEY_1)
    files = SakuraKeyFiles(tmp_path, floor=0)
    good = files.current()
    caplog.set_level(logging.INFO)
    damage(tmp_path)  # type: ignore[operator]
    for _ in range(3):
        assert files.current() == good
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert said in warnings[0].getMessage() and str(tmp_path) in warnings[0].getMessage()
    assert files.problem is not None and said in files.problem
    for secret in (*KEY_1.values(), "\xe3"):
        assert secret not in caplog.text

    write_secret_volume(tmp_path, KEY_2)  # a good version again: used, and the next problem
    assert files.current().access_token == "token-two"  # is said again
    assert files.problem is None
    (tmp_path / "..data" / "SAKURA_ACCESS_TOKEN").unlink()
    files.current()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_a_directory_that_never_held_a_key_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "SAKURA_ACCESS_TOKEN").write_text("token-only")
    with pytest.raises(Unreadable, match="SAKURA_ACCESS_TOKEN_SECRET"):
        SakuraKeyFiles(tmp_path).current()


def test_a_file_changed_while_being_read_is_read_again_later(tmp_path: Path) -> None:
    path = tmp_path / "value"
    path.write_text("one")
    reads = []

    def parse(contents: list[bytes]) -> str:
        reads.append(contents[0])
        if len(reads) == 2:  # the writer strikes between the read and the second stat
            path.write_text("three!")
        return contents[0].decode()

    files = RereadFiles([path], parse, what="the value", floor=0)
    assert files.current() == "one"
    path.write_text("two")
    assert files.current() == "one"  # seen changing under the read: the last good value
    assert files.problem is not None and "changed while being read" in files.problem
    assert files.current() == "three!"


def test_the_key_change_is_logged_with_its_fingerprint_never_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    write_secret_volume(tmp_path, KEY_1)
    files = SakuraKeyFiles(tmp_path, floor=0)
    files.current()
    write_secret_volume(tmp_path, KEY_2)
    files.current()
    files.current()
    said = [r.getMessage() for r in caplog.records if "Sakura key" in r.getMessage()]
    assert said == [
        f"the injector uses Sakura key {key_fingerprint('token-one')} (read from {tmp_path})",
        f"the injector now uses Sakura key {key_fingerprint('token-two')} (read from {tmp_path})",
    ]
    for secret in (*KEY_1.values(), *KEY_2.values()):
        assert secret not in caplog.text


def test_the_fingerprint_is_what_sha256sum_prints_of_the_token() -> None:
    # printf %s token-one | sha256sum | cut -c1-12
    assert key_fingerprint("token-one") == "75c5c10f256c"
    assert "secret" not in repr(ApiKey("token-one", "secret-one-9f8e7d"))


ENDPOINT = {"SAKURA_ENDPOINTS_SECRETMANAGER": "http://127.0.0.1:9"}


def test_serve_takes_the_key_from_the_directory_and_the_endpoint_from_the_environment(
    tmp_path: Path,
) -> None:
    write_secret_volume(tmp_path, KEY_1)
    config, files = sakura_credentials(str(tmp_path), ENDPOINT)
    assert files is not None and files.current().access_token == "token-one"
    assert config.base_url == "http://127.0.0.1:9"
    config, files = sakura_credentials(None, {**ENDPOINT, **KEY_2})
    assert files is None and config.access_token == "token-two"


def test_serve_refuses_a_directory_and_key_variables_together(tmp_path: Path) -> None:
    write_secret_volume(tmp_path, KEY_1)
    env = {**ENDPOINT, "SAKURACLOUD_ACCESS_TOKEN": "legacy"}
    with pytest.raises(UsageError) as refused:
        sakura_credentials(str(tmp_path), env)
    message = str(refused.value)
    assert "--sakura-credentials-dir" in message and "SAKURACLOUD_ACCESS_TOKEN" in message
    assert "give one" in message and "legacy" not in message


def test_serve_refuses_a_directory_without_the_key_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as refused:
        sakura_credentials(str(tmp_path / "absent"), ENDPOINT)
    message = str(refused.value)
    assert "--sakura-credentials-dir" in message and "sakura-api-key" in message
    assert "SAKURA_ACCESS_TOKEN and SAKURA_ACCESS_TOKEN_SECRET" in message
    with pytest.raises(UsageError, match="SAKURA_ACCESS_TOKEN"):
        sakura_credentials(None, {**ENDPOINT, "HOME": os.fspath(tmp_path)})


def test_the_key_metric_follows_the_files_and_is_absent_before_a_key_was_read(
    tmp_path: Path,
) -> None:
    files = SakuraKeyFiles(tmp_path, floor=0)
    registry = CollectorRegistry()
    registry.register(KeyInUse(files))
    assert f"{INFO}{{" not in generate_latest(registry).decode()
    assert registry.get_sample_value(LOADED) is None
    write_secret_volume(tmp_path, KEY_1)
    fingerprint = {"fingerprint": key_fingerprint("token-one")}
    assert registry.get_sample_value(INFO, fingerprint) == 1
    assert (registry.get_sample_value(LOADED) or 0) == files.loaded_at > 0
    write_secret_volume(tmp_path, KEY_2)
    assert registry.get_sample_value(INFO, fingerprint) is None
    assert registry.get_sample_value(INFO, {"fingerprint": key_fingerprint("token-two")}) == 1
    assert "secret-two" not in generate_latest(registry).decode()
