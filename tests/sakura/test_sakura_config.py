"""Where credentials and the endpoint come from, and that they never show in a repr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sakura import SakuraConfig, SakuraConfigError


def profile(root: Path, name: str, **values: object) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "config.json").write_text(json.dumps(values))


def test_official_names_and_default_zone() -> None:
    cfg = SakuraConfig.from_env({"SAKURA_ACCESS_TOKEN": "t", "SAKURA_ACCESS_TOKEN_SECRET": "s"})
    assert (cfg.access_token, cfg.access_token_secret, cfg.zone) == ("t", "s", "tk1a")
    assert cfg.base_url == "https://secure.sakura.ad.jp/cloud/zone/tk1a/api/cloud/1.1"


def test_legacy_names_and_first_non_empty_wins() -> None:
    cfg = SakuraConfig.from_env(
        {
            "SAKURA_ACCESS_TOKEN": "",
            "SAKURACLOUD_ACCESS_TOKEN": "legacy-t",
            "SAKURA_ACCESS_TOKEN_SECRET": "new-s",
            "SAKURACLOUD_ACCESS_TOKEN_SECRET": "legacy-s",
            "SAKURACLOUD_ZONE": "is1a",
        }
    )
    assert (cfg.access_token, cfg.access_token_secret, cfg.zone) == ("legacy-t", "new-s", "is1a")
    assert "/zone/is1a/" in cfg.base_url


def test_endpoint_replaces_the_whole_base_url() -> None:
    cfg = SakuraConfig.from_env(
        {
            "SAKURA_ACCESS_TOKEN": "t",
            "SAKURA_ACCESS_TOKEN_SECRET": "s",
            "SAKURA_ZONE": "tk1b",
            "SAKURA_ENDPOINTS_SECRETMANAGER": "http://127.0.0.1:8080/",
        }
    )
    assert (cfg.base_url, cfg.zone) == ("http://127.0.0.1:8080", "tk1b")


def test_missing_credentials_name_the_variables(tmp_path: Path) -> None:
    with pytest.raises(SakuraConfigError) as err:
        SakuraConfig.from_env({"SAKURA_ACCESS_TOKEN": "t", "HOME": str(tmp_path)})
    assert "SAKURA_ACCESS_TOKEN_SECRET (or SAKURACLOUD_ACCESS_TOKEN_SECRET)" in str(err.value)
    assert "SAKURA_ACCESS_TOKEN (or" not in str(err.value)


def test_current_profile_with_endpoints(tmp_path: Path) -> None:
    profile(
        tmp_path,
        "work",
        AccessToken="pt",
        AccessTokenSecret="ps",
        Zone="is1b",
        Endpoints={"SecretManager": "http://emulator:8080"},
    )
    (tmp_path / "current").write_text("work\n")
    cfg = SakuraConfig.from_env({"SAKURA_PROFILE_DIR": str(tmp_path)})
    assert (cfg.access_token, cfg.access_token_secret, cfg.zone) == ("pt", "ps", "is1b")
    assert cfg.base_url == "http://emulator:8080"


def test_env_beats_profile_field_by_field(tmp_path: Path) -> None:
    profile(tmp_path / ".usacloud", "default", AccessToken="pt", AccessTokenSecret="ps")
    cfg = SakuraConfig.from_env({"HOME": str(tmp_path), "SAKURA_ACCESS_TOKEN": "et"})
    assert (cfg.access_token, cfg.access_token_secret) == ("et", "ps")


def unusable_home(tmp_path: Path) -> Path:
    """A HOME the kernel refuses to look into (ENAMETOOLONG here; EACCES for an unreadable
    one, which root, who runs these tests, cannot be refused)."""
    return tmp_path / ("h" * 300)


def test_explicit_env_credentials_never_touch_the_profile_files(tmp_path: Path) -> None:
    env = {"SAKURA_ACCESS_TOKEN": "t", "SAKURA_ACCESS_TOKEN_SECRET": "s"}
    cfg = SakuraConfig.from_env({**env, "HOME": str(unusable_home(tmp_path))})
    assert (cfg.access_token, cfg.access_token_secret) == ("t", "s")
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "config.json").write_text("{not json")
    cfg = SakuraConfig.from_env({**env, "SAKURA_PROFILE_DIR": str(tmp_path)})
    assert cfg.access_token == "t"


def test_an_unusable_home_without_env_credentials_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(SakuraConfigError, match="cannot be looked at") as err:
        SakuraConfig.from_env({"HOME": str(unusable_home(tmp_path))})
    assert "SAKURA_ACCESS_TOKEN" in str(err.value)


def test_named_profile_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SakuraConfigError, match="profile 'prod' not found"):
        SakuraConfig.from_env({"SAKURA_PROFILE_DIR": str(tmp_path), "SAKURA_PROFILE": "prod"})


def test_unreadable_profile_does_not_quote_it(tmp_path: Path) -> None:
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "config.json").write_text('{"AccessTokenSecret": "leak-me"')
    with pytest.raises(SakuraConfigError) as err:
        SakuraConfig.from_env({"SAKURA_PROFILE_DIR": str(tmp_path)})
    assert "leak-me" not in str(err.value)


def test_repr_hides_credentials() -> None:
    cfg = SakuraConfig("token-abc123", "secret-xyz789")
    assert "secret-xyz789" not in repr(cfg) and "token-abc123" not in repr(cfg)
    assert "tk1a" in repr(cfg)


@pytest.mark.parametrize(
    ("base_url", "zone"), [("ftp://x", "tk1a"), ("https://u:p@host", "tk1a"), ("", "../x")]
)
def test_bad_endpoint_or_zone(base_url: str, zone: str) -> None:
    with pytest.raises(SakuraConfigError):
        SakuraConfig("t", "s", base_url=base_url, zone=zone)
