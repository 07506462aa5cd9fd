"""EnricherService with fakes: idempotency, order per group, coalescing, quarantine, publishing."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from appointment_enricher.aws.publisher import OutboundMessage
from appointment_enricher.config import EnricherSettings
from appointment_enricher.enrich import prepare as groups_module
from appointment_enricher.enrich.idempotency import Claim
from appointment_enricher.enrich.service import EnricherService, Outcome, Stats
from appointment_enricher.ledger.base import BatchRead, LedgerConflict, LedgerEntry
from appointment_enricher.powerleads.client import (
    AppointmentNotFound,
    InvalidUpstreamBody,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
)

LOC = "loc1"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def event(appointment_id: str, **over: Any) -> dict[str, Any]:
    return {
        "id": appointment_id,
        "title": "Call",
        "calendarId": "cal1",
        "locationId": LOC,
        "contactId": "c1",
        "groupId": "g1",
        "appointmentStatus": "confirmed",
        "assignedUserId": "u1",
        "users": ["u1"],
        "startTime": "2026-01-05T10:00:00+05:30",
        "endTime": "2026-01-05T10:30:00+05:30",
        "dateAdded": "2026-01-01T00:00:00Z",
        "dateUpdated": "2026-01-01T00:00:00Z",
        **over,
    }


def sqs(
    n: int, appointment_id: str, kind: str = "AppointmentUpdate", dedupe: str | None = None, body: Any = None
) -> dict[str, Any]:
    webhook = {
        "type": kind,
        "locationId": LOC,
        "webhookId": dedupe or f"wh-{n}",
        "appointment": {"id": appointment_id, "calendarId": "cal1", "appointmentStatus": "booked"},
    }
    ingest = {
        "body": json.dumps(webhook),
        "receivedAt": "2026-01-02T03:04:00Z",
        "dedupeId": dedupe or f"wh-{n}",
    }
    return {
        "messageId": f"msg-{n}",
        "body": json.dumps(ingest) if body is None else body,
        "attributes": {"MessageGroupId": appointment_id},
    }


class Source:
    """Fake PowerLeads: ``results[id]`` is a payload, an exception, or a list of those (in turn)."""

    def __init__(self, results: dict[str, Any] | None = None, barrier: threading.Barrier | None = None):
        self.results = results or {}
        self.calls: list[tuple[str, str, float]] = []
        self.barrier = barrier
        self._lock = threading.Lock()

    def get_appointment(self, event_id: str, location_id: str, *, deadline: float) -> dict[str, Any]:
        with self._lock:
            self.calls.append((event_id, location_id, deadline))
            result = self.results.get(event_id, {"event": event(event_id)})
            if isinstance(result, list):
                result = result.pop(0) if len(result) > 1 else result[0]
        if self.barrier is not None:
            self.barrier.wait()
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]


class Sink:
    """Fake publisher: ``fail_once`` entry ids fail their first publish; ``delivered`` is what got out."""

    def __init__(self) -> None:
        self.calls: list[list[OutboundMessage]] = []
        self.delivered: list[OutboundMessage] = []
        self.fail_once: set[str] = set()

    def publish(self, messages: Any, *, time_left: Any = None) -> dict[str, str]:
        self.calls.append(list(messages))
        failed = {}
        for m in messages:
            if m.entry_id in self.fail_once:
                self.fail_once.discard(m.entry_id)
                failed[m.entry_id] = "InternalError"
        self.delivered.extend(m for m in messages if m.entry_id not in failed)
        return failed


class Parked:
    def __init__(self, broken: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.broken = broken

    def send(self, original_body: str, **kwargs: Any) -> None:
        if self.broken:
            raise RuntimeError("sqs down")
        self.sent.append({"body": original_body, **kwargs})


class Memory:
    """In-memory idempotency store with the Powertools semantics we rely on."""

    def __init__(self) -> None:
        self.state: dict[str, str] = {}
        self.busy: set[str] = set()
        self.broken = False

    def claim(self, dedupe_id: str, remaining_ms: int) -> Claim:
        if self.broken:
            raise RuntimeError("dynamodb down")
        if dedupe_id in self.busy or self.state.get(dedupe_id) == "INPROGRESS":
            return Claim.BUSY
        if self.state.get(dedupe_id) == "COMPLETED":
            return Claim.DONE
        self.state[dedupe_id] = "INPROGRESS"
        return Claim.NEW

    def complete(self, dedupe_id: str, result: dict[str, Any]) -> None:
        self.state[dedupe_id] = "COMPLETED"

    def release(self, dedupe_id: str, reason: Exception) -> None:
        self.state.pop(dedupe_id, None)


@pytest.fixture
def parts() -> tuple[Source, Sink, Parked, Memory]:
    return Source(), Sink(), Parked(), Memory()


def service(source: Source, sink: Sink, parked: Parked, memory: Memory | None, **kw: Any) -> EnricherService:
    return EnricherService(source, sink, parked, memory, now=lambda: NOW, **kw)


def run(svc: EnricherService, records: list[dict[str, Any]], remaining: int = 60_000):
    stats = Stats()
    items = svc.process(records, lambda: remaining, stats)
    return items, svc.failures(items), stats.drain()


def bodies(messages: list[OutboundMessage]) -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in messages]


# ----- idempotency -------------------------------------------------------------------------


def test_a_new_webhook_is_published_once_with_contract_attributes(parts) -> None:
    _source, sink, _parked, memory = parts
    items, failures, counts = run(service(*parts), [sqs(1, "A")])
    assert failures == [] and items[0].outcome is Outcome.PUBLISHED
    (out,) = sink.delivered
    assert out.attributes == {
        "eventType": "AppointmentUpdate",
        "locationId": LOC,
        "calendarId": "cal1",
        "appointmentStatus": "confirmed",
        "schemaVersion": "1",
    }
    assert (out.group_id, out.dedupe_id) == ("A", "wh-1")
    record = json.loads(out.body)
    assert record["deleted"] is False and record["appointmentId"] == "A" and record["webhookId"] == "wh-1"
    assert record["derived"]["startTimeUtc"] == "2026-01-05T04:30:00Z"
    assert memory.state == {"wh-1": "COMPLETED"}
    assert counts == {"RecordsReceived": 1, "RecordsEnriched": 1}


def test_redelivery_publishes_nothing_new_and_makes_no_upstream_call(parts) -> None:
    source, sink, _, _ = parts
    svc = service(*parts)
    run(svc, [sqs(1, "A")])
    items, failures, counts = run(svc, [sqs(1, "A") | {"messageId": "redelivered"}])
    assert failures == [] and items[0].outcome is Outcome.DUPLICATE
    assert len(sink.delivered) == 1 and len(source.calls) == 1
    assert counts["DuplicatesSkipped"] == 1


def test_a_record_whose_publish_failed_is_completed_by_the_retry(parts) -> None:
    _source, sink, _, memory = parts
    sink.fail_once = {"msg-1"}
    svc = service(*parts)
    _, failures, counts = run(svc, [sqs(1, "A")])
    assert failures == [{"itemIdentifier": "msg-1"}] and counts["RecordsRetried"] == 1
    assert memory.state == {}  # claim released, not left COMPLETED nor stuck INPROGRESS
    _, failures, _ = run(svc, [sqs(1, "A")])
    assert failures == [] and [m.dedupe_id for m in sink.delivered] == ["wh-1"]
    assert memory.state == {"wh-1": "COMPLETED"}


def test_a_webhook_held_by_another_invocation_is_retried_with_the_rest_of_its_group(parts) -> None:
    _source, sink, _, memory = parts
    memory.busy = {"wh-2"}
    _, failures, _ = run(service(*parts), [sqs(1, "A"), sqs(2, "A"), sqs(3, "A"), sqs(4, "B")])
    assert failures == [{"itemIdentifier": "msg-2"}, {"itemIdentifier": "msg-3"}]
    assert [m.dedupe_id for m in sink.delivered] == ["wh-1", "wh-4"]


def test_idempotency_store_down_retries_everything_and_publishes_nothing(parts) -> None:
    source, sink, _, memory = parts
    memory.broken = True
    _, failures, _ = run(service(*parts), [sqs(1, "A"), sqs(2, "B")])
    assert len(failures) == 2 and sink.delivered == [] and source.calls == []


def test_the_same_webhook_twice_in_one_batch_is_published_once(parts) -> None:
    _source, sink, _, _ = parts
    items, failures, _ = run(service(*parts), [sqs(1, "A", dedupe="w"), sqs(2, "A", dedupe="w")])
    assert failures == [] and [i.outcome for i in items] == [Outcome.PUBLISHED, Outcome.DUPLICATE]
    assert len(sink.delivered) == 1


def test_without_a_table_every_message_is_processed(parts) -> None:
    source, sink, parked, _ = parts
    svc = service(source, sink, parked, None)
    run(svc, [sqs(1, "A")])
    run(svc, [sqs(1, "A")])
    assert len(sink.delivered) == 2


def test_idempotency_ttl_is_at_least_twice_the_webhook_max_age() -> None:
    env = {"QUARANTINE_QUEUE_URL": "q", "OUTPUT_QUEUE_URL": "o", "POWERLEADS_TOKEN": "t"}
    for max_age in ("60", "86400", "604800"):
        settings = EnricherSettings.from_env(env | {"WEBHOOK_MAX_AGE_SECONDS": max_age})
        assert settings.idempotency_ttl_seconds >= 2 * int(max_age)


# ----- order with concurrency --------------------------------------------------------------


def test_a_failed_publish_fails_the_later_records_of_its_group_only(parts) -> None:
    _source, sink, _, memory = parts
    sink.fail_once = {"msg-2"}
    records = [sqs(1, "A"), sqs(2, "A"), sqs(3, "A"), sqs(4, "B"), sqs(5, "B")]
    _, failures, _ = run(service(*parts), records)
    assert failures == [{"itemIdentifier": "msg-2"}, {"itemIdentifier": "msg-3"}]
    assert [m.dedupe_id for m in sink.delivered] == ["wh-1", "wh-4", "wh-5"]
    assert "wh-3" not in memory.state  # released: the retry may do it


def test_records_of_one_group_are_never_in_the_same_publish_call(parts) -> None:
    _source, sink, _, _ = parts
    run(service(*parts), [sqs(1, "A"), sqs(2, "A"), sqs(3, "B")])
    assert [[m.dedupe_id for m in call] for call in sink.calls] == [["wh-1", "wh-3"], ["wh-2"]]


def test_a_retryable_fetch_failure_fails_its_group_and_other_groups_carry_on(parts) -> None:
    source, sink, _, _ = parts
    source.results["A"] = UpstreamUnavailable("HTTP 503")
    _, failures, counts = run(service(*parts), [sqs(1, "A"), sqs(2, "B"), sqs(3, "A")])
    assert failures == [{"itemIdentifier": "msg-1"}, {"itemIdentifier": "msg-3"}]
    assert [m.dedupe_id for m in sink.delivered] == ["wh-2"]
    assert counts["RecordsRetried"] == 2


def test_records_before_the_failing_fetch_still_go_out_in_order(parts) -> None:
    source, sink, _, _ = parts
    source.results["A"] = UpstreamUnavailable("HTTP 503")
    records = [sqs(1, "A", "AppointmentDelete"), sqs(2, "A"), sqs(3, "A", "AppointmentDelete")]
    _, failures, _ = run(service(*parts), records)
    assert failures == [{"itemIdentifier": "msg-2"}, {"itemIdentifier": "msg-3"}]
    assert [m.dedupe_id for m in sink.delivered] == ["wh-1"]


def test_groups_are_fetched_concurrently(parts) -> None:
    _, sink, parked, memory = parts
    source = Source(barrier=threading.Barrier(3, timeout=5))  # all three must be in flight at once
    _, failures, _ = run(service(source, sink, parked, memory), [sqs(1, "A"), sqs(2, "B"), sqs(3, "C")])
    assert failures == [] and len(sink.delivered) == 3


def test_an_unexpected_error_retries_the_rest_of_the_group(parts, monkeypatch) -> None:
    _source, sink, _, memory = parts
    real = groups_module.build_record

    def build(webhook: Any, *args: Any, **kwargs: Any) -> Any:
        if webhook.webhookId == "wh-2":
            raise RuntimeError("bug")
        return real(webhook, *args, **kwargs)

    monkeypatch.setattr(groups_module, "build_record", build)
    items, failures, _ = run(service(*parts), [sqs(1, "A"), sqs(2, "A"), sqs(3, "A"), sqs(4, "B")])
    assert failures == [{"itemIdentifier": f"msg-{n}"} for n in (1, 2, 3)]
    assert [m.dedupe_id for m in sink.delivered] == ["wh-4"]
    assert items[1].error_type == "UnexpectedError"
    assert memory.state == {"wh-4": "COMPLETED"}


# ----- coalescing ---------------------------------------------------------------------------


def test_n_updates_to_one_appointment_make_one_fetch_and_n_records_in_order(parts) -> None:
    source, sink, _, _ = parts
    records = [sqs(n, "A") for n in range(1, 8)]
    _, failures, _ = run(service(*parts), records)
    assert failures == [] and len(source.calls) == 1
    assert [m.dedupe_id for m in sink.delivered] == [f"wh-{n}" for n in range(1, 8)]


def test_deletes_need_no_fetch(parts) -> None:
    source, sink, _, _ = parts
    _, failures, counts = run(service(*parts), [sqs(1, "A", "AppointmentDelete")])
    assert failures == [] and source.calls == []
    (record,) = bodies(sink.delivered)
    assert record["deleted"] is True and record["appointment"] == {
        "id": "A",
        "calendarId": "cal1",
        "appointmentStatus": "booked",
    }
    assert counts["RecordsDeleted"] == 1


def test_404_after_the_grace_publishes_deleted_records_from_the_snapshots(parts) -> None:
    source, sink, parked, memory = parts
    source.results["A"] = AppointmentNotFound("HTTP 404", status=404)
    svc = service(source, sink, parked, memory, not_found_grace_seconds=5)  # the events are 5 s old
    _, failures, counts = run(svc, [sqs(1, "A"), sqs(2, "A")])
    assert failures == [] and len(source.calls) == 1
    assert [r["deleted"] for r in bodies(sink.delivered)] == [True, True]
    assert counts["RecordsDeleted"] == 2


def test_404_within_the_grace_is_retried_not_published(parts) -> None:
    source, sink, parked, memory = parts
    source.results["A"] = AppointmentNotFound("HTTP 404", status=404)
    svc = service(source, sink, parked, memory, not_found_grace_seconds=6)
    items, failures, _ = run(svc, [sqs(1, "A"), sqs(2, "A", "AppointmentDelete"), sqs(3, "B")])
    assert failures == [{"itemIdentifier": "msg-1"}, {"itemIdentifier": "msg-2"}]  # the delete waits its turn
    assert items[0].error_type == "NotFoundWithinGrace"
    assert [m.dedupe_id for m in sink.delivered] == ["wh-3"] and parked.sent == []
    assert memory.state == {"wh-3": "COMPLETED"}  # released: the retry decides


def test_an_unreadable_received_at_cannot_wait_for_the_grace(parts) -> None:
    source, sink, _parked, _memory = parts
    source.results["A"] = AppointmentNotFound("HTTP 404", status=404)
    record = sqs(1, "A")
    ingest = json.loads(record["body"]) | {"receivedAt": "yesterday"}
    _, failures, _ = run(service(*parts), [record | {"body": json.dumps(ingest)}])
    assert failures == [] and [r["deleted"] for r in bodies(sink.delivered)] == [True]


def test_an_appointment_of_another_location_is_quarantined_never_published(parts) -> None:
    source, sink, parked, memory = parts
    source.results["A"] = {"event": event("A", locationId="someone-else")}
    items, failures, counts = run(service(*parts), [sqs(1, "A"), sqs(2, "A")])
    assert failures == [] and sink.delivered == []
    assert [p["error_type"] for p in parked.sent] == ["LocationMismatch", "LocationMismatch"]
    assert "another location" in (items[0].error_message or "")
    assert counts["RecordsQuarantined"] == 2 and memory.state["wh-1"] == "COMPLETED"


def test_every_record_says_what_produced_it(parts) -> None:
    _source, sink, _, _ = parts
    record = sqs(1, "A")
    ingest = json.loads(record["body"]) | {"trigger": "reconcile"}
    run(service(*parts), [record | {"body": json.dumps(ingest)}, sqs(2, "B")])
    assert [r["trigger"] for r in bodies(sink.delivered)] == ["reconcile", "webhook"]
    assert all("change" not in r for r in bodies(sink.delivered))  # no ledger, no change


def test_snapshot_fields_of_any_shape_are_accepted_and_kept(parts) -> None:
    _source, sink, parked, _ = parts
    webhook = {
        "type": "AppointmentDelete",
        "locationId": LOC,
        "webhookId": 12345,
        "timestamp": {"odd": True},
        "appId": ["x"],
        "appointment": {
            "id": "A",
            "startTime": 17,
            "endTime": "not a time",
            "calendarId": None,
            "isRecurring": "true",
        },
    }
    ingest = {"body": json.dumps(webhook), "receivedAt": "2026-01-02T03:04:00Z", "dedupeId": "d1"}
    record = {"messageId": "m1", "body": json.dumps(ingest), "attributes": {"MessageGroupId": "A"}}
    _, failures, _ = run(service(*parts), [record])
    assert failures == [] and parked.sent == []
    (out,) = bodies(sink.delivered)
    assert out["appointment"]["startTime"] == 17 and out["appointment"]["endTime"] == "not a time"
    assert out["webhookId"] == "12345"
    assert out["derived"]["startTimeUtc"] is None and out["derived"]["isRecurring"] is True


# ----- upstream resilience at the batch level -----------------------------------------------


def test_the_fetch_deadline_is_remaining_time_minus_the_margin(parts) -> None:
    source, sink, parked, memory = parts
    svc = service(source, sink, parked, memory, deadline_margin_seconds=2.5, monotonic=lambda: 100.0)
    run(svc, [sqs(1, "A")], remaining=10_000)
    assert source.calls[0][2] == pytest.approx(107.5)


@pytest.mark.parametrize(
    ("error", "error_type"),
    [
        (UpstreamAuthError("HTTP 401", status=401), "UpstreamAuthError"),
        (UpstreamUnavailable("retry budget exhausted after: HTTP 429"), "UpstreamUnavailable"),
        (TimeoutError("token secret"), "TimeoutError"),
    ],
)
def test_retryable_upstream_errors_become_batch_item_failures(parts, error, error_type) -> None:
    source, sink, parked, _ = parts
    source.results["A"] = error
    items, failures, _ = run(service(*parts), [sqs(1, "A")])
    assert failures == [{"itemIdentifier": "msg-1"}] and items[0].error_type == error_type
    assert parked.sent == [] and sink.delivered == []


# ----- quarantine ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "error_type"),
    [
        (UpstreamRejected("HTTP 400: bad", status=400), "UpstreamRejected"),
        (UpstreamRejected("HTTP 422: Unprocessable Entity", status=422), "UpstreamRejected"),
        (InvalidUpstreamBody("HTTP 200 with a body that is not JSON", status=200), "InvalidUpstreamBody"),
        ({"event": {"id": "A"}}, "InvalidAppointment"),
        ({"event": event("OTHER")}, "InvalidAppointment"),
        ({"event": event("A", startTime="next tuesday")}, "InvalidAppointment"),
    ],
    ids=["400", "422", "not-json", "schema", "other-id", "bad-time"],
)
def test_permanent_upstream_failures_are_quarantined_and_acknowledged(parts, result, error_type) -> None:
    source, sink, parked, memory = parts
    source.results["A"] = result
    records = [sqs(1, "A"), sqs(2, "B")]
    _items, failures, counts = run(service(*parts), records)
    assert failures == []
    (parked_item,) = parked.sent
    assert parked_item["body"] == records[0]["body"]
    assert parked_item["error_type"] == error_type and parked_item["error_message"]
    assert parked_item["source_message_id"] == "msg-1" and parked_item["now"] == NOW
    assert parked_item["extra"]["appointmentId"] == "A" and parked_item["extra"]["dedupeId"] == "wh-1"
    assert [m.dedupe_id for m in sink.delivered] == ["wh-2"]
    assert counts["RecordsQuarantined"] == 1
    assert memory.state["wh-1"] == "COMPLETED"  # a late duplicate is not quarantined again
    assert "next tuesday" not in parked_item["error_message"]  # no input values (personal data)


@pytest.mark.parametrize(
    "body",
    ["not json", json.dumps({"body": "{}", "receivedAt": "x", "dedupeId": "d"}), json.dumps({"x": 1})],
    ids=["not-json", "bad-webhook", "bad-envelope"],
)
def test_unparseable_ingest_messages_are_quarantined(parts, body) -> None:
    _source, sink, parked, _ = parts
    _, failures, counts = run(service(*parts), [sqs(1, "A", body=body), sqs(2, "A")])
    assert failures == []
    assert [(p["body"], p["error_type"]) for p in parked.sent] == [(body, "InvalidIngestMessage")]
    assert len(sink.delivered) == 1 and counts["RecordsReceived"] == 2


def test_a_record_over_256_kib_is_quarantined(parts) -> None:
    source, sink, parked, _ = parts
    source.results["A"] = {"event": event("A", notes="x" * (256 * 1024))}
    _, failures, _ = run(service(*parts), [sqs(1, "A"), sqs(2, "A", "AppointmentDelete")])
    assert failures == []
    assert [p["error_type"] for p in parked.sent] == ["RecordTooLarge"]
    assert [m.dedupe_id for m in sink.delivered] == ["wh-2"]


def test_a_record_just_under_the_limit_is_published(parts) -> None:
    source, sink, parked, _ = parts
    source.results["A"] = {"event": event("A", notes="x" * (250 * 1024))}
    _, failures, _ = run(service(*parts), [sqs(1, "A")])
    assert failures == [] and parked.sent == [] and len(sink.delivered) == 1


def test_when_quarantine_is_unreachable_the_message_is_retried_not_dropped(parts) -> None:
    source, sink, _, memory = parts
    source.results["A"] = UpstreamRejected("HTTP 422", status=422)
    svc = service(source, sink, Parked(broken=True), memory)
    items, failures, _ = run(svc, [sqs(1, "A")])
    assert failures == [{"itemIdentifier": "msg-1"}] and items[0].error_type == "QuarantineFailed"
    assert memory.state == {}


# ----- change tracking (in-memory ledger; the DynamoDB cases run over the wire) ----------------


class MemoryLedger:
    """The ``Ledger`` port in memory, with the revision condition of the real adapter."""

    def __init__(self) -> None:
        self.items: dict[str, LedgerEntry] = {}
        self.locations: set[str] = set()
        self.remembered: list[list[str]] = []
        self.receipts: dict[str, str] = {}
        self.conflict_once = False
        self.announce_fails = False
        self.broken = False
        self.reads: list[list[str]] = []
        self.receipt_writes: list[dict[str, str]] = []

    def entries(self, appointment_ids: Any) -> dict[str, LedgerEntry]:
        if self.broken:
            raise RuntimeError("dynamodb down")
        self.reads.append(list(appointment_ids))
        return {i: self.items[i] for i in appointment_ids if i in self.items}

    def known_locations(self) -> list[str]:
        return sorted(self.locations)

    def read(self, appointment_ids: Any, dedupe_ids: Any) -> BatchRead:
        entries = self.entries(appointment_ids)
        return BatchRead(entries, frozenset(d for d in dedupe_ids if d in self.receipts))

    def put_receipt(self, dedupe_id: str, outcome: str) -> None:
        self.receipts[dedupe_id] = outcome

    def put_receipts(self, outcomes: Any) -> None:
        self.receipt_writes.append(dict(outcomes))
        self.receipts.update(outcomes)

    def save(self, entry: LedgerEntry) -> tuple[str, ...]:
        stored = self.items.get(entry.appointment_id)
        if self.conflict_once or (stored.revision if stored else 0) != entry.revision:
            self.conflict_once = False
            raise LedgerConflict("changed")
        if self.announce_fails and entry.settle:
            raise LedgerConflict("moved between the write ahead and the announce")
        self.items[entry.appointment_id] = replace(entry, revision=entry.revision + 1, settle=())
        self.receipts.update(dict.fromkeys(entry.settle, "settled"))  # the item's ``settled``
        return ()

    def remember_locations(self, location_ids: Any) -> None:
        self.remembered.append(list(location_ids))
        self.locations.update(location_ids)


def test_one_ledger_read_per_batch_and_each_record_carries_its_change(parts) -> None:
    source, sink, parked, memory = parts
    book = MemoryLedger()
    svc = service(source, sink, parked, memory, ledger=book)
    _, failures, _ = run(svc, [sqs(1, "A"), sqs(2, "B"), sqs(3, "A")])
    assert failures == [] and book.reads == [["A", "B"]]
    assert [(r["appointmentId"], r["change"]["kind"]) for r in bodies(sink.delivered)] == [
        ("A", "created"),
        ("B", "created"),
        ("A", "unchanged"),
    ]
    assert [m.attributes["changeKind"] for m in sink.delivered] == ["created", "created", "unchanged"]
    # written ahead of the publish (pending), then announced once it went out: two revisions
    assert book.items["A"].revision == 2 and book.locations == {LOC}


def test_the_batch_locations_are_written_after_the_read_and_a_failed_read_writes_none(parts) -> None:
    """The read shows which locations the ledger holds (the adapter learns them from the entries),
    so the batch's locations write waits for it instead of running beside it."""
    source, sink, parked, memory = parts

    class SlowRead(MemoryLedger):
        remembered_during_read = False

        def read(self, appointment_ids: Any, dedupe_ids: Any) -> BatchRead:
            threading.Event().wait(0.2)  # a remember beside the read would be called meanwhile
            self.remembered_during_read = bool(self.remembered)
            return super().read(appointment_ids, dedupe_ids)

    book = SlowRead()
    _, failures, _ = run(service(source, sink, parked, memory, ledger=book), [sqs(1, "A"), sqs(2, "B")])
    assert failures == [] and book.remembered_during_read is False
    assert book.remembered[0] == [LOC] and book.locations == {LOC}

    down = SlowRead()
    down.broken = True
    _, failures, _ = run(service(source, sink, parked, memory, ledger=down), [sqs(3, "C")])
    assert len(failures) == 1 and down.remembered == []


def test_a_ledger_conflict_retries_the_appointment_and_publishes_nothing_of_it(parts) -> None:
    source, sink, parked, memory = parts
    book = MemoryLedger()
    book.conflict_once = True
    items, failures, _ = run(service(source, sink, parked, memory, ledger=book), [sqs(1, "A"), sqs(2, "A")])
    assert failures == [{"itemIdentifier": "msg-1"}, {"itemIdentifier": "msg-2"}]
    assert items[0].error_type == "LedgerConflict" and sink.delivered == [] and memory.state == {}


def test_an_unreachable_ledger_retries_everything(parts) -> None:
    source, sink, parked, memory = parts
    book = MemoryLedger()
    book.broken = True
    items, failures, _ = run(service(source, sink, parked, memory, ledger=book), [sqs(1, "A"), sqs(2, "B")])
    assert len(failures) == 2 and sink.delivered == [] and items[0].error_type == "LedgerUnavailable"


def test_suppressed_records_complete_their_claims_and_are_counted(parts) -> None:
    source, sink, parked, memory = parts
    svc = service(source, sink, parked, memory, ledger=MemoryLedger(), suppress_unchanged=True)
    items, failures, counts = run(svc, [sqs(1, "A"), sqs(2, "A")])
    assert failures == [] and [i.outcome for i in items] == [Outcome.PUBLISHED, Outcome.SUPPRESSED]
    assert len(sink.delivered) == 1 and counts["UnchangedSuppressed"] == 1
    assert memory.state == {"wh-1": "COMPLETED", "wh-2": "COMPLETED"}


def test_with_a_ledger_and_no_idempotency_store_receipts_are_the_claims(parts) -> None:
    source, sink, parked, _ = parts
    book = MemoryLedger()
    svc = service(source, sink, parked, None, ledger=book)
    source.results["Q"] = UpstreamRejected("HTTP 422", status=422)
    _, failures, _ = run(svc, [sqs(1, "A"), sqs(2, "A"), sqs(3, "Q")])
    # the published deliveries are settled by A's announce write; only the quarantined one
    # takes a receipt item of its own
    assert failures == [] and book.receipts == {
        "wh-1": "settled",
        "wh-2": "settled",
        "wh-3": "quarantined",
    }
    assert book.receipt_writes == [{"wh-3": "quarantined"}]
    calls = len(source.calls)
    items, failures, counts = run(svc, [_redelivered(sqs(1, "A"), "late"), _redelivered(sqs(3, "Q"), "l3")])
    assert failures == [] and [i.outcome for i in items] == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert len(source.calls) == calls and len(sink.delivered) == 2 and len(parked.sent) == 1
    assert counts["DuplicatesSkipped"] == 2


def test_a_failed_announce_leaves_receipt_items_for_what_went_out(parts) -> None:
    """The announce write settles its deliveries; when it fails, receipts are written instead,
    so a late redelivery is still a duplicate."""
    source, sink, parked, _ = parts
    book = MemoryLedger()
    book.announce_fails = True
    svc = service(source, sink, parked, None, ledger=book)
    _, failures, _ = run(svc, [sqs(1, "A"), sqs(2, "B")])
    assert failures == [] and book.receipt_writes == [{"wh-1": "published", "wh-2": "published"}]
    book.announce_fails = False
    items, failures, _ = run(svc, [sqs(1, "A") | {"messageId": "late"}])
    assert failures == [] and [i.outcome for i in items] == [Outcome.DUPLICATE]
    assert len(sink.delivered) == 2


def test_receipts_are_written_only_for_settled_deliveries(parts) -> None:
    source, sink, parked, _ = parts
    book = MemoryLedger()
    sink.fail_once = {"msg-1"}
    _, failures, _ = run(service(source, sink, parked, None, ledger=book), [sqs(1, "A")])
    assert failures == [{"itemIdentifier": "msg-1"}] and book.receipts == {}
    assert book.items["A"].recent[0][0] == "wh-1"  # written ahead: the retry gets this change


# ----- what starts beside the ledger read ---------------------------------------------------


def _at(record: dict[str, Any], location_id: str) -> dict[str, Any]:
    """``record`` with its webhook moved to another location."""
    ingest = json.loads(record["body"])
    ingest["body"] = json.dumps({**json.loads(ingest["body"]), "locationId": location_id})
    return {**record, "body": json.dumps(ingest)}


class GatedLedger(MemoryLedger):
    """The batch read returns only once the warm-up has started (a service that warmed up after
    the read would fail it, after a 10 s wait); it records whether any locations write came first."""

    def __init__(self, warmed: threading.Event, fail_remember: int = 0) -> None:
        super().__init__()
        self.warmed = warmed
        self.fail_remember = fail_remember
        self.remembered_before_read = False

    def read(self, appointment_ids: Any, dedupe_ids: Any) -> BatchRead:
        if not self.warmed.wait(10):
            raise AssertionError("the ledger read ran before the warm-up")
        self.remembered_before_read = bool(self.remembered)
        return super().read(appointment_ids, dedupe_ids)

    def remember_locations(self, location_ids: Any) -> None:
        if self.fail_remember:
            self.fail_remember -= 1
            raise RuntimeError("dynamodb down")
        super().remember_locations(location_ids)


def test_the_token_warm_up_runs_beside_the_ledger_read_and_the_locations_write_after_it(parts) -> None:
    source, sink, parked, memory = parts
    source.results["B"] = {"event": {**event("B"), "locationId": "loc2"}}
    warmed = threading.Event()
    book = GatedLedger(warmed)
    svc = service(source, sink, parked, memory, ledger=book, warm=warmed.set)
    _, failures, _ = run(svc, [sqs(1, "A"), _at(sqs(2, "B"), "loc2"), sqs(3, "A")])
    assert failures == [] and len(sink.delivered) == 3 and book.remembered_before_read is False
    batch_write = [LOC, "loc2"]  # one write for the batch's locations, sorted
    assert batch_write in book.remembered
    others = sorted(call for call in book.remembered if call != batch_write)
    assert others == [[LOC], ["loc2"]]  # each save's own check (no write then)
    assert book.locations == {LOC, "loc2"}


def test_a_failed_locations_write_is_made_again_by_the_group_before_its_ledger_write(parts) -> None:
    source, sink, parked, memory = parts
    warmed = threading.Event()
    warmed.set()
    book = GatedLedger(warmed, fail_remember=1)
    svc = service(source, sink, parked, memory, ledger=book)
    _, failures, _ = run(svc, [sqs(1, "A")])
    assert failures == [] and book.locations == {LOC} and len(sink.delivered) == 1
    # The table stays down: the group's ledger write does not happen, and the message returns.
    book = GatedLedger(warmed, fail_remember=2)
    svc = service(source, Sink(), parked, Memory(), ledger=book)
    _, failures, _ = run(svc, [sqs(1, "A")])
    assert failures == [{"itemIdentifier": "msg-1"}] and book.items == {} and book.locations == set()


def _redelivered(record: dict[str, Any], message_id: str) -> dict[str, Any]:
    """``record`` received again (SQS counts it: ``ApproximateReceiveCount``)."""
    attributes = {**record["attributes"], "ApproximateReceiveCount": "2"}
    return {**record, "messageId": message_id, "attributes": attributes}


class ReadAfterFetch(MemoryLedger):
    """The batch read returns once a fetch has started, or after ``patience`` seconds."""

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source
        self.fetched_first: list[bool] = []
        self.patience = 10.0

    def read(self, appointment_ids: Any, dedupe_ids: Any) -> BatchRead:
        for _ in range(int(self.patience * 100)):
            if self.source.calls:
                break
            threading.Event().wait(0.01)
        self.fetched_first.append(bool(self.source.calls))
        return super().read(appointment_ids, dedupe_ids)


def test_a_first_receive_is_fetched_beside_the_ledger_read_and_a_redelivery_after_it(parts) -> None:
    """First receives: the fetch does not wait for the read (the read here waits for a fetch).
    Redeliveries and reconcile messages: the read first, so a settled one costs no request."""
    source, sink, parked, _ = parts
    book = ReadAfterFetch(source)
    svc = service(source, sink, parked, None, ledger=book)
    _, failures, _ = run(svc, [sqs(1, "A")])
    assert failures == [] and book.fetched_first == [True] and len(sink.delivered) == 1
    source.calls.clear()
    book.patience = 0.5  # time enough for a fetch that should not happen to show
    items, failures, _ = run(svc, [_redelivered(sqs(1, "A"), "again")])
    assert failures == [] and items[0].outcome is Outcome.DUPLICATE
    assert book.fetched_first[-1] is False and source.calls == []


def test_a_first_receive_that_turns_out_a_duplicate_costs_one_fetch_and_publishes_nothing(parts) -> None:
    """The price of fetching beside the read: a sender's repeat past the queue's deduplication."""
    source, sink, parked, _ = parts
    svc = service(source, sink, parked, None, ledger=MemoryLedger())
    run(svc, [sqs(1, "A")])
    items, failures, counts = run(svc, [sqs(1, "A") | {"messageId": "repeat"}])
    assert failures == [] and items[0].outcome is Outcome.DUPLICATE and counts["DuplicatesSkipped"] == 1
    assert len(source.calls) == 2 and len(sink.delivered) == 1


def test_a_reconcile_message_waits_for_the_read_and_a_covered_one_costs_no_fetch(parts) -> None:
    source, sink, parked, _ = parts
    book = ReadAfterFetch(source)
    svc = service(source, sink, parked, None, ledger=book)
    run(svc, [sqs(1, "A")])
    source.calls.clear()
    record = sqs(2, "A", dedupe="reconcile-A")
    ingest = json.loads(record["body"])
    webhook = json.loads(ingest["body"])
    webhook["appointment"]["dateUpdated"] = event("A")["dateUpdated"]  # the state already out
    ingest |= {"trigger": "reconcile", "body": json.dumps(webhook)}
    book.patience = 0.5  # time enough for a fetch that should not happen to show
    items, failures, _ = run(svc, [record | {"body": json.dumps(ingest)}])
    assert failures == [] and book.fetched_first[-1] is False and source.calls == []
    assert len(sink.delivered) == 1 and items[0].outcome is not Outcome.PUBLISHED
