"""Step 4: the ``change`` of each record, against the ledger, and the ledger write that follows.

A ``Track`` is one appointment's ledger state as this batch advances it, record by record, so
N coalesced webhooks give the first the change and the rest ``unchanged``. A delivery whose
dedupe id the ledger already holds gets the change it was first recorded with (a redelivery
after the ledger write: a crash, or a failed publish) and does not move the state again.

The write happens before publishing (write-ahead): a crash between the two leaves the change
in the ledger for the retry to publish, never a gap. It is conditional on the revision read,
so two writers, or a state newer than the one diffed against, cannot both win. The state it
writes is ``pending``: only once the record is published is it promoted to the announced state
(a second conditional write), so a message that never publishes (dead-lettered) leaves the
announced state as it was, and the next record of the appointment reports its change against
what consumers last saw; a redrive finds its delivery in ``recent`` and publishes the original
change and ``sequence``.

With the ledger on, that conditional write is also the claim (``ReceiptClaims``): of two
invocations holding one appointment's messages only one can write, and only the writer
publishes. A settled delivery is remembered so that a later delivery of it is a duplicate: the
announce write itself lists the deliveries whose records went out (``settled`` in the item, read
with the batch's entries: no write of its own); any other settled delivery (quarantined,
covered, its announce failed or the item's list is full) leaves a small receipt item, read in
the same request. The time-bounded duplicate window is kept (both expire like idempotency
records).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ..changes import Change, diff, is_stale
from ..ledger.base import DELETED_BY_WEBHOOK, RECENT_LIMIT, BatchRead, Ledger, LedgerEntry, LedgerState
from ..wire import WebhookRef
from .idempotency import Claim
from .items import Item, Outcome


@dataclass(frozen=True)
class Step:
    """A proposed advance: committed only once the record it belongs to is known to go out."""

    change: Change
    state: LedgerState | None  # None: a redelivery, the ledger already has its state
    delivery: tuple[str, Mapping[str, Any]]  # (dedupe id, change) for the item's ``recent``
    sequence: int | None  # the record's ``sequence`` (None: a redelivery recorded without one)


class Track:
    """One appointment's ledger state within one batch.

    The base of every diff is the *announced* state (the last one published): a state written
    ahead of a publish that never succeeded is ``pending`` and is never diffed against. After the
    publish, ``announcement`` promotes the state of the last record that went out.
    """

    def __init__(self, ref: WebhookRef, read: LedgerEntry | None) -> None:
        self.appointment_id = ref.appointment_id
        self.location_id = ref.location_id
        self.read = read
        self.current: LedgerState | None = read.state if read is not None else None
        self.sequence = read.sequence if read is not None else 0
        self.pending: LedgerState | None = None  # the state this batch reached (None: none)
        self.dirty = False
        self.written: LedgerEntry | None = None  # the item as this batch wrote it ahead
        self.deliveries: list[tuple[str, Mapping[str, Any]]] = []  # this batch's, in order
        self.sequences: dict[str, int] = {}
        self.steps: list[tuple[Item, LedgerState | None]] = []  # each record and the state it announces

    def stale(self, fetched_date_updated: datetime | None) -> bool:
        current = self.current
        if current is None or current.repairable:  # a live read after a 404 tombstone repairs it
            return False
        return is_stale(fetched_date_updated, current.date_updated, ledger_deleted=current.deleted)

    def covers(self, trigger: str, listed_deleted: bool, listed_date_updated: datetime | None) -> bool:
        """True when a reconcile message adds nothing to the state this track holds: the announced
        one, or the one an earlier record of this batch announces (its fate is shared in the
        publish rounds). Its dateUpdated is not newer, its deleted flag agrees, and the state is
        not a 404 tombstone (every live listing of one must publish, a repair). A ``backfill`` is
        an operator's explicit request and always publishes; a missing, unannounced or
        pending-only entry (``current`` None) is processed as usual."""
        current = self.current
        if trigger != "reconcile" or current is None or current.date_updated is None:
            return False
        if listed_date_updated is None or current.repairable or listed_deleted != current.deleted:
            return False
        return listed_date_updated <= current.date_updated

    def propose(
        self,
        dedupe_id: str,
        published: Mapping[str, Any] | None,
        date_updated: datetime | None,
        deleted_by: str | None = None,
    ) -> Step:
        """The change of one record: ``published`` is its appointment object (None: a tombstone)."""
        current = self.current
        read = self.read
        stored = read.change_for(dedupe_id) if read is not None else None
        if stored is not None and read is not None:
            return Step(Change.from_json(stored), None, (dedupe_id, stored), read.sequences.get(dedupe_id))
        earlier = dict(current.appointment) if current is not None else None
        deleted = published is None
        change = diff(
            earlier,
            published or {},
            deleted=deleted,
            earlier_deleted=current.deleted if current is not None else False,
        )
        if deleted:  # a tombstone keeps the last published fields and never moves time back
            known = [d for d in (current.date_updated if current else None, date_updated) if d is not None]
            state = LedgerState(
                max(known) if known else None,
                True,
                current.appointment if current is not None else {},
                deleted_by or DELETED_BY_WEBHOOK,
            )
        else:
            state = LedgerState(date_updated, False, dict(published or {}))
        return Step(change, state, (dedupe_id, change.as_json()), self.sequence + 1)

    def commit(self, step: Step, item: Item) -> None:
        self.deliveries.append(step.delivery)
        if step.sequence is not None:
            self.sequences[step.delivery[0]] = step.sequence
            self.sequence = max(self.sequence, step.sequence)
        announces = step.state
        if step.state is not None:
            self.current, self.pending, self.dirty = step.state, step.state, True
        elif self.read is not None and self.read.pending is not None:
            announces = self.read.pending  # a redelivery of the write-ahead: its state is pending
        self.steps.append((item, announces))

    def to_write(self) -> LedgerEntry | None:
        """The item to write ahead of the publish (None: nothing moved): the announced state as
        read, this batch's state as ``pending``, its deliveries as ``recent`` (redeliveries
        included, so a second retry still finds them)."""
        if not self.dirty:
            return None
        recent = tuple(self.deliveries[-RECENT_LIMIT:])
        read = self.read
        base = read or LedgerEntry(self.appointment_id, self.location_id, None, False, announced=False)
        return replace(
            base,
            location_id=self.location_id,
            pending=self.pending,
            recent=recent,
            sequence=self.sequence,
            sequences={d: self.sequences[d] for d, _ in recent if d in self.sequences},
        )

    def announcement(self) -> LedgerEntry | None:
        """After the publish: the item with the state of the last record that went out (every one
        before it went out too) as announced; None when there is nothing to promote."""
        state: LedgerState | None = None
        last = -1
        for index, (item, announces) in enumerate(self.steps):
            if item.outcome not in _WENT_OUT:
                break
            if announces is not None:
                state, last = announces, index
        if state is None:
            return None
        held = self.written or self.read
        if held is None:
            return None
        finished = all(announces is None for _, announces in self.steps[last + 1 :])
        if self.written is None and self.read is not None:
            finished = True  # only redeliveries: their pending state is now out
        went_out = tuple(
            item.dedupe_id
            for item, _ in self.steps
            if item.outcome in _WENT_OUT and item.dedupe_id is not None
        )
        return replace(held.announce(state, keep_pending=not finished), settle=went_out)


_WENT_OUT = (Outcome.PUBLISHED, Outcome.SUPPRESSED)


class Tracker:
    """Change tracking on a ledger: read a batch's entries in one call, write each track ahead of
    its publish, then announce what went out."""

    enabled = True

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def read(self, appointment_ids: Sequence[str], dedupe_ids: Sequence[str]) -> BatchRead:
        return self.ledger.read(appointment_ids, dedupe_ids) if appointment_ids else BatchRead()

    def remember(self, location_ids: Sequence[str]) -> None:
        """The batch's locations, for the reconciler (``EnricherService`` starts it beside the
        ledger read, so a new location's write overlaps the read and the fetch)."""
        self.ledger.remember_locations(location_ids)

    def save(self, track: Track) -> None:
        """Write a track this batch moved (``LedgerConflict`` when someone else moved it first).
        Its location is known to the ledger first (a no-op once ``remember`` has written it)."""
        entry = track.to_write()
        if entry is not None:
            self.ledger.remember_locations([track.location_id])
            self.ledger.save(entry)
            track.written = replace(entry, revision=entry.revision + 1)

    def announce(self, track: Track) -> frozenset[str]:
        """Promote what was published (conditional like every write; ``LedgerConflict`` if moved).
        Returns the deliveries the write settled (``settled``): they need no receipt item."""
        entry = track.announcement()
        if entry is None:
            return frozenset()
        left = self.ledger.save(entry)
        return frozenset(entry.settle) - frozenset(left)


class NoTracking:
    """``LEDGER_TABLE_NAME`` unset: records carry no ``change``."""

    enabled = False

    def read(self, appointment_ids: Sequence[str], dedupe_ids: Sequence[str]) -> BatchRead:
        return BatchRead()

    def remember(self, location_ids: Sequence[str]) -> None:
        return None

    def save(self, track: Track) -> None:
        return None

    def announce(self, track: Track) -> frozenset[str]:
        return frozenset()


class ReceiptClaims:
    """The ``Idempotency`` port on the ledger: claims cost nothing (the batch read found the
    receipts; the conditional ledger write excludes a second writer), settling writes a receipt,
    releasing has nothing to undo."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def claim(self, dedupe_id: str, remaining_ms: int) -> Claim:
        return Claim.NEW

    def complete(self, dedupe_id: str, result: dict[str, Any]) -> None:
        self.ledger.put_receipt(dedupe_id, _receipt_outcome(result))

    def complete_all(self, results: Mapping[str, dict[str, Any]]) -> None:
        """``complete`` for a whole batch in one request (``BulkCompletion``)."""
        if results:
            self.ledger.put_receipts({d: _receipt_outcome(r) for d, r in results.items()})

    def release(self, dedupe_id: str, reason: Exception) -> None:
        return None


def _receipt_outcome(result: Mapping[str, Any]) -> str:
    if result.get("quarantined"):
        return "quarantined"
    if result.get("covered"):
        return "covered"
    return "published" if result.get("published") else "suppressed"
