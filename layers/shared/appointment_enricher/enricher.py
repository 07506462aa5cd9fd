"""The enricher's batch logic: one effect per webhook, in order per appointment.

For one SQS batch:
1. parse each ingest message (unparseable -> quarantine);
2. group by appointment (the FIFO ``MessageGroupId``), keeping batch order inside a group;
3. per group, on a bounded thread pool sharing one HTTP session: claim each message
   (idempotency; a COMPLETED claim means already published: skip), fetch each appointment once
   for the whole group (coalescing; deletes need no fetch), validate, enrich;
4. publish in rounds (the n-th record of every group in round n, ten per call), so a failed
   publish never lets a later record of the same appointment overtake it;
5. a record that fails retryably fails every later record of its group, which return to the
   queue with it; earlier records and other groups carry on. Permanent failures go to quarantine
   and are acknowledged. Claims are completed after publishing or quarantining (a late duplicate
   of either does nothing) and released when the record will be retried, so the retry can finish
   what failed part-way. ``plenrich redrive`` gives each redriven message a fresh dedupe id.

Why not Powertools' ``SqsFifoPartialProcessor``: it handles records strictly one at a time (even
with ``skip_group_on_error``, which gives the per-group failure rule we follow), so every record
costs its own upstream call and a slow or rate-limited appointment stalls the whole batch. We keep
its ordering guarantee per group but run groups in parallel and share one fetch per appointment,
which is what keeps a burst of updates to one appointment at one upstream call per batch.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from .enrichment import build_record
from .idempotency import Claim, Idempotency, NoIdempotency
from .models import (
    Appointment,
    AppointmentWebhook,
    EnrichedRecord,
    GetAppointmentResponse,
    IngestMessage,
)
from .publisher import MAX_MESSAGE_BYTES, OutboundMessage

DEADLINE_MARGIN_SECONDS = 5.0  # of a 60 s function timeout (template.yaml)


class AppointmentSource(Protocol):
    def get_appointment(self, event_id: str, location_id: str, *, deadline: float) -> dict[str, Any]: ...


class RecordPublisher(Protocol):
    def publish(self, messages: Sequence[OutboundMessage]) -> dict[str, str]: ...


class QuarantineSink(Protocol):
    def send(
        self,
        original_body: str,
        *,
        error_type: str,
        error_message: str,
        source_message_id: str,
        extra: Mapping[str, str | None] | None = None,
        now: datetime | None = None,
    ) -> None: ...


class Outcome(enum.Enum):
    PENDING = "pending"
    PUBLISHED = "published"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    RETRY = "retry"


class Permanent(Exception):
    """A failure no retry can fix: the message goes to quarantine with ``error_type``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass
class Item:
    """One SQS record through the pipeline."""

    message_id: str
    raw: str
    group: str
    ingest: IngestMessage | None = None
    webhook: AppointmentWebhook | None = None
    claimed: bool = False
    record: EnrichedRecord | None = None
    outbound: OutboundMessage | None = None  # the record as published: built and measured once
    outcome: Outcome = Outcome.PENDING
    error_type: str | None = None
    error_message: str | None = None

    def fail(self, outcome: Outcome, error_type: str, message: str) -> None:
        self.outcome, self.error_type, self.error_message = outcome, error_type, message[:500]


@dataclass
class Stats:
    """Thread-safe tallies the handler turns into metrics after the batch."""

    counts: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, value: int = 1) -> None:
        with self._lock:
            self.counts[name] += value

    def upstream(self, status: int | None, elapsed_ms: float) -> None:
        with self._lock:
            self.latencies_ms.append(elapsed_ms)
            self.counts["UpstreamCalls"] += 1
            if status == 429:
                self.counts["Upstream429"] += 1
            if status in (401, 403):
                self.counts["UpstreamAuthFailure"] += 1

    def drain(self) -> dict[str, int]:
        """Counts since the last drain (one invocation's worth)."""
        with self._lock:
            counts, self.counts = dict(self.counts), Counter()
        return counts

    def drain_latencies(self) -> list[float]:
        with self._lock:
            latencies, self.latencies_ms = self.latencies_ms, []
        return latencies


@dataclass(frozen=True)
class _FetchFailure:
    error_type: str
    message: str
    retryable: bool


def _is_retryable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retryable", True))


class EnricherService:
    """Turns an SQS batch into published records, quarantined messages and batch item failures."""

    def __init__(
        self,
        source: AppointmentSource,
        publisher: RecordPublisher,
        quarantine: QuarantineSink,
        idempotency: Idempotency | None = None,
        *,
        max_workers: int = 8,
        deadline_margin_seconds: float = DEADLINE_MARGIN_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        log: Callable[..., None] | None = None,
    ) -> None:
        self.source = source
        self.publisher = publisher
        self.quarantine = quarantine
        self.idempotency = idempotency or NoIdempotency()
        self.clock = clock
        self.monotonic = monotonic
        self.log = log or (lambda *args, **kwargs: None)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="enrich")
        self.max_workers = max_workers
        self.deadline_margin_seconds = deadline_margin_seconds

    # -- the batch ---------------------------------------------------------------------------

    def process(
        self,
        records: Sequence[Mapping[str, Any]],
        remaining_ms: Callable[[], int],
        stats: Stats | None = None,
    ) -> list[Item]:
        """Process one SQS batch; every item ends PUBLISHED, DUPLICATE, QUARANTINED or RETRY."""
        stats = stats or Stats()
        # Upstream retries stop this long before the Lambda would be killed, leaving time to
        # publish, quarantine, settle idempotency and report batch item failures.
        deadline = self.monotonic() + remaining_ms() / 1000 - self.deadline_margin_seconds
        items = [self._parse(record) for record in records]
        stats.add("RecordsReceived", len(items))
        groups: dict[str, list[Item]] = {}
        for item in items:
            if item.outcome is Outcome.PENDING:
                groups.setdefault(item.group, []).append(item)

        futures = [
            self._pool.submit(self._prepare_group, group, remaining_ms, deadline) for group in groups.values()
        ]
        for future in futures:
            future.result()
        self._publish_in_rounds(list(groups.values()))
        self._settle(items, stats)
        return items

    def failures(self, items: Iterable[Item]) -> list[dict[str, str]]:
        return [{"itemIdentifier": item.message_id} for item in items if item.outcome is Outcome.RETRY]

    # -- steps -------------------------------------------------------------------------------

    def _parse(self, record: Mapping[str, Any]) -> Item:
        message_id = str(record.get("messageId", ""))
        raw = record.get("body")
        attributes = record.get("attributes") or {}
        item = Item(message_id=message_id, raw=raw if isinstance(raw, str) else "", group=message_id)
        try:
            if not isinstance(raw, str):
                raise Permanent("InvalidIngestMessage", "SQS record has no string body")
            item.ingest = IngestMessage.model_validate_json(raw)
            item.webhook = AppointmentWebhook.model_validate_json(item.ingest.body)
        except ValidationError as exc:
            item.fail(Outcome.QUARANTINED, "InvalidIngestMessage", _summary(exc))
            return item
        except Permanent as exc:
            item.fail(Outcome.QUARANTINED, exc.error_type, str(exc))
            return item
        item.group = str(attributes.get("MessageGroupId") or item.webhook.appointment.id)
        return item

    def _prepare_group(self, group: list[Item], remaining_ms: Callable[[], int], deadline: float) -> None:
        """One group on a worker thread; an unexpected error retries what is left, in order."""
        try:
            self._prepare_group_items(group, remaining_ms, deadline)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose messages or break the order
            self.log("exception", "group failed unexpectedly", error=type(exc).__name__, group=group[0].group)
            _retry_rest(group, "UnexpectedError", f"{type(exc).__name__}: {exc}")

    def _prepare_group_items(
        self, group: list[Item], remaining_ms: Callable[[], int], deadline: float
    ) -> None:
        """Claim, fetch once per appointment, validate and build records for one group, in order."""
        pending: list[Item] = []
        seen: set[str] = set()
        for index, item in enumerate(group):
            assert item.ingest is not None
            dedupe = item.ingest.dedupeId
            if dedupe in seen:  # the same webhook twice in one batch: the first one carries it
                item.fail(Outcome.DUPLICATE, "DuplicateInBatch", "same dedupe id earlier in this batch")
                continue
            seen.add(dedupe)
            try:
                claim = self.idempotency.claim(dedupe, remaining_ms())
            except Exception as exc:  # noqa: BLE001 - the table is unreachable: retry later
                _retry_rest(group[index:], "IdempotencyUnavailable", f"{type(exc).__name__}: {exc}")
                break
            if claim is Claim.DONE:
                item.outcome = Outcome.DUPLICATE
                continue
            if claim is Claim.BUSY:
                _retry_rest(group[index:], "InProgressElsewhere", "another invocation holds this webhook")
                break
            item.claimed = True
            pending.append(item)

        # Coalescing: one fetch per appointment for the whole group, made when the first record
        # that needs it comes up (deletes need none). A retryable failure fails that record and
        # every later one of the group; earlier records (e.g. a delete) still go out.
        fetched: dict[tuple[str, str], Appointment | _FetchFailure | None] = {}
        now = self.clock()
        for index, item in enumerate(pending):
            webhook = item.webhook
            assert webhook is not None and item.ingest is not None
            appointment: Appointment | None = None
            if webhook.type != "AppointmentDelete":
                key = (webhook.appointment.id, webhook.locationId)
                if key not in fetched:
                    fetched[key] = self._fetch(*key, deadline=deadline)
                result = fetched[key]
                if isinstance(result, _FetchFailure):
                    if result.retryable:
                        _retry_rest(pending[index:], result.error_type, result.message)
                        return
                    item.fail(Outcome.QUARANTINED, result.error_type, result.message)
                    continue
                appointment = result
            self._build(item, appointment, now)

    def _fetch(
        self, appointment_id: str, location_id: str, *, deadline: float
    ) -> Appointment | _FetchFailure | None:
        """The appointment, None when it is gone upstream (404), or why it could not be had."""
        try:
            payload = self.source.get_appointment(appointment_id, location_id, deadline=deadline)
        except Exception as exc:  # noqa: BLE001 - classified by the adapter's error_type/retryable
            error_type = str(getattr(exc, "error_type", type(exc).__name__))
            if error_type == "AppointmentNotFound":
                return None  # deleted records from the webhook snapshots
            return _FetchFailure(error_type, str(exc)[:500] or error_type, _is_retryable(exc))
        try:
            appointment = GetAppointmentResponse.model_validate(payload).event
        except ValidationError as exc:
            return _FetchFailure("InvalidAppointment", _summary(exc), retryable=False)
        if appointment.id != appointment_id:
            return _FetchFailure("InvalidAppointment", "upstream returned another appointment id", False)
        return appointment

    def _build(self, item: Item, appointment: Appointment | None, now: datetime) -> None:
        assert item.webhook is not None and item.ingest is not None
        try:
            record = build_record(item.webhook, appointment, received_at=item.ingest.receivedAt, now=now)
            body = record.model_dump_json(exclude_unset=True)
        except ValidationError as exc:
            item.fail(Outcome.QUARANTINED, "InvalidRecord", _summary(exc))
            return
        except ValueError as exc:
            item.fail(Outcome.QUARANTINED, "InvalidRecord", f"{type(exc).__name__}: {exc}")
            return
        outbound = _outbound(record, body, item.message_id, item.ingest.dedupeId)
        size = outbound.payload_bytes
        if size <= MAX_MESSAGE_BYTES:
            item.record, item.outbound = record, outbound
        else:
            item.fail(
                Outcome.QUARANTINED,
                "RecordTooLarge",
                f"record is {size} bytes with its attributes; SNS/SQS accept {MAX_MESSAGE_BYTES}",
            )

    def _publish_in_rounds(self, groups: list[list[Item]]) -> None:
        """Round n publishes the n-th ready record of every group still in good standing."""
        queues = [[i for i in group if i.outcome is Outcome.PENDING] for group in groups]
        while True:
            heads = [(queue, queue.pop(0)) for queue in queues if queue]
            if not heads:
                return
            try:
                failed = self.publisher.publish([item.outbound for _, item in heads if item.outbound])
            except Exception as exc:  # noqa: BLE001 - nothing known to be out: all of them again
                failed = {item.message_id: f"{type(exc).__name__}: {exc}"[:300] for _, item in heads}
            for queue, item in heads:
                if item.message_id in failed:
                    item.fail(Outcome.RETRY, "PublishFailed", failed[item.message_id])
                    _retry_rest(queue, "EarlierRecordFailed", "an earlier record of this appointment failed")
                    queue.clear()
                else:
                    item.outcome = Outcome.PUBLISHED

    def _settle(self, items: list[Item], stats: Stats) -> None:
        """Quarantine, complete or release claims, count outcomes, log one line per item.

        Claims are settled on the pool (one DynamoDB write each, independent of one another), so a
        batch of ten pays about one write round trip instead of ten in a row.
        """
        for item in items:
            if item.outcome is Outcome.QUARANTINED:
                try:
                    self._quarantine(item)
                except Exception as exc:  # noqa: BLE001 - could not park it: keep it on the queue
                    item.fail(Outcome.RETRY, "QuarantineFailed", f"{type(exc).__name__}: {exc}")
        for _ in self._pool.map(self._settle_claim, [i for i in items if i.claimed and i.ingest]):
            pass
        for item in items:
            dedupe = item.ingest.dedupeId if item.ingest else None
            metric = {
                Outcome.PUBLISHED: "RecordsDeleted"
                if item.record and item.record.deleted
                else "RecordsEnriched",
                Outcome.DUPLICATE: "DuplicatesSkipped",
                Outcome.QUARANTINED: "RecordsQuarantined",
                Outcome.RETRY: "RecordsRetried",
            }.get(item.outcome)
            if metric:
                stats.add(metric)
            self.log(
                "warning" if item.outcome in (Outcome.RETRY, Outcome.QUARANTINED) else "info",
                f"record {item.outcome.value}",
                messageId=item.message_id,
                correlation_id=dedupe,
                appointmentId=item.webhook.appointment.id if item.webhook else None,
                locationId=item.webhook.locationId if item.webhook else None,
                errorType=item.error_type,
                errorMessage=item.error_message,
            )

    def _settle_claim(self, item: Item) -> None:
        """Complete (published or quarantined) or release (to be retried) one claim; never raises."""
        assert item.ingest is not None
        dedupe = item.ingest.dedupeId
        try:
            if item.outcome is Outcome.PUBLISHED:
                deleted = bool(item.record and item.record.deleted)
                self.idempotency.complete(dedupe, {"published": True, "deleted": deleted})
            elif item.outcome is Outcome.QUARANTINED:
                self.idempotency.complete(dedupe, {"quarantined": True, "errorType": item.error_type})
            else:
                self.idempotency.release(dedupe, RuntimeError(item.error_type or "failed"))
        except Exception as exc:  # noqa: BLE001 - the outcome stands; the claim expires on its own
            self.log("warning", "idempotency update failed", error=type(exc).__name__, dedupeId=dedupe)

    def _quarantine(self, item: Item) -> None:
        webhook = item.webhook
        self.quarantine.send(
            item.raw,
            error_type=item.error_type or "Unknown",
            error_message=item.error_message or "",
            source_message_id=item.message_id,
            extra={
                "dedupeId": item.ingest.dedupeId if item.ingest else None,
                "appointmentId": webhook.appointment.id if webhook else None,
                "locationId": webhook.locationId if webhook else None,
                "eventType": webhook.type if webhook else None,
            },
            now=self.clock(),
        )


def _retry_rest(items: Iterable[Item], error_type: str, message: str) -> None:
    for item in items:
        if item.outcome is Outcome.PENDING:
            item.fail(Outcome.RETRY, error_type, message)


def _summary(exc: ValidationError) -> str:
    """Field paths and messages only: never the input values (they may hold personal data)."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors(include_input=False)[:5]
    )[:500]


def _outbound(record: EnrichedRecord, body: str, message_id: str, dedupe_id: str) -> OutboundMessage:
    appointment = record.appointment
    return OutboundMessage(
        entry_id=message_id,
        body=body,
        attributes={
            "eventType": record.eventType,
            "locationId": record.locationId,
            "calendarId": appointment.calendarId or "",
            "appointmentStatus": appointment.appointmentStatus or "",
            "schemaVersion": record.schemaVersion,
        },
        group_id=record.appointmentId,
        dedupe_id=dedupe_id,
    )
