"""Step 4: the ``change`` of each record, against the ledger, and the ledger write that follows.

A ``Track`` is one appointment's ledger state as this batch advances it, record by record, so
N coalesced webhooks give the first the change and the rest ``unchanged``. A delivery whose
dedupe id the ledger already holds gets the change it was first recorded with (a redelivery
after the ledger write: a crash, or a failed publish) and does not move the state again.

The write happens before publishing (write-ahead): a crash between the two leaves the change
in the ledger for the retry to publish, never a gap. It is conditional on the revision read,
so two writers, or a state newer than the one diffed against, cannot both win.

With the ledger on, that conditional write is also the claim (``ReceiptClaims``): of two
invocations holding one appointment's messages only one can write, and only the writer
publishes. A settled delivery leaves a small receipt item, read with the batch's entries, so a
later delivery of it is a duplicate: one read and one write per message where the idempotency
table took two writes, and the time-bounded duplicate window is kept (receipts expire like
idempotency records).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ..changes import Change, diff, is_stale
from ..ledger.base import RECENT_LIMIT, BatchRead, Ledger, LedgerEntry
from ..wire import WebhookRef
from .idempotency import Claim


@dataclass(frozen=True)
class Step:
    """A proposed advance: committed only once the record it belongs to is known to go out."""

    change: Change
    entry: LedgerEntry | None  # None: a redelivery, the ledger already has its state
    delivery: tuple[str, Mapping[str, Any]]  # (dedupe id, change) for the item's ``recent``


class Track:
    """One appointment's ledger state within one batch."""

    def __init__(self, ref: WebhookRef, read: LedgerEntry | None) -> None:
        self.appointment_id = ref.appointment_id
        self.location_id = ref.location_id
        self.read = read
        self.current = read
        self.dirty = False
        self.deliveries: list[tuple[str, Mapping[str, Any]]] = []  # this batch's, in order

    def stale(self, fetched_date_updated: datetime | None) -> bool:
        current = self.current
        if current is None:
            return False
        return is_stale(fetched_date_updated, current.date_updated, ledger_deleted=current.deleted)

    def propose(
        self,
        dedupe_id: str,
        published: Mapping[str, Any] | None,
        date_updated: datetime | None,
    ) -> Step:
        """The change of one record: ``published`` is its appointment object (None: a tombstone)."""
        current = self.current
        stored = self.read.change_for(dedupe_id) if self.read is not None else None
        if stored is not None:
            return Step(Change.from_json(stored), None, (dedupe_id, stored))
        earlier = dict(current.appointment) if current is not None else None
        deleted = published is None
        change = diff(
            earlier,
            published or {},
            deleted=deleted,
            earlier_deleted=current.deleted if current is not None else False,
        )
        base = current or LedgerEntry(self.appointment_id, self.location_id, None, False)
        if deleted:  # a tombstone keeps the last published fields and never moves time back
            known = [d for d in (base.date_updated, date_updated) if d is not None]
            entry = replace(base, deleted=True, date_updated=max(known) if known else None)
        else:
            entry = replace(base, deleted=False, date_updated=date_updated, appointment=dict(published or {}))
        entry = replace(
            entry, location_id=self.location_id, revision=self.read.revision if self.read is not None else 0
        )
        return Step(change, entry, (dedupe_id, change.as_json()))

    def commit(self, step: Step) -> None:
        self.deliveries.append(step.delivery)
        if step.entry is not None:
            self.current, self.dirty = step.entry, True

    def to_write(self) -> LedgerEntry | None:
        """The item to write (None: nothing moved): the state reached, with this batch's
        deliveries as ``recent`` (redeliveries included, so a second retry still finds them)."""
        if not self.dirty or self.current is None:
            return None
        return replace(self.current, recent=tuple(self.deliveries[-RECENT_LIMIT:]))


class Tracker:
    """Change tracking on a ledger: read a batch's entries in one call, write each track once."""

    enabled = True

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def read(self, appointment_ids: Sequence[str], dedupe_ids: Sequence[str]) -> BatchRead:
        return self.ledger.read(appointment_ids, dedupe_ids) if appointment_ids else BatchRead()

    def save(self, track: Track) -> None:
        """Write a track this batch moved (``LedgerConflict`` when someone else moved it first)."""
        entry = track.to_write()
        if entry is not None:
            self.ledger.remember_location(track.location_id)
            self.ledger.save(entry)


class NoTracking:
    """``LEDGER_TABLE_NAME`` unset: records carry no ``change``."""

    enabled = False

    def read(self, appointment_ids: Sequence[str], dedupe_ids: Sequence[str]) -> BatchRead:
        return BatchRead()

    def save(self, track: Track) -> None:
        return None


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
    return "published" if result.get("published") else "suppressed"
