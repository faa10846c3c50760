"""`python -m sidecar`: fetch the plan's secrets, write the files, exit 0, or say why not.

The path of a secret here: read config -> fetch (broker or direct) -> compute every file ->
switch to them as one set -> the record beside it. Any failure exits non-zero with one line in
the termination message, and nothing is written. `python -m sidecar refresh` is the refresh
container instead (sidecar/refresh.py).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from contract import Plan
from contract.pod import REFRESH_COMMAND
from sakura import SakuraConfig
from sidecar import broker_client, config, env_writer, record, termination, writer
from sidecar.errors import EXIT_INTERNAL, EXIT_OK, ConfigError, FetchError
from sidecar.fetched import Values

log = logging.getLogger("sidecar")


def run(env: Mapping[str, str]) -> Values:
    """Do the whole job; raises FetchError. Returns what was loaded (for the caller's log)."""
    settings = config.load(env)
    plan = settings.plan
    if isinstance(settings.source, config.BrokerSettings):
        values = broker_client.fetch(plan, settings.source, deadline=settings.deadline)
    else:  # a Direct plan: the pod's own Sakura key
        values = _fetch_direct(plan, settings.source, settings.deadline)
    try:
        files = writer.contents(plan, values)
        env_file = env_writer.contents(plan, values)
        if env_file is not None:  # before the files: a pod with variables starts with them
            env_writer.write(plan, env_file)
        name = writer.switch(plan.directory, files, uid=plan.uid, gid=plan.gid)
        now = datetime.now(UTC)
        described = record.loaded(plan, values, set_name=name, loaded_at=now)
        status = record.Status(last_success=now)
        record.write(plan, record.build(described, status, refresh_interval=plan.refresh_interval))
    except FetchError as exc:
        raise _Failed(exc, values) from None
    return values


def _fetch_direct(plan: Plan, sakura: SakuraConfig, deadline: float) -> Values:
    from sidecar import direct  # only direct mode needs the Sakura client

    return direct.fetch(plan, sakura, deadline=deadline)


class _Failed(Exception):
    """A FetchError raised after values were fetched: they must be redacted from the report."""

    def __init__(self, error: FetchError, values: Values) -> None:
        super().__init__(error.reason)
        self.error = error
        self.values = values


def main(env: Mapping[str, str] | None = None, argv: Sequence[str] = ()) -> int:
    """`python -m sidecar`: the init container; `python -m sidecar refresh`: the refresh
    container (`contract.pod.REFRESH_COMMAND`, see sidecar/refresh.py)."""
    source = os.environ if env is None else env
    args = list(argv)
    refreshing = args == [REFRESH_COMMAND[-1]]
    prefix = termination.REFRESH_PREFIX if refreshing else termination.PREFIX
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=prefix + "%(message)s")
    # httpx logs every request URL at INFO: noise in `kubectl logs` of a one-shot container.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    path = config.termination_log_path(source)
    try:
        if args and not refreshing:
            raise ConfigError(
                f"unknown arguments {' '.join(args)!r}; run `python -m sidecar` (the init "
                f"container) or `{' '.join(REFRESH_COMMAND)}` (the refresh container)"
            )
        if refreshing:
            from sidecar import refresh  # only the refresh container loops

            refresh.main(source)
        values = run(source)
    except _Failed as failed:
        texts = termination.secret_texts(f.value for f in failed.values.values())
        termination.report(failed.error.reason, path=path, secrets=texts, prefix=prefix)
        return failed.error.exit_code
    except FetchError as exc:
        termination.report(exc.reason, path=path, prefix=prefix)
        return exc.exit_code
    except Exception as exc:
        # Not the exception's text: an unexpected error could carry anything.
        termination.report(
            f"internal error: {type(exc).__name__} at {_where(exc)}; please report it "
            "to the sakura-secrets-injector maintainers",
            path=path,
            prefix=prefix,
        )
        return EXIT_INTERNAL
    loaded = ", ".join(f"{f.requested.name}@{f.version}" for f in values.values())
    log.info("loaded %d secrets (%s)", len(values), loaded)
    return EXIT_OK


def _where(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"


if __name__ == "__main__":
    sys.exit(main(argv=sys.argv[1:]))
