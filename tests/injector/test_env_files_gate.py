"""`--env-files`: whether pods may get `env-VAR` variables, decided from the API server's
version (1.35+) by the native-sidecars watch's one read, or by the flag; the answer reaching
each review; `render --kubernetes-version` previewing either outcome; and the local 1.20 API
server, where `auto` refuses them.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from support.cli_kit import Versions, run_injector

from injector.kube import api_client
from injector.operations.cli import build_parser
from injector.operations.commands.serve import version_watch_from_args
from injector.operations.env_files import EnvFiles, env_files_from_version
from injector.operations.errors import UsageError
from injector.operations.flags import settings_from_args
from injector.operations.native_sidecars import NativeSidecars

ENV_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    sakura-secrets.io/inject: "true"
    sakura-secrets.io/env-DB_PASSWORD: db-password
    sakura-secrets.io/vault-id: "123456789012"
spec:
  containers:
  - name: app
    image: nginx
"""


@pytest.mark.parametrize(
    ("major", "minor", "allowed"),
    [
        ("1", "20", False),
        ("1", "34", False),  # the alpha reads another file format
        ("1", "34+", False),
        ("1", "35", True),
        ("1", "35+", True),
        ("1", "36-eks.2", True),
        ("1", "37", True),
        ("2", "0", True),
    ],
)
def test_env_files_from_1_35(major: str, minor: str, allowed: bool) -> None:
    assert env_files_from_version(major, minor) is allowed


def test_the_answer_follows_the_watch_s_reads_both_ways() -> None:
    versions = Versions(TimeoutError("no answer"))
    watch = NativeSidecars(versions)
    gate = EnvFiles(watch)
    watch.refresh()
    assert gate() is False  # nothing read yet: no variables
    versions.answer = ("1", "35")
    watch.refresh()
    assert gate() is True
    versions.answer = TimeoutError("no answer")
    watch.refresh()
    assert gate() is True  # a failure keeps the last answer
    versions.answer = ("1", "34")  # a downgrade is followed too
    watch.refresh()
    assert gate() is False


def _args(command: str, *flags: str, env: dict[str, str] | None = None) -> Any:
    extra = ["--tls-cert-file", "/c", "--tls-key-file", "/k"] if command == "serve" else []
    if command == "render":
        extra = ["-f", "-"]
    return build_parser(env or {}).parse_args([command, *extra, *flags])


def test_the_flag_auto_always_never_and_its_environment_variable() -> None:
    assert _args("render").env_files == "auto"
    assert settings_from_args(_args("render")).env_files is False  # render: no cluster
    assert settings_from_args(_args("render", "--env-files", "always")).env_files is True
    assert settings_from_args(_args("render", "--env-files", "never")).env_files is False
    env = {"SAKURA_SECRETS_ENV_FILES": "always"}
    assert settings_from_args(_args("render", env=env)).env_files is True
    with pytest.raises(UsageError) as caught:
        settings_from_args(_args("render", "--env-files", "yes"))
    assert str(caught.value) == "--env-files 'yes' must be one of auto, always, never"


def _render(*flags: str) -> subprocess.CompletedProcess[str]:
    return run_injector("render", "-f", "-", *flags, stdin=ENV_POD)


def test_render_shows_both_outcomes_by_kubernetes_version() -> None:
    older = _render("--kubernetes-version", "1.34")
    assert older.returncode == 1
    assert "denied: annotation sakura-secrets.io/env-DB_PASSWORD: environment variables" in (
        older.stderr
    )
    assert "the file form works on every Kubernetes version" in older.stderr
    assert _render().returncode == 1  # no version: as on an unknown cluster
    newer = _render("--kubernetes-version", "v1.35.2")
    assert newer.returncode == 0, newer.stderr
    app = yaml.safe_load(newer.stdout)["spec"]["containers"][0]
    assert app["env"][0]["valueFrom"]["fileKeyRef"]["key"] == "DB_PASSWORD"
    never = _render("--kubernetes-version", "1.36", "--env-files", "never")
    assert never.returncode == 1 and "--env-files=never" in never.stderr
    bad = _render("--kubernetes-version", "latest")
    assert bad.returncode != 0
    assert "--kubernetes-version 'latest' is not MAJOR.MINOR; write it like 1.35" in bad.stderr


# --- the local cluster (1.20) ---


@pytest.mark.cluster
def test_serve_reads_the_version_for_env_files_auto_and_1_20_refuses_them() -> None:
    kube: k8s.ApiClient = api_client()
    watch = version_watch_from_args(_args("serve", "--native-sidecars", "never"), kube)
    assert watch is not None  # --env-files=auto alone starts the watch
    try:
        assert watch.version is not None and watch.version.startswith("1.20")
        assert EnvFiles(watch)() is False
    finally:
        watch.stop()
    both_fixed = _args("serve", "--native-sidecars", "never", "--env-files", "always")
    assert version_watch_from_args(both_fixed, kube) is None
