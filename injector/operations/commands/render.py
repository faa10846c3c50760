"""`render`: print the pod the webhook would admit, offline (no cluster, no Sakura)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path

from injector.operations.env_files import FIRST_ENV_FILES
from injector.operations.errors import PreviewDenied, PreviewError, UsageError
from injector.operations.flags import settings_from_args, settings_options
from injector.operations.native_sidecars import FIRST_NATIVE, release_of
from injector.webhook.settings import WebhookSettings

PREVIEW_IMAGE = "sakura-secrets-injector:preview"


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], env: Mapping[str, str]
) -> None:
    render = commands.add_parser(
        "render", help="print the pod the webhook would admit (offline, no cluster)"
    )
    render.add_argument(
        "-f", "--filename", required=True, metavar="FILE", help="pod YAML or JSON; - for stdin"
    )
    render.add_argument(
        "--kubernetes-version",
        metavar="MAJOR.MINOR",
        help="preview for a cluster of this version: the auto flags (--native-sidecars, "
        "--env-files) decide as serve would there; without it, as on an unknown version (a "
        "plain refresh container, env-VAR variables refused)",
    )
    settings_options(render, env, image_default=PREVIEW_IMAGE)


def run(args: argparse.Namespace) -> int:
    from injector.operations.render import render_pod

    settings = for_version(settings_from_args(args), args)
    try:
        if args.filename == "-":
            text = sys.stdin.read()
        else:
            text = Path(args.filename).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read -f {args.filename}: {error}") from None
    try:
        sys.stdout.write(render_pod(text, settings))
    except PreviewDenied as denial:
        for warning in denial.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"denied: {denial.message}", file=sys.stderr)
        return 1
    except PreviewError as error:
        print(f"sakura-secrets-injector render: {error}", file=sys.stderr)
        return 1
    return 0


def for_version(settings: WebhookSettings, args: argparse.Namespace) -> WebhookSettings:
    """The settings serve would have on `--kubernetes-version` (the auto flags only)."""
    text = args.kubernetes_version
    if text is None:
        return settings
    major, _, minor = text.strip().removeprefix("v").partition(".")
    try:
        release = release_of(major, minor)
    except ValueError:
        raise UsageError(
            f"--kubernetes-version {text!r} is not MAJOR.MINOR; write it like 1.35"
        ) from None
    native = release >= FIRST_NATIVE if args.native_sidecars == "auto" else None
    env_files = release >= FIRST_ENV_FILES if args.env_files == "auto" else None
    return dataclasses.replace(
        settings,
        native_sidecars=settings.native_sidecars if native is None else native,
        env_files=settings.env_files if env_files is None else env_files,
    )
