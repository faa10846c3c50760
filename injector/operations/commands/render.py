"""`render`: print the pod the webhook would admit, offline (no cluster, no Sakura)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from injector.operations.errors import PreviewDenied, PreviewError, UsageError
from injector.operations.flags import settings_from_args, settings_options

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
    settings_options(render, env, image_default=PREVIEW_IMAGE)


def run(args: argparse.Namespace) -> int:
    from injector.operations.render import render_pod

    settings = settings_from_args(args)
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
