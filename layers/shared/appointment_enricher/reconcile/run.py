"""The reconcile run: sweep every location's calendars, compare with the ledger, enqueue what the
webhooks missed, and stop in time.

Why it is shaped like this:

* The upstream rate limit (100 requests / 10 s per location) is shared with the enricher, so the
  run takes only a share of it per location (``Pacer``: at most ``budget`` requests per
  ``interval``) and yields when the upstream's ``X-RateLimit-Remaining`` says the window is
  mostly spent; 429 and ``Retry-After`` are honoured by the HTTP client underneath.
* Locations are served round-robin, one request each in turn, so a location with many calendars
  cannot starve the others; a run that reaches its deadline stores a cursor per unfinished
  location (calendar + window start) and the next run resumes there.
* A window whose response holds ``max_events`` events or more is split in halves (down to
  ``min_window_ms``): the events endpoint documents no paging, so an answer of exactly the cap
  may be cut short.

Imports neither boto3 nor requests: the adapters (HTTP client, ledger, cursor store, queue) are
passed in, and tests swap them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..clocks import Monotonic, WallClock, utc_now
from ..errors import classify
from ..ledger.base import LedgerReader
from ..wire import is_valid_id
from .rules import Window, decide, listed_id, recovery_message

Log = Callable[..., None]


class EventLister(Protocol):
    """The two upstream list endpoints (``powerleads.PowerLeadsClient`` implements this)."""

    def list_calendars(self, location_id: str, *, deadline: float) -> list[dict[str, Any]]: ...

    def list_events(
        self, location_id: str, calendar_id: str, start_ms: int, end_ms: int, *, deadline: float
    ) -> list[dict[str, Any]]: ...


class IngestSink(Protocol):
    """Where recoveries go (``queues.IngestQueue``, or a dry-run recorder)."""

    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str: ...


@dataclass(frozen=True)
class Cursor:
    """Where an unfinished sweep of one location resumes: this calendar, from this start time."""

    calendar_id: str
    start_ms: int


class CursorStore(Protocol):
    def load(self, location_ids: Sequence[str]) -> dict[str, Cursor]: ...

    def save(self, location_id: str, cursor: Cursor | None) -> None: ...


@dataclass
class Pacer:
    """The reconciler's share of each location's rate limit, and deference to the enricher.

    At most ``budget`` requests per ``interval`` seconds per location (our own count), and a pause
    of one upstream interval whenever a response says fewer than ``reserve`` of the window's
    requests remain (the enricher is busy there: it goes first).
    """

    budget: int = 20
    interval: float = 10.0
    reserve: float = 0.5
    monotonic: Monotonic = time.monotonic
    _sent: dict[str, deque[float]] = field(default_factory=dict)
    _hold: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_needed(self, location_id: str) -> float:
        now = self.monotonic()
        with self._lock:
            sent = self._sent.setdefault(location_id, deque())
            while sent and now - sent[0] >= self.interval:
                sent.popleft()
            own = sent[0] + self.interval - now if len(sent) >= self.budget else 0.0
            return max(0.0, own, self._hold.get(location_id, 0.0) - now)

    def record(self, location_id: str) -> None:
        with self._lock:
            self._sent.setdefault(location_id, deque()).append(self.monotonic())

    def observe(self, location_id: str, headers: Mapping[str, str]) -> None:
        """Read ``X-RateLimit-Remaining`` / ``-Max`` / ``-Interval-Milliseconds`` of a response."""
        try:
            remaining = int(headers["X-RateLimit-Remaining"])
            limit = int(headers["X-RateLimit-Max"])
            interval = min(int(headers.get("X-RateLimit-Interval-Milliseconds") or 10_000), 60_000) / 1000
        except (KeyError, TypeError, ValueError):
            return
        if remaining < limit * self.reserve:
            with self._lock:
                self._hold[location_id] = max(self._hold.get(location_id, 0.0), self.monotonic() + interval)


@dataclass
class LocationTally:
    """What one run did for one location (the CLI's table rows, the summary's ``perLocation``)."""

    location_id: str
    calendars: int = 0
    requests: int = 0
    listed: int = 0
    enqueued: int = 0
    skipped: int = 0
    invalid: int = 0
    splits: int = 0
    errors: int = 0
    complete: bool = False
    recovered: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        fields = {k: v for k, v in vars(self).items() if k != "recovered"}
        return {**fields, "recovered": dict(self.recovered)}


class LocationSweep:
    """One location's progress through its calendars and windows (a stack: next window on top)."""

    def __init__(self, location_id: str, cursor: Cursor | None, sweep: Window) -> None:
        self.tally = LocationTally(location_id)
        self.cursor_in = cursor
        self.sweep = sweep
        self.calendars: deque[str] | None = None
        self.calendar: str | None = None
        self.windows: list[Window] = []
        self.finished = False  # for this run: complete, or stopped by an error

    def start(self, calendars: Sequence[Mapping[str, Any]]) -> None:
        ids = sorted({str(c["id"]) for c in calendars if is_valid_id(c.get("id"))})
        self.tally.invalid += sum(1 for c in calendars if not is_valid_id(c.get("id")))
        if self.cursor_in is not None:
            ids = [c for c in ids if c >= self.cursor_in.calendar_id]
        self.tally.calendars = len(ids)
        self.calendars = deque(ids)
        self.next_calendar()

    def next_calendar(self) -> None:
        assert self.calendars is not None
        while self.calendars:
            self.calendar = self.calendars.popleft()
            start = self.sweep.start_ms
            if self.cursor_in is not None and self.calendar == self.cursor_in.calendar_id:
                start = max(start, self.cursor_in.start_ms)
            if start < self.sweep.end_ms:
                self.windows = [Window(start, self.sweep.end_ms)]
                return
        self.calendar, self.windows = None, []
        self.tally.complete = self.finished = True

    def position(self) -> Cursor | None:
        """The cursor to store: None once the sweep is complete."""
        if self.tally.complete or self.calendar is None or not self.windows:
            return None
        return Cursor(self.calendar, self.windows[-1].start_ms)


@dataclass(frozen=True)
class ReconcileOptions:
    lookback_days: float = 7
    lookahead_days: float = 90
    max_events: int = 250  # split a window whose response holds this many or more (may be cut)
    min_window_ms: int = 3_600_000  # never split below an hour
    request_reserve_seconds: float = 3.0  # start no request with less time than this left


def _served_only(reconciler: Reconciler, locations: Sequence[str]) -> list[str]:
    """``locations`` once each, without those outside ``WEBHOOK_LOCATION_IDS`` (logged, counted)."""
    wanted = list(dict.fromkeys(locations))
    served = reconciler.served
    if served is None:
        return wanted
    foreign = [loc for loc in wanted if loc not in served]
    if foreign:
        reconciler.log("warning", "locations not served are not swept", foreignLocations=len(foreign))
    return [loc for loc in wanted if loc in served]


class Reconciler:
    """One reconcile run over a set of locations (see the module docstring for the why)."""

    def __init__(
        self,
        lister: EventLister,
        ledger: LedgerReader,
        cursors: CursorStore,
        sink: IngestSink,
        *,
        pacer: Pacer | None = None,
        options: ReconcileOptions | None = None,
        monotonic: Monotonic = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: WallClock = utc_now,
        log: Log | None = None,
        served: frozenset[str] | None = None,
    ) -> None:
        self.lister, self.ledger, self.cursors, self.sink = lister, ledger, cursors, sink
        self.served = served  # ``WEBHOOK_LOCATION_IDS``: never sweep another location (None: any)
        self.pacer = pacer or Pacer(monotonic=monotonic)
        self.options = options or ReconcileOptions()
        self.monotonic, self.sleep, self.now = monotonic, sleep, now
        self.log: Log = log or (lambda *_a, **_k: None)

    def locations(self, requested: Sequence[str] | None, configured: Sequence[str]) -> tuple[list[str], int]:
        """(locations to sweep, errors): requested, else configured + known; served ones only."""
        if requested:
            return _served_only(self, requested), 0
        try:
            known = [loc for loc in self.ledger.known_locations() if is_valid_id(loc)]
        except Exception as exc:  # noqa: BLE001 - the configured locations are still swept
            self.log("error", "ledger locations unreadable", error=type(exc).__name__)
            return _served_only(self, configured), 1
        return _served_only(self, [*configured, *known]), 0

    def run(
        self,
        location_ids: Sequence[str],
        deadline: float,
        on_step: Callable[[LocationTally], None] | None = None,
    ) -> dict[str, Any]:
        """Sweep ``location_ids`` round-robin until done or ``deadline`` (a ``monotonic()`` value)."""
        started = self.monotonic()
        now = self.now()
        sweep = Window.around(
            int(now.timestamp() * 1000), self.options.lookback_days, self.options.lookahead_days
        )
        errors = 0
        try:
            cursors = self.cursors.load(location_ids) if location_ids else {}
        except Exception as exc:  # noqa: BLE001 - without cursors every sweep starts from the top
            self.log("error", "cursors unreadable", error=type(exc).__name__)
            cursors, errors = {}, 1
        sweeps = [LocationSweep(loc, cursors.get(loc), sweep) for loc in location_ids]
        seen: set[str] = set()
        queue = deque(sweeps)
        stopped_early = False
        while queue:
            current = self._next_ready(queue, deadline)
            if current is None:
                stopped_early = True
                break
            self._step(current, deadline, seen)
            if on_step is not None:
                on_step(current.tally)
            if not current.finished:
                queue.append(current)
        for each in sweeps:
            errors += self._save(each)
        return summarise([s.tally for s in sweeps], errors, stopped_early, self.monotonic() - started)

    def _next_ready(self, queue: deque[LocationSweep], deadline: float) -> LocationSweep | None:
        """The first location (in turn) the pacer lets through, waiting if none may go yet."""
        reserve = self.options.request_reserve_seconds
        while True:
            waits = [self.pacer.wait_needed(s.tally.location_id) for s in queue]
            shortest = min(waits)
            if self.monotonic() + shortest + reserve > deadline:
                return None
            if shortest > 0:
                self.sleep(shortest)
                continue
            index = waits.index(0.0)
            chosen = queue[index]
            del queue[index]
            return chosen

    def _step(self, sweep: LocationSweep, deadline: float, seen: set[str]) -> None:
        """One upstream request for this location, and what follows from its answer."""
        loc, tally = sweep.tally.location_id, sweep.tally
        tally.requests += 1
        try:
            if sweep.calendars is None:
                sweep.start(self.lister.list_calendars(loc, deadline=deadline))
                return
            window = sweep.windows[-1]
            assert sweep.calendar is not None
            events = self.lister.list_events(
                loc, sweep.calendar, window.start_ms, window.end_ms, deadline=deadline
            )
        except Exception as exc:  # noqa: BLE001 - one location's failure must not stop the others
            tally.errors += 1
            _error_type, retryable = classify(exc)  # not ours: retryable
            self.log(
                "warning",
                "upstream list failed",
                locationId=loc,
                calendarId=sweep.calendar,
                error=type(exc).__name__,
                status=getattr(exc, "status", None),  # an HTTP error's status, for the log
                retryable=retryable,
            )
            if retryable or sweep.calendars is None:
                sweep.finished = True  # resume here next run (the cursor keeps the position)
            else:
                sweep.windows.pop()  # a request the upstream refuses: skip that window
                if not sweep.windows:
                    sweep.next_calendar()
            return
        finally:
            # Stamped when the answer came (the upstream has counted it by then, however slow the
            # connection was), so the share holds as the upstream measures it.
            self.pacer.record(loc)
        sweep.windows.pop()
        if len(events) >= self.options.max_events and window.span_ms >= 2 * self.options.min_window_ms:
            first, second = window.halves()
            sweep.windows += [second, first]
            tally.splits += 1
            return
        self._compare(loc, events, tally, seen)
        if not sweep.windows:
            sweep.next_calendar()

    def _compare(self, loc: str, events: list[dict[str, Any]], tally: LocationTally, seen: set[str]) -> None:
        fresh: dict[str, dict[str, Any]] = {}
        for event in events:
            appointment_id = listed_id(event)
            if appointment_id is None:
                tally.invalid += 1
            elif appointment_id not in seen:
                seen.add(appointment_id)
                fresh[appointment_id] = event
        tally.listed += len(fresh)
        if not fresh:
            return
        try:
            entries = self.ledger.entries(list(fresh))
        except Exception as exc:  # noqa: BLE001 - nothing is enqueued blind; the next run retries
            tally.errors += 1
            self.log("error", "ledger unreadable", locationId=loc, error=type(exc).__name__)
            for appointment_id in fresh:
                seen.discard(appointment_id)
            return
        for appointment_id, event in fresh.items():
            recovery = decide(event, entries.get(appointment_id))
            if recovery is None:
                tally.skipped += 1
                continue
            body, attributes = recovery_message(loc, event, recovery, self.now())
            try:
                self.sink.send(
                    body, group_id=appointment_id, dedupe_id=recovery.dedupe_id, attributes=attributes
                )
            except Exception as exc:  # noqa: BLE001 - counted; the ledger still lacks it, so the next run retries
                tally.errors += 1
                self.log(
                    "error",
                    "enqueue failed",
                    locationId=loc,
                    appointmentId=appointment_id,
                    error=type(exc).__name__,
                )
                continue
            tally.enqueued += 1
            tally.recovered[recovery.kind] += 1
            self.log(
                "info",
                "recovered a missed change",
                locationId=loc,
                appointmentId=appointment_id,
                kind=recovery.kind,
            )

    def _save(self, sweep: LocationSweep) -> int:
        """Store where an unfinished sweep resumes; clear the cursor of a finished one. Errors: 0/1."""
        if sweep.calendars is None:
            return 0  # never started: whatever cursor it had still holds
        position = sweep.position()
        if position is None and sweep.cursor_in is None:
            return 0
        try:
            self.cursors.save(sweep.tally.location_id, position)
        except Exception as exc:  # noqa: BLE001 - the next run restarts that location's sweep
            self.log(
                "error", "cursor not saved", locationId=sweep.tally.location_id, error=type(exc).__name__
            )
            return 1
        return 0


def summarise(
    tallies: Sequence[LocationTally], errors: int, stopped_early: bool, seconds: float
) -> dict[str, Any]:
    """The run's JSON-serialisable summary (the handler's return value and its one log line)."""
    recovered: Counter[str] = Counter()
    for tally in tallies:
        recovered.update(tally.recovered)

    def total(name: str) -> int:
        return sum(int(getattr(t, name)) for t in tallies)

    return {
        "locations": len(tallies),
        "calendars": total("calendars"),
        "requests": total("requests"),
        "listed": total("listed"),
        "enqueued": total("enqueued"),
        "skipped": total("skipped"),
        "invalid": total("invalid"),
        "errors": total("errors") + errors,
        "recovered": dict(recovered),
        "durationMs": int(seconds * 1000),
        "stoppedEarly": stopped_early,
        "incomplete": [t.location_id for t in tallies if not t.complete],
        "perLocation": [t.as_dict() for t in tallies],
    }
