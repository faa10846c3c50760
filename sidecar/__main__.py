"""`python -m sidecar`: fetch the plan's secrets, write the files, exit 0, or say why not.

The path of a secret here: read config -> fetch (broker or direct) -> compute every file ->
switch to them and the record as one set. Any failure exits non-zero with one line in the
termination message, and nothing is written.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

from contract import Plan
from sakura import SakuraConfig
from sidecar import broker_client, config, record, termination, writer
from sidecar.errors import EXIT_INTERNAL, EXIT_OK, FetchError
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
        files.append(record.build(plan, values, loaded_at=datetime.now(UTC)))
        writer.switch(plan.directory, files, uid=plan.uid, gid=plan.gid)
    except FetchError as exc:
        raise _Failed(exc, values) from None
    return values


def _fetch_direct(plan: Plan, sakura: SakuraConfig, deadline: float) -> Values:
    import asyncio  # only direct mode needs an event loop

    from sidecar import direct

    return asyncio.run(direct.fetch(plan, sakura, deadline=deadline))


class _Failed(Exception):
    """A FetchError raised after values were fetched: they must be redacted from the report."""

    def __init__(self, error: FetchError, values: Values) -> None:
        super().__init__(error.reason)
        self.error = error
        self.values = values


def main(env: Mapping[str, str] | None = None) -> int:
    source = os.environ if env is None else env
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=termination.PREFIX + "%(message)s"
    )
    # httpx logs every request URL at INFO: noise in `kubectl logs` of a one-shot container.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    path = config.termination_log_path(source)
    try:
        values = run(source)
    except _Failed as failed:
        texts = termination.secret_texts(f.value for f in failed.values.values())
        termination.report(failed.error.reason, path=path, secrets=texts)
        return failed.error.exit_code
    except FetchError as exc:
        termination.report(exc.reason, path=path)
        return exc.exit_code
    except Exception as exc:
        # Not the exception's text: an unexpected error could carry anything.
        termination.report(
            f"internal error: {type(exc).__name__} at {_where(exc)}; please report it "
            "to the sakura-secrets-injector maintainers",
            path=path,
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
    sys.exit(main())
