"""`python -m emulator` / `sakura-emulator`: run the Secret Manager emulator from a shell."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence

import uvicorn

from emulator.app import Emulator, EmulatorConfig
from emulator.knobs import Fault
from emulator.seed import SeedError, apply_flags, load_seed_file

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    """`500ms`, `1.5s`, `1m`; a bare number is seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 500ms, 2s or 1m")
    return float(match.group(1)) * _UNITS[match.group(2)]


def fault(text: str) -> Fault:
    try:
        return Fault.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sakura-emulator", description="A local Sakura Cloud Secret Manager API."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--access-token", default=os.environ.get("SAKURA_ACCESS_TOKEN", ""))
    p.add_argument(
        "--access-token-secret",
        default=os.environ.get("SAKURA_ACCESS_TOKEN_SECRET", ""),
        help="(default: $SAKURA_ACCESS_TOKEN_SECRET, which keeps it out of `ps`)",
    )
    p.add_argument("--seed", metavar="FILE", help="JSON seed file (see docs/sakura-client.md)")
    p.add_argument("--vault", action="append", default=[], metavar="ID[=NAME]")
    p.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="[VAULT_ID/]NAME=VALUE",
        help="add a version (repeat for more versions)",
    )
    p.add_argument(
        "--latency", type=duration, default=0.0, help="added to every answer, e.g. 500ms"
    )
    p.add_argument("--rate-limit", type=int, default=None, help="requests per window, then 429")
    p.add_argument("--rate-limit-window", type=duration, default=60.0)
    p.add_argument(
        "--fault", type=fault, action="append", default=[], metavar="CODE:RATE", help="e.g. 503:0.1"
    )
    p.add_argument("--fault-seed", type=int, default=None, help="make faults reproducible")
    p.add_argument(
        "--token-lifetime",
        type=duration,
        default=3600.0,
        help="how long a Bearer token from the IAM token endpoint lasts (default 1h)",
    )
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.access_token or not args.access_token_secret:
        print(
            "sakura-emulator: give --access-token and --access-token-secret "
            "(or set SAKURA_ACCESS_TOKEN and SAKURA_ACCESS_TOKEN_SECRET)",
            file=sys.stderr,
        )
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("sakura-emulator: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    emulator = Emulator(
        EmulatorConfig(
            access_token=args.access_token,
            access_token_secret=args.access_token_secret,
            latency=args.latency,
            rate_limit=args.rate_limit,
            rate_limit_window=args.rate_limit_window,
            faults=args.fault,
            fault_seed=args.fault_seed,
            token_lifetime=args.token_lifetime,
        )
    )
    try:
        if args.seed:
            load_seed_file(args.seed, emulator.store, emulator.principals)
        apply_flags(args.vault, args.secret, emulator.store)
    except SeedError as exc:
        print(f"sakura-emulator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper())
    uvicorn.run(
        emulator,
        host=args.host,
        port=args.port,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        log_level=args.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
