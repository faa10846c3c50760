"""`sakura-secrets-injector`: serve the webhook, bootstrap its TLS, preview a pod offline,
ask whether a ServiceAccount may read secrets, and who may read one; check an installation.

Each subcommand is a module of `injector.operations.commands` (its flags and its run; `can-i`
and `who-can` are the broker's own, `injector.broker.can_i` and `injector.broker.who_can`);
what they share of the command line is in `injector.operations.flags`, and what they build in
`injector.operations.wiring`. Every flag has an environment-variable equivalent (named in
`--help`); a flag given on the command line wins over the environment. Sakura credentials are
never flags.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from importlib.metadata import version

from injector.broker.can_i import add_can_i_parser, can_i_command
from injector.broker.who_can import add_who_can_parser, who_can_command
from injector.operations.commands import certs, doctor, render, serve
from injector.operations.errors import UsageError

DISTRIBUTION = "sakura-secrets-injector"
"""The installed distribution whose version `--version` prints (pyproject.toml's, the only copy)."""
COMMANDS = {
    "serve": serve.run,
    "certs": certs.run,
    "render": render.run,
    "can-i": can_i_command,
    "who-can": who_can_command,
    "doctor": doctor.run,
}


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; defaults come from `env` (the process environment by default)."""
    source = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="sakura-secrets-injector",
        description="Sakura Cloud Secret Manager secrets into Kubernetes pods as tmpfs files.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version(DISTRIBUTION)}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parser(commands, source)
    certs.add_parser(commands, source)
    render.add_parser(commands, source)
    add_can_i_parser(commands)
    add_who_can_parser(commands)
    doctor.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sakura-secrets-injector` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as error:
        parser.exit(2, f"sakura-secrets-injector {args.command}: {error}\n")
