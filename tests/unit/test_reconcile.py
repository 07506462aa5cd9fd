"""The reconciler's pure rules (reconcile/rules.py) and its run loop (reconcile/run.py) with fakes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from appointment_enricher.ledger.base import LedgerEntry
from appointment_enricher.models import AppointmentWebhook
from appointment_enricher.powerleads.client import UpstreamRejected, UpstreamUnavailable
from appointment_enricher.reconcile.rules import Window, decide, recovery_message, snapshot
from appointment_enricher.reconcile.run import Cursor, Pacer, ReconcileOptions, Reconciler
from appointment_enricher.wire import IngestMessage, reconcile_dedupe_id
from tests.fakes import FakeClock

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
T1 = "2026-11-20T10:00:00.000Z"
T2 = "2026-11-21T10:00:00.000Z"


def Entry(date_updated: datetime | None, deleted: bool = False) -> LedgerEntry:
    """A ledger entry as the ledger's adapter returns it (the reconciler reads two fields)."""
    return LedgerEntry("Appt", "Loc1", date_updated, deleted)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def event(appointment_id: str = "Appt1", updated: str | None = T2, **extra: Any) -> dict[str, Any]:
    e = {
        "id": appointment_id,
        "calendarId": "Cal1",
        "locationId": "Loc1",
        "startTime": "2026-12-01T10:00:00Z",
    }
    if updated is not None:
        e["dateUpdated"] = updated
    return {**e, **extra}


# ---- decide ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listed", "entry", "expected"),
    [
        (event(), None, "AppointmentUpdate"),  # the ledger never saw it
        (event(), Entry(at(T1)), "AppointmentUpdate"),  # the ledger holds an older state
        (event(), Entry(None), "AppointmentUpdate"),  # the ledger does not know its dateUpdated
        (event(), Entry(at(T2)), None),  # same state
        (event(updated=T1), Entry(at(T2)), None),  # an older listing (stale read upstream)
        (event(updated=None), Entry(at(T1)), None),  # nothing to compare with: trust the ledger
        (event(updated=None), None, "AppointmentUpdate"),  # but an unknown appointment is fetched
        (event(deleted=True), Entry(at(T1)), "AppointmentDelete"),  # deleted upstream, live here
        (event(deleted="true"), Entry(at(T2)), "AppointmentDelete"),
        (event(deleted=True), Entry(at(T1), deleted=True), None),  # its delete was published
        (event(deleted=True), None, None),  # never published: nothing to take back
        (event(), Entry(at(T1), deleted=True), "AppointmentUpdate"),  # live again, newer
        (event(appointment_id="bad/id"), None, None),  # never used when unsafe
    ],
)
def test_decide(listed: dict[str, Any], entry: Entry | None, expected: str | None) -> None:
    recovery = decide(listed, entry)
    assert (recovery.kind if recovery else None) == expected


def test_dedupe_id_is_the_wire_rule_for_the_state_found() -> None:
    update = decide(event(updated="2026-11-21T15:30:00+05:30"), None)
    assert update is not None
    assert update.date_updated == "2026-11-21T10:00:00Z"
    assert update.dedupe_id == reconcile_dedupe_id("Appt1", "2026-11-21T10:00:00Z")
    delete = decide(event(deleted=True), Entry(at(T1)))
    assert delete is not None and delete.dedupe_id == reconcile_dedupe_id("Appt1", T2, deleted=True)
    assert delete.dedupe_id != update.dedupe_id


def test_the_recovery_message_is_what_the_receiver_queues_marked_reconcile() -> None:
    listed = event(title="Cut", isRecurring="true", startTime="not a time", contactId=7)
    recovery = decide(listed, None)
    assert recovery is not None
    text, attributes = recovery_message("Loc1", listed, recovery, NOW)
    message = IngestMessage.decode(text)
    assert message.trigger == "reconcile"
    assert message.dedupe_id == recovery.dedupe_id
    assert message.received_at == "2026-11-30T12:00:00Z"
    webhook = AppointmentWebhook.model_validate_json(message.body)  # what the enricher parses
    assert webhook.type == "AppointmentUpdate"
    assert webhook.locationId == "Loc1"
    assert webhook.appointment.id == "Appt1"
    body = json.loads(message.body)
    assert "startTime" not in body["appointment"]  # unparseable: left out, not quarantined
    assert "contactId" not in body["appointment"]
    assert body["appointment"]["title"] == "Cut"
    assert attributes == {"eventType": "AppointmentUpdate", "locationId": "Loc1", "trigger": "reconcile"}


def test_snapshot_keeps_unknown_fields_and_valid_values() -> None:
    kept = snapshot(event(deleted=True, extraField={"x": 1}, isRecurring=False))
    assert kept["deleted"] is True and kept["extraField"] == {"x": 1} and kept["isRecurring"] is False
    assert kept["dateUpdated"] == T2


def test_window_halves_share_the_midpoint_and_cover_the_whole() -> None:
    window = Window.around(NOW_MS, 7, 90)
    assert window.span_ms == 97 * 86_400_000
    first, second = window.halves()
    assert (first.start_ms, second.end_ms) == (window.start_ms, window.end_ms)
    assert first.end_ms == second.start_ms


# ---- the run loop ---------------------------------------------------------------------------


class FakeUpstream:
    """calendars per location and events per (location, calendar); each call costs ``cost`` s."""

    def __init__(self, clock: FakeClock, cost: float = 0.1) -> None:
        self.clock, self.cost = clock, cost
        self.calendars: dict[str, list[str]] = {}
        self.events: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.failures: list[Exception] = []

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        self.clock.now += self.cost
        if self.failures:
            raise self.failures.pop(0)

    def list_calendars(self, location_id: str, *, deadline: float) -> list[dict[str, Any]]:
        self._call("calendars", location_id)
        return [{"id": c} for c in self.calendars.get(location_id, [])]

    def list_events(
        self, location_id: str, calendar_id: str, start_ms: int, end_ms: int, *, deadline: float
    ) -> list[dict[str, Any]]:
        self._call("events", location_id, calendar_id, start_ms, end_ms)
        return [
            e for e in self.events.get((location_id, calendar_id), []) if start_ms <= e["_start"] <= end_ms
        ]


class FakeLedger:
    def __init__(self) -> None:
        self.items: dict[str, LedgerEntry] = {}
        self.locations: list[str] = []

    def entries(self, appointment_ids: Sequence[str]) -> dict[str, LedgerEntry]:
        return {a: self.items[a] for a in appointment_ids if a in self.items}

    def known_locations(self) -> list[str]:
        return list(self.locations)


class FakeCursors:
    def __init__(self) -> None:
        self.saved: dict[str, Cursor | None] = {}

    def load(self, location_ids: Sequence[str]) -> dict[str, Cursor]:
        return {k: v for k, v in self.saved.items() if v is not None and k in location_ids}

    def save(self, location_id: str, cursor: Cursor | None) -> None:
        self.saved[location_id] = cursor


class FakeSink:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str:
        self.sent.append(
            {"body": body, "group": group_id, "dedupe": dedupe_id, "attributes": dict(attributes)}
        )
        return str(len(self.sent))


class World:
    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock(100.0)
        self.upstream = FakeUpstream(self.clock)
        self.ledger = FakeLedger()
        self.cursors = FakeCursors()
        self.sink = FakeSink()
        self.reconciler = Reconciler(
            self.upstream,
            self.ledger,
            self.cursors,
            self.sink,
            pacer=Pacer(budget=options.pop("budget", 20), monotonic=self.clock),
            options=ReconcileOptions(**options),
            monotonic=self.clock,
            sleep=self.clock.sleep,
            now=lambda: NOW,
        )

    def add(
        self, location: str, calendar: str, appointment: str, start_offset_days: float = 1, **kw: Any
    ) -> None:
        self.upstream.calendars.setdefault(location, [])
        if calendar not in self.upstream.calendars[location]:
            self.upstream.calendars[location].append(calendar)
        start = NOW_MS + int(start_offset_days * 86_400_000)
        self.upstream.events.setdefault((location, calendar), []).append(
            {**event(appointment, **kw), "locationId": location, "calendarId": calendar, "_start": start}
        )

    def run(self, locations: Sequence[str], seconds: float = 600) -> dict[str, Any]:
        return self.reconciler.run(locations, self.clock.now + seconds)


def test_enqueues_what_the_ledger_lacks_and_a_second_run_enqueues_nothing() -> None:
    world = World()
    world.add("Loc1", "CalA", "New1")
    world.add("Loc1", "CalA", "Old1")
    world.add("Loc1", "CalB", "Same1")
    world.add("Loc1", "CalB", "Gone1", deleted=True)
    world.ledger.items = {"Old1": Entry(at(T1)), "Same1": Entry(at(T2)), "Gone1": Entry(at(T1))}
    summary = world.run(["Loc1"])
    assert summary["enqueued"] == 3
    assert summary["recovered"] == {"AppointmentUpdate": 2, "AppointmentDelete": 1}
    assert (summary["listed"], summary["skipped"], summary["errors"]) == (4, 1, 0)
    assert summary["requests"] == 3  # calendars + one window per calendar
    assert {m["group"] for m in world.sink.sent} == {"New1", "Old1", "Gone1"}
    json.dumps(summary)  # the handler returns it
    # The enricher catches the ledger up; the next run finds nothing new.
    world.ledger.items.update(
        {"New1": Entry(at(T2)), "Old1": Entry(at(T2)), "Gone1": Entry(at(T2), deleted=True)}
    )
    world.sink.sent.clear()
    again = world.run(["Loc1"])
    assert again["enqueued"] == 0 and world.sink.sent == []
    assert again["skipped"] == 4


def test_a_dense_window_is_split_in_halves_down_to_the_floor() -> None:
    world = World(max_events=3, min_window_ms=86_400_000)
    for i in range(8):
        world.add("Loc1", "CalA", f"Appt{i}", start_offset_days=i * 10)
    summary = world.run(["Loc1"])
    assert summary["enqueued"] == 8  # every event once, although the halves overlap
    windows = [c[3:] for c in world.upstream.calls if c[0] == "events"]
    assert len(windows) > 1 and summary["perLocation"][0]["splits"] >= 1
    assert all(e - s >= 86_400_000 for s, e in windows)


def test_paces_each_location_to_its_budget_and_serves_locations_round_robin() -> None:
    world = World(budget=5)
    for loc in ("LocA", "LocB"):
        for cal in range(12):
            world.add(loc, f"Cal{cal:02d}", f"{loc}Appt{cal}")
    world.run(["LocA", "LocB"])
    calls = world.upstream.calls
    assert [c[1] for c in calls[:6]] == ["LocA", "LocB"] * 3  # turns, not one location first
    assert world.clock.sleeps, "the pacer never waited"
    assert Counter(c[1] for c in calls) == {"LocA": 13, "LocB": 13}


def test_paced_requests_never_exceed_the_share(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(budget=4)
    stamps: list[float] = []
    original = world.upstream._call

    def stamped(*call: Any) -> None:
        stamps.append(world.clock.now)
        original(*call)

    monkeypatch.setattr(world.upstream, "_call", stamped)
    for cal in range(10):
        world.add("Loc1", f"Cal{cal}", f"Appt{cal}")
    world.run(["Loc1"])
    assert len(stamps) == 11
    for i, start in enumerate(stamps):
        assert sum(1 for t in stamps[i:] if t < start + 10.0) <= 4


def test_stops_before_the_deadline_and_resumes_from_the_cursor() -> None:
    world = World(budget=100, request_reserve_seconds=1.0)
    world.upstream.cost = 1.0
    for cal in range(6):
        world.add("Loc1", f"Cal{cal}", f"Appt{cal}")
    first = world.run(["Loc1"], seconds=4.5)
    assert first["stoppedEarly"] and first["incomplete"] == ["Loc1"]
    assert first["requests"] == 4  # calendars + Cal0..Cal2; a fifth would not end before the deadline
    cursor = world.cursors.saved["Loc1"]
    assert cursor is not None and cursor.calendar_id == "Cal3"
    second = world.run(["Loc1"])
    assert not second["stoppedEarly"] and second["incomplete"] == []
    events_second = [c[2] for c in world.upstream.calls[4:] if c[0] == "events"]
    assert events_second == ["Cal3", "Cal4", "Cal5"]  # resumed, not restarted
    assert world.cursors.saved["Loc1"] is None  # a complete sweep clears its cursor
    assert first["enqueued"] + second["enqueued"] == 6


def test_a_failing_location_does_not_stop_the_others() -> None:
    world = World()
    world.add("LocA", "Cal1", "A1")
    world.add("LocB", "Cal1", "B1")
    world.upstream.failures = [UpstreamUnavailable("429 storm", status=429)]  # LocA's calendars
    summary = world.run(["LocA", "LocB"])
    assert summary["errors"] == 1 and summary["enqueued"] == 1
    assert summary["incomplete"] == ["LocA"]
    assert [m["group"] for m in world.sink.sent] == ["B1"]


def test_a_refused_window_is_skipped_and_the_sweep_goes_on() -> None:
    world = World()
    world.add("Loc1", "Cal1", "A1")
    world.add("Loc1", "Cal2", "A2")
    calls = iter([None, UpstreamRejected("422", status=422)])
    original = world.upstream._call

    def maybe_fail(*call: Any) -> None:
        original(*call)
        failure = next(calls, None)
        if failure is not None:
            raise failure

    world.upstream._call = maybe_fail  # type: ignore[method-assign]
    summary = world.run(["Loc1"])
    assert summary["errors"] == 1 and summary["incomplete"] == []
    assert [m["group"] for m in world.sink.sent] == ["A2"]


def test_locations_are_the_requested_ones_else_configured_plus_known() -> None:
    world = World()
    world.ledger.locations = ["Known1", "Conf1", "bad id"]
    assert world.reconciler.locations(["Req1"], ["Conf1"]) == (["Req1"], 0)
    assert world.reconciler.locations(None, ["Conf1"]) == (["Conf1", "Known1"], 0)


def test_pacer_yields_when_the_upstream_window_is_mostly_spent() -> None:
    clock = FakeClock(100.0)
    pacer = Pacer(budget=20, reserve=0.5, monotonic=clock)
    pacer.observe("Loc1", {"X-RateLimit-Remaining": "80", "X-RateLimit-Max": "100"})
    assert pacer.wait_needed("Loc1") == 0
    headers = {
        "X-RateLimit-Remaining": "30",
        "X-RateLimit-Max": "100",
        "X-RateLimit-Interval-Milliseconds": "10000",
    }
    pacer.observe("Loc1", headers)
    assert pacer.wait_needed("Loc1") == pytest.approx(10.0)
    assert pacer.wait_needed("Loc2") == 0


def test_an_unsafe_calendar_id_from_upstream_is_never_requested() -> None:
    world = World()
    world.add("Loc1", "Cal1", "A1")
    world.upstream.calendars["Loc1"].append("../admin")
    summary = world.run(["Loc1"])
    assert [c[2] for c in world.upstream.calls if c[0] == "events"] == ["Cal1"]
    assert summary["invalid"] == 1 and summary["calendars"] == 1 and summary["enqueued"] == 1
