"""Which Kubernetes Events to write, and when: the pure core of the injector's Events.

The webhook's denials and the broker's refusals become `Occurrence`s; `EventBook` turns them
into the writes the API server sees (`injector.event_recorder` makes them). A crash-looping
pod must not flood the API server, so:

- the same (object, reason, note) within `window` seconds is ONE Event: its first occurrence
  creates it, the later ones update its `series` (count, lastObservedTime);
- an Event is written at most once per `interval` seconds (a patch carries every occurrence
  since the last write);
- all writes together stay under `rate` per second (a token bucket of `burst`); what is over
  waits for the next turn, it is not lost;
- the book holds at most `max_entries` objects' Events; an occurrence that finds it full of
  recent ones is dropped and counted.

Time is a number the caller passes (`now`, wall-clock seconds), so the tests drive it by hand.
docs/operations.md ("Events") says which Events there are and on which object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from secrets import token_hex

WINDOW = 600.0
"""Seconds after its last occurrence that an Event is still updated rather than made anew."""
INTERVAL = 30.0
"""Seconds between two writes of one Event."""
RATE = 5.0
"""Writes per second, all Events together (on average; `BURST` at once)."""
BURST = 20
MAX_ENTRIES = 4096
"""Distinct Events the book remembers: beyond it, new ones are dropped (counted)."""
MAX_NOTE_BYTES = 1024
"""The API server refuses a longer note (events.k8s.io/v1)."""


@dataclass(frozen=True)
class Regarding:
    """The object an Event is about (`regarding`): `kubectl describe` of it shows the Event."""

    kind: str
    namespace: str
    name: str
    api_version: str = "v1"
    uid: str = ""


@dataclass(frozen=True)
class Occurrence:
    """Something worth an Event: `reason` is CamelCase, `note` the one-line message (never
    a value), `action` what the injector was doing."""

    regarding: Regarding
    reason: str
    note: str
    action: str
    type: str = "Warning"

    def __post_init__(self) -> None:
        object.__setattr__(self, "note", clip_note(self.note))


@dataclass(frozen=True)
class Create:
    """Create the Event `name` for its first occurrence at `first` (eventTime); with a
    series when `count` occurrences (the last at `last`) came before the first write."""

    name: str
    occurrence: Occurrence
    first: float
    count: int = 1
    last: float = 0.0


@dataclass(frozen=True)
class Patch:
    """Set the series of Event `name` (in `namespace`): `count` occurrences, the last at `last`."""

    name: str
    namespace: str
    count: int
    last: float


Write = Create | Patch


@dataclass
class _Entry:
    name: str
    occurrence: Occurrence
    first_seen: float
    last_seen: float
    count: int = 1
    written: int = 0
    """How many occurrences the API server has (0: the Event is not created yet)."""
    last_write: float | None = None


@dataclass
class EventBook:
    """The Events written and pending; `observe` each occurrence, `due` says what to write."""

    window: float = WINDOW
    interval: float = INTERVAL
    rate: float = RATE
    burst: int = BURST
    max_entries: int = MAX_ENTRIES
    dropped: int = 0
    """Occurrences dropped because the book was full of recent Events."""
    _entries: dict[tuple[Regarding, str, str], _Entry] = field(default_factory=dict)
    _tokens: float = 0.0
    _refilled: float | None = None

    def observe(self, occurrence: Occurrence, now: float) -> bool:
        """Count one occurrence at `now`; False if it was dropped (the book is full)."""
        key = (occurrence.regarding, occurrence.reason, occurrence.note)
        entry = self._entries.get(key)
        if entry is not None and now - entry.last_seen <= self.window:
            entry.count += 1
            entry.last_seen = now
            return True
        if entry is None and len(self._entries) >= self.max_entries:
            self._expire(now)
            if len(self._entries) >= self.max_entries:
                self.dropped += 1
                return False
        self._entries.pop(key, None)  # a stale Event: a new one replaces it (insertion order)
        self._entries[key] = _Entry(self._name(occurrence), occurrence, now, now)
        return True

    def due(self, now: float) -> list[Write]:
        """The writes to make now, oldest first, within the per-Event interval and the rate;
        each is taken as made (`failed` says otherwise)."""
        self._refill(now)
        writes: list[Write] = []
        for entry in self._entries.values():
            if self._tokens < 1:
                break
            if entry.count == entry.written:
                continue
            if entry.last_write is not None and now - entry.last_write < self.interval:
                continue
            if entry.written == 0:
                writes.append(
                    Create(
                        entry.name, entry.occurrence, entry.first_seen, entry.count, entry.last_seen
                    )
                )
            else:
                namespace = entry.occurrence.regarding.namespace
                writes.append(Patch(entry.name, namespace, entry.count, entry.last_seen))
            entry.written = entry.count
            entry.last_write = now
            self._tokens -= 1
        self._expire(now)
        return writes

    def failed(self, write: Write, *, gone: bool = False) -> None:
        """A write did not happen: a create is tried again after the interval; a patch of an
        Event that is `gone` (expired from the API server) creates a new one."""
        for entry in self._entries.values():
            if entry.name == write.name and (isinstance(write, Create) or gone):
                entry.written = 0
                if gone:
                    entry.name = self._name(entry.occurrence)

    def pending(self) -> bool:
        """Whether some occurrence is not written yet (waiting for its interval or the rate)."""
        return any(entry.count > entry.written for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def _refill(self, now: float) -> None:
        if self._refilled is None:
            self._tokens = float(self.burst)
        else:
            self._tokens = min(float(self.burst), self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now

    def _expire(self, now: float) -> None:
        """Forget Events whose window has passed and that have nothing left to write."""
        for key, entry in list(self._entries.items()):
            if now - entry.last_seen > self.window and entry.count == entry.written:
                del self._entries[key]

    @staticmethod
    def _name(occurrence: Occurrence) -> str:
        """A new Event's name: the object's name (as kubectl's Events are named) and 16 random
        hex digits, so two replicas never pick the same one."""
        base = re.sub(r"[-.]+$", "", occurrence.regarding.name[:200])  # `web-` of generateName
        return f"{base or 'pod'}.{token_hex(8)}"


def clip_note(note: str) -> str:
    """The note within the API server's limit, cut at a character and marked if cut."""
    encoded = note.encode()
    if len(encoded) <= MAX_NOTE_BYTES:
        return note
    return encoded[: MAX_NOTE_BYTES - 3].decode(errors="ignore") + "..."
