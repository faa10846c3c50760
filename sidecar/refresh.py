"""`python -m sidecar refresh`: keep the files current while the pod runs (`refresh-interval`).

At start, one full fetch of the plan's values (the broker serves them from its cache), held in
memory; if the versions are those the init container loaded (its record), nothing is written.
Then, every interval with jitter, only the latest-version secrets are asked again, with the
versions held, and a newer version of any of them switches the whole set once (every file
computed from the held values and the new ones, `writer.switch`). A round that fails keeps the
files as they are, says why in its log line and in the record, and is retried with backoff.
SIGTERM ends it at once, whatever it is doing (see `_terminate`).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import FrameType
from typing import NoReturn

from contract import Plan
from sidecar import config, record, sources, termination, writer
from sidecar.errors import EXIT_OK, FetchError, WriteFailed
from sidecar.fetched import Values

JITTER = 0.1
"""Each wait is the interval (or the backoff) times a factor drawn from 1 ± JITTER, so the
pods of one rollout, started together, do not ask together for ever."""
BACKOFF_START = 2.0
"""Seconds before the first retry of a failed round; doubled after each further failure and
capped at the interval, so a failing pod never asks more often than a healthy one would at
the start, and never less often than once per interval."""
_MAX_DOUBLINGS = 32

log = logging.getLogger("sidecar.refresh")


def wait_after(interval: int, failures: int, draw: float) -> float:
    """Seconds until the next round: the interval, or the backoff after `failures` failures in
    a row; either way times 1 ± JITTER (`draw` is uniform in [0, 1))."""
    base = float(interval)
    if failures > 0:
        base = min(base, BACKOFF_START * 2 ** min(failures - 1, _MAX_DOUBLINGS))
    return base * (1 + JITTER * (2 * draw - 1))


def _now() -> datetime:
    return datetime.now(UTC)


class Refresher:
    """The loop's state: the values held, the set they are on disk as, how the rounds go."""

    def __init__(
        self,
        plan: Plan,
        source: sources.Source,
        *,
        now: Callable[[], datetime] = _now,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.plan = plan
        self.interval = config.refresh_interval(plan)
        self.source = source
        self._now = now
        self._draw = draw
        self.held: Values | None = None
        """Every value of the plan, once the first fetch succeeded."""
        self.described = record.read(plan.directory)
        """The record's description of the set on disk (the init container's, at first)."""
        self.status = record.Status(last_success=None)

    def run(self, sleep: Callable[[float], object] = time.sleep) -> NoReturn:
        """Round after round, for ever (SIGTERM ends the process, see `_terminate`)."""
        if not any(wanted.version is None for wanted in self.plan.secrets()):
            log.info("every secret is pinned to a version: nothing to refresh")
            while True:
                sleep(self.interval)
        while True:
            sleep(self.round())

    def round(self) -> float:
        """One refresh; returns the seconds to wait before the next."""
        fetched: Values | None = None
        try:
            if self.held is None:
                fetched = self.source.fetch()
                self._start(fetched)
            else:
                fetched = self.source.changes(sources.held_latest(self.held))
                if fetched:
                    self._switch({**self.held, **fetched})
        except FetchError as exc:
            return self._failed(exc, [*_values(self.held), *_values(fetched)])
        recovered = self.status.consecutive_failures
        self.status = record.Status(last_success=self._now())
        if recovered:
            log.info("refreshed again after %d failed attempt(s)", recovered)
        self._write_record()
        return wait_after(self.interval, 0, self._draw())

    def _start(self, values: Values) -> None:
        """The first fetch: switch only if the files are not already these versions."""
        if self.described is not None and self.described["secrets"] == record.secrets(
            self.plan, values
        ):
            self.held = values
            log.info(
                "refreshing every %ds; the files are current (%s)",
                self.interval,
                _versions(values),
            )
            return
        self._switch(values)
        log.info("refreshing every %ds", self.interval)

    def _switch(self, values: Values) -> None:
        files = writer.contents(self.plan, values)  # a bad key or template: nothing is written
        name = writer.switch(self.plan.directory, files, uid=self.plan.uid, gid=self.plan.gid)
        before = self.held
        self.held = values
        self.described = record.loaded(self.plan, values, set_name=name, loaded_at=self._now())
        log.info("switched the files to a new set: %s", _news(before, values))

    def _failed(self, exc: FetchError, secrets: Iterable[str]) -> float:
        failures = self.status.consecutive_failures + 1
        line = termination.one_line(exc.reason, termination.secret_texts(secrets), prefix="")
        self.status = record.Status(
            last_success=self.status.last_success,
            last_error=line,
            last_error_at=self._now(),
            consecutive_failures=failures,
        )
        wait = wait_after(self.interval, failures, self._draw())
        log.warning(
            "refresh failed (%d in a row), the files stay as they are; next attempt in %.1fs: %s",
            failures,
            wait,
            line,
        )
        self._write_record()
        return wait

    def _write_record(self) -> None:
        """The record is status: when it cannot be written, the log says so and the loop goes
        on (the files are what the app reads)."""
        described = self.described or {"set": self._current(), "secrets": []}
        try:
            item = record.build(described, self.status, refresh_interval=self.interval)
            record.write(self.plan, item)
        except WriteFailed as exc:
            log.warning("cannot update %s: %s", record.RECORD_NAME, exc.reason)

    def _current(self) -> str | None:
        return writer.current_set(self.plan.directory)


def _values(values: Values | None) -> list[str]:
    return [] if values is None else [item.value for item in values.values()]


def _versions(values: Values) -> str:
    return ", ".join(f"{item.name}@{item.version}" for item in values.values())


def _news(before: Values | None, after: Values) -> str:
    """`api@3 (was 2)` for each changed version, or every version on a first switch."""
    if before is None:
        return _versions(after)
    return ", ".join(
        f"{item.name}@{item.version} (was {before[wanted].version})"
        for wanted, item in after.items()
        if item.version != before[wanted].version
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    """Exit at once, from wherever the loop is: in the wait, or in a request (abandoned). Not
    an exception unwinding the stack: inside asyncio (direct mode) one would be caught by the
    loop's callbacks or wrapped by a task group. Nothing needs unwinding: a set written half-way
    is unreachable (no name leads to it before its switch) and swept by the next writer, the
    record is replaced by a rename, and every log line has been flushed."""
    os.write(2, f"{termination.REFRESH_PREFIX}SIGTERM: stopped\n".encode())
    os._exit(EXIT_OK)


def main(env: Mapping[str, str]) -> NoReturn:
    """Run until SIGTERM (see `_terminate`); raises FetchError for a bad configuration (the
    caller reports it and exits non-zero)."""
    settings = config.load(env)
    interval = config.refresh_interval(settings.plan)
    # A round never outlasts its interval: a failure is reported, and retried, in time.
    source = sources.of(settings, deadline=min(settings.deadline, interval))
    refresher = Refresher(settings.plan, source)
    signal.signal(signal.SIGTERM, _terminate)
    refresher.run()
