"""Steps 2-4 for one FIFO group (one appointment), in batch order, on a worker thread:
claim each message, settle a reconcile message whose state is already out without a fetch
(``Covered``), fetch the appointment once for the whole group (coalescing; deletes need
none), check it, track its change, build and measure each record, then write the ledger.

A record that fails retryably fails every later record of its group (they return to the queue
with it, in order); earlier records still go out. Permanent failures are quarantined.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ..budget.spend import receiving
from ..enrichment import build_record, is_deleted_flag
from ..ledger.base import (
    DELETED_BY_FETCH,
    DELETED_BY_NOT_FOUND,
    DELETED_BY_WEBHOOK,
    BatchRead,
    LedgerConflict,
)
from ..models import Appointment
from ..outbound import MAX_MESSAGE_BYTES, outbound_message
from ..related import RelatedResult
from ..wire import try_upstream_time
from .fetch import AppointmentSource, FetchFailure, FetchResult, NotFound, fetch, not_found_is_final
from .idempotency import Claim, Idempotency
from .items import Covered, Item, Outcome, ParsedItem, Ready, retry_rest
from .parse import validation_summary
from .track import NoTracking, Track, Tracker

if TYPE_CHECKING:  # ``enrich.related`` is imported by ENRICH_RELATED builds only (``wiring``)
    from .related import RelatedBatch


def claim_group(
    idempotency: Idempotency,
    group: list[ParsedItem],
    remaining_ms: Callable[[], int],
    receipts: frozenset[str] = frozenset(),
) -> list[ParsedItem]:
    """Step 2: the items this invocation may process, in order; the rest are settled here.
    ``receipts``: dedupe ids the ledger says were settled already (duplicates, no claim needed)."""
    claimed: list[ParsedItem] = []
    seen: set[str] = set()
    for index, entry in enumerate(group):
        item, dedupe = entry.item, entry.dedupe_id
        if dedupe in seen:  # the same webhook twice in one batch: the first one carries it
            item.fail(Outcome.DUPLICATE, "DuplicateInBatch", "same dedupe id earlier in this batch")
            continue
        seen.add(dedupe)
        if dedupe in receipts:
            item.outcome = Outcome.DUPLICATE
            continue
        try:
            claim = idempotency.claim(dedupe, remaining_ms())
        except Exception as exc:  # noqa: BLE001 - the table is unreachable: retry later
            retry_rest(group[index:], "IdempotencyUnavailable", f"{type(exc).__name__}: {exc}")
            break
        if claim is Claim.DONE:
            item.outcome = Outcome.DUPLICATE
            continue
        if claim is Claim.BUSY:
            retry_rest(group[index:], "InProgressElsewhere", "another invocation holds this webhook")
            break
        item.claimed = True
        claimed.append(entry)
    return claimed


@dataclass(frozen=True)
class GroupContext:
    """What one batch shares with its groups."""

    remaining_ms: Callable[[], int]
    deadline: float
    read: Callable[[], BatchRead]  # the batch's ledger read (waits for it)
    now: datetime
    related: RelatedBatch | None = None  # ENRICH_RELATED: the batch's shared related-entity answers


class GroupPreparer:
    """Steps 2-4 for one group; stateless across groups, so one instance serves a whole batch."""

    def __init__(
        self,
        source: AppointmentSource,
        idempotency: Idempotency,
        tracker: Tracker | NoTracking,
        *,
        not_found_grace_seconds: float,
    ) -> None:
        self.source = source
        self.idempotency = idempotency
        self.tracker = tracker
        self.grace = not_found_grace_seconds

    def prepare(self, group: list[ParsedItem], context: GroupContext) -> list[Track]:
        """The group's tracks, written ahead; ``Tracker.announce`` each once its records went out.

        A group whose messages are all on their first receive waits for no upstream budget behind
        a backlog its container knows of: it takes its place in the location's queue at once; one
        back at its place that misses its token comes back once in a moment
        (``budget.spend.receiving``)."""
        with receiving(max([1, *(entry.item.receives for entry in group)])):
            return self._prepare(group, context)

    def _read(
        self, group: list[ParsedItem], context: GroupContext
    ) -> tuple[BatchRead | None, dict[tuple[str, str], FetchResult]]:
        """The batch's ledger read (None: it failed, the group retries) and what was fetched
        while it was in flight (``fetch_early``)."""
        fetched: dict[tuple[str, str], FetchResult] = {}
        early = fetch_early(group) if self.tracker.enabled else None
        if early is not None:
            fetched[early] = fetch(self.source, *early, deadline=context.deadline)
        try:
            return context.read(), fetched
        except Exception as exc:  # noqa: BLE001 - no ledger, no change: retry later
            retry_rest(group, "LedgerUnavailable", f"{type(exc).__name__}: {exc}")
            return None, fetched

    def _prepare(self, group: list[ParsedItem], context: GroupContext) -> list[Track]:
        batch, fetched = self._read(group, context)
        if batch is None:
            return []
        claimed = claim_group(self.idempotency, group, context.remaining_ms, batch.receipts)
        if not claimed:
            return []
        known = batch.entries
        tracks: dict[str, Track] = {}
        for index, entry in enumerate(claimed):
            ref = entry.parsed.ref
            if ref.appointment_id not in tracks:
                tracks[ref.appointment_id] = Track(ref, known.get(ref.appointment_id))
            track = tracks[ref.appointment_id]
            if self._covered(entry, track):
                continue
            appointment: Appointment | None = None
            result: FetchResult | None = None
            if ref.type != "AppointmentDelete":
                key = (ref.appointment_id, ref.location_id)
                if key not in fetched:
                    fetched[key] = fetch(self.source, *key, deadline=context.deadline)
                result = fetched[key]
                problem = self._problem(entry, result, track, context.now)
                if problem is not None:
                    if problem.retryable:
                        retry_rest(
                            claimed[index:],
                            problem.error_type,
                            problem.message,
                            throttled_for=problem.throttled_for,
                        )
                        break
                    entry.item.fail(Outcome.QUARANTINED, problem.error_type, problem.message)
                    continue
                appointment = result if isinstance(result, Appointment) else None
            related = None
            if context.related is not None:
                answer = context.related.resolve(
                    appointment or entry.parsed.webhook.appointment, ref.location_id
                )
                # ``Transient``: like the appointment's own fetch, retry the rest in order.
                if not isinstance(answer, RelatedResult):
                    retry_rest(
                        claimed[index:],
                        answer.error_type,
                        answer.message,
                        throttled_for=answer.throttled_for,
                    )
                    break
                related = answer
            self._build(
                entry, appointment, track, context.now, related, deleted_by=_why_deleted(ref.type, result)
            )
        return self._save(tracks, claimed)

    def _covered(self, entry: ParsedItem, track: Track) -> bool:
        """A reconcile duplicate of a state already out: no fetch, no record (``Track.covers``)."""
        parsed = entry.parsed
        date = try_upstream_time(parsed.webhook.appointment.dateUpdated)
        deleted = parsed.ref.type == "AppointmentDelete"
        if not self.tracker.enabled or not track.covers(parsed.ingest.trigger, deleted, date):
            return False
        entry.item.stage = Covered(parsed)
        return True

    def _problem(
        self, entry: ParsedItem, result: FetchResult, track: Track, now: datetime
    ) -> FetchFailure | None:
        """Why this fetch result cannot become a record now (None: it can)."""
        if isinstance(result, FetchFailure):
            return result
        if isinstance(result, NotFound):
            if not_found_is_final(entry.parsed.ingest.received_at, now, self.grace):
                return None  # a tombstone from the webhook's snapshot
            return FetchFailure(
                "NotFoundWithinGrace", f"upstream 404 within {self.grace:g} s of receipt: may lag", True
            )
        if self.tracker.enabled and track.stale(try_upstream_time(result.dateUpdated)):
            return FetchFailure(
                "StaleRead", "upstream returned an older dateUpdated than already published", True
            )
        return None

    def _build(
        self,
        entry: ParsedItem,
        appointment: Appointment | None,
        track: Track,
        now: datetime,
        related: RelatedResult | None = None,
        *,
        deleted_by: str | None = None,
    ) -> None:
        item, parsed = entry.item, entry.parsed
        webhook = parsed.webhook
        step = None
        if self.tracker.enabled:
            live = appointment is not None and not is_deleted_flag(appointment)
            published = (
                appointment.model_dump(mode="json", exclude_unset=True) if live and appointment else None
            )
            date = try_upstream_time(
                appointment.dateUpdated if appointment else webhook.appointment.dateUpdated
            )
            step = track.propose(entry.dedupe_id, published, date, deleted_by)
        try:
            record = build_record(
                webhook,
                appointment,
                received_at=parsed.ingest.received_at,
                now=now,
                webhook_id=parsed.ref.webhook_id,
                trigger=parsed.ingest.trigger,
                change=step.change if step else None,
                related=related,
                sequence=step.sequence if step else None,
            )
            outbound = outbound_message(record, item.message_id, entry.dedupe_id)
        except ValidationError as exc:
            item.fail(Outcome.QUARANTINED, "InvalidRecord", validation_summary(exc))
            return
        except ValueError as exc:
            item.fail(Outcome.QUARANTINED, "InvalidRecord", f"{type(exc).__name__}: {exc}")
            return
        size = outbound.payload_bytes
        if size > MAX_MESSAGE_BYTES:
            item.fail(
                Outcome.QUARANTINED,
                "RecordTooLarge",
                f"record is {size} bytes with its attributes; SNS/SQS accept {MAX_MESSAGE_BYTES}",
            )
            return
        if step is not None:
            track.commit(step, item)
        item.stage = Ready(parsed, record, outbound, step.change if step else None)

    def _save(self, tracks: dict[str, Track], claimed: list[ParsedItem]) -> list[Track]:
        """Write each moved track before anything of it is published; on failure, its records retry."""
        saved: list[Track] = []
        for appointment_id, track in tracks.items():
            try:
                self.tracker.save(track)
            except Exception as exc:  # noqa: BLE001 - conflict or outage: nothing of it went out yet
                error_type = exc.error_type if isinstance(exc, LedgerConflict) else "LedgerUnavailable"
                mine = [e.item for e in claimed if e.parsed.ref.appointment_id == appointment_id]
                retry_rest(_ready(mine), error_type, f"{type(exc).__name__}: {exc}"[:300])
                continue
            saved.append(track)
        return saved


def fetch_early(group: list[ParsedItem]) -> tuple[str, str] | None:
    """The appointment a group fetches beside the ledger read, not after it, or None.

    Asked with the ledger on (its claims cost no request; without it the read is empty at once, an
    idempotency store's claim comes first), and only for a group of webhooks on their first
    receive. A duplicate of a settled delivery (what the read finds, and would spare the fetch)
    is then a sender's repeat of a webhook past the ingest queue's five-minute deduplication:
    rare, and it costs one upstream request of the budget. Otherwise every batch would wait a
    ledger round trip before its first fetch. Redeliveries (a failed or crashed attempt) and
    reconcile messages (often covered: no fetch at all) wait for the read.
    """
    if any(e.item.receives > 1 or e.parsed.ingest.trigger != "webhook" for e in group):
        return None
    for entry in group:
        ref = entry.parsed.ref
        if ref.type != "AppointmentDelete":
            return ref.appointment_id, ref.location_id
    return None  # deletes need no fetch


def _why_deleted(event_type: str, result: FetchResult | None) -> str:
    """What a tombstone of this record would stand on (``ledger.base.DeletedBy``)."""
    if event_type == "AppointmentDelete":
        return DELETED_BY_WEBHOOK
    return DELETED_BY_NOT_FOUND if isinstance(result, NotFound) else DELETED_BY_FETCH


def _ready(items: list[Item]) -> list[Item]:
    return [item for item in items if item.ready is not None or isinstance(item.stage, Covered)]
