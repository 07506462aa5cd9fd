"""The ledger: what was last published for each appointment, so every record can say what changed
and the reconciler can tell which appointments the webhooks missed.

Port and pure rules only (no boto3): ``dynamo_ledger.DynamoLedger`` is the DynamoDB adapter.

Item layout (a contract with the reconciler; key ``id`` (S), TTL ``expiration`` (N)):

* ``id = "appointment#<appointmentId>"``: ``locationId`` (S); ``dateUpdated`` (S, RFC 3339 UTC
  with milliseconds, so it also sorts as a string; absent when unknown); ``deleted`` (BOOL);
  ``appointment`` (B, zlib-compressed JSON: the appointment object as last published, what
  ``change`` diffs against; compressed with a preset dictionary (``ledger/compression.py``) to
  keep the item under 1 KB, one write unit, when it can); ``recent`` (S, JSON
  ``[[dedupeId, change], ...]``: the deliveries of the batch that last wrote the item, so a
  redelivery gets the same ``change``; see ``RECENT_LIMIT``); ``revision`` (N, for conditional
  writes); ``expiration`` (N, epoch seconds: see ``ledger_expiration``).
  The fields above are the *announced* state: the last one whose record was published.
  ``pending`` (B, zlib JSON ``{"dateUpdated", "deleted", "deletedBy", "appointment"}``,
  compressed against the announced appointment: it costs only what differs) is a
  state written ahead of its publish and promoted to the announced fields once the publish
  succeeded; ``announced`` (BOOL, only ever written ``false``) marks an item none of whose states
  was published yet (treated as missing). ``deletedBy`` (S): why a tombstone exists
  (``webhook``, ``fetched``, ``notFound``; see ``DeletedBy``). ``sequence`` (N): the last record
  sequence handed out; ``sequences`` (S, JSON ``{dedupeId: sequence}``) those of ``recent``.
  ``settled`` (B, 12 bytes per delivery: ``settled_key`` then the expiry as a big-endian uint32):
  the deliveries whose records went out, written by the announce write itself (the receipts of
  published deliveries, folded into the item: no write of their own). At most ``SETTLED_LIMIT``
  unexpired ones; a delivery that does not fit gets a receipt item like any other.
* ``id = "locations"``: ``locationIds`` (SS), every location the ledger has seen; a location is
  added before the first item of any of its appointments is written, so an item read proves its
  location is there (``DynamoLedger`` skips writing those).
* ``id = "receipt#<dedupeId>"``: ``outcome`` (S: published, suppressed, covered or quarantined),
  ``expiration`` (N): a delivery that was settled and is not in its appointment's ``settled``
  (quarantined, covered, or its announce write failed or was full); a later delivery of it is a
  duplicate. With the ledger on, these and ``settled`` replace the idempotency table's claims
  (see ``enrich.track``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from ..errors import EnricherError
from ..wire import try_upstream_time

APPOINTMENT_KEY_PREFIX: Final = "appointment#"
LOCATIONS_KEY: Final = "locations"
RECEIPT_KEY_PREFIX: Final = "receipt#"
MAX_KEYS_PER_READ: Final = 100  # BatchGetItem's limit
# Deliveries of the batch that last wrote the item, with their change. A FIFO group is blocked
# while one of its messages awaits a retry, so whatever comes back to be retried is from that
# batch: a batch's worth (SQS FIFO: at most 10) is all a redelivery can need.
RECENT_LIMIT: Final = 10
# Settled deliveries kept in the item: 12 bytes each, so an item holding an announced and a
# pending appointment and ten of them stays within one write unit (``ledger/compression.py``).
# An appointment changes a few times a day; one changed more often within the receipts' window
# gets receipt items for the rest until its oldest expire.
SETTLED_LIMIT: Final = 10
SETTLED_KEY_BYTES: Final = 8
# The reconciler's window bounds (``RECONCILE_LOOKBACK_DAYS``, ``RECONCILE_LOOKAHEAD_DAYS``): it
# lists an appointment from its start minus the look-ahead until its start plus the look-back.
MAX_RECONCILE_LOOKBACK_DAYS: Final = 366
MAX_RECONCILE_LOOKAHEAD_DAYS: Final = 731
_TTL_MARGIN_DAYS: Final = 30
# An item outlives every listing of its appointment, or a far-future appointment would come back
# as ``created`` once its item expired: at least the longest look-ahead (plus a month) from the
# write, and at least the longest look-back (plus a month) past the appointment's start (for one
# further ahead than any look-ahead, e.g. booked three years out). See ``ledger_expiration``.
DEFAULT_LEDGER_TTL_SECONDS: Final = (MAX_RECONCILE_LOOKAHEAD_DAYS + _TTL_MARGIN_DAYS) * 86_400
TTL_PAST_START_SECONDS: Final = (MAX_RECONCILE_LOOKBACK_DAYS + _TTL_MARGIN_DAYS) * 86_400
# Why a tombstone exists: a delete webhook, a fetch or listing that said ``deleted: true`` (both
# stay until a newer ``dateUpdated``), or an upstream 404 past the grace (repaired by any live read).
DELETED_BY_WEBHOOK: Final = "webhook"
DELETED_BY_FETCH: Final = "fetched"
DELETED_BY_NOT_FOUND: Final = "notFound"


def appointment_key(appointment_id: str) -> str:
    return APPOINTMENT_KEY_PREFIX + appointment_id


def settled_key(dedupe_id: str) -> bytes:
    """A delivery's key in ``settled``: 64 bits of BLAKE2b (a collision between two deliveries
    of one appointment within two days is about 2^-60 likely: far below any other failure)."""
    return hashlib.blake2b(dedupe_id.encode(), digest_size=SETTLED_KEY_BYTES).digest()


def fold_settled(
    held: Mapping[bytes, int],
    dedupe_ids: Iterable[str],
    *,
    now: int,
    expires: int,
    limit: int = SETTLED_LIMIT,
) -> tuple[dict[bytes, int], tuple[str, ...]]:
    """``held`` without what expired by ``now``, plus ``dedupe_ids`` (expiring at ``expires``)
    while there is room; returns the new map and the ids that did not fit (they need receipts)."""
    settled = {key: until for key, until in held.items() if until > now}
    left: list[str] = []
    for dedupe_id in dict.fromkeys(dedupe_ids):
        key = settled_key(dedupe_id)
        if key in settled or len(settled) < limit:
            settled[key] = max(expires, settled.get(key, 0))
        else:
            left.append(dedupe_id)
    return settled, tuple(left)


def ledger_time(moment: datetime) -> str:
    """RFC 3339 UTC, always with milliseconds: equal-width strings compare as instants do."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_ledger_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True)
class LedgerState:
    """One state of an appointment: announced (published) or pending (written ahead)."""

    date_updated: datetime | None
    deleted: bool
    appointment: Mapping[str, Any] = field(default_factory=dict)
    deleted_by: str | None = None

    @property
    def repairable(self) -> bool:
        """A 404 tombstone: any live read of the appointment brings it back."""
        return self.deleted and self.deleted_by == DELETED_BY_NOT_FOUND


@dataclass(frozen=True)
class LedgerEntry:
    """One appointment as last published. ``revision`` 0 means the ledger holds no item yet.

    ``date_updated``, ``deleted``, ``appointment`` and ``deleted_by`` are the announced state
    (meaningless when ``announced`` is false); ``pending`` a state not yet known to be published.
    """

    appointment_id: str
    location_id: str
    date_updated: datetime | None
    deleted: bool
    appointment: Mapping[str, Any] = field(default_factory=dict)
    recent: tuple[tuple[str, Mapping[str, Any]], ...] = ()  # (dedupe id, change), oldest first
    revision: int = 0
    deleted_by: str | None = None
    announced: bool = True
    pending: LedgerState | None = None
    sequence: int = 0  # the last record sequence handed out (0: none yet)
    sequences: Mapping[str, int] = field(default_factory=dict)  # of ``recent``'s deliveries
    settled: Mapping[bytes, int] = field(default_factory=dict)  # ``settled_key`` -> expiry (epoch s)
    settle: tuple[str, ...] = ()  # deliveries this write marks settled (their records went out)

    @property
    def state(self) -> LedgerState | None:
        """The announced state; None when nothing of this appointment was published yet."""
        if not self.announced:
            return None
        return LedgerState(self.date_updated, self.deleted, self.appointment, self.deleted_by)

    def announce(self, state: LedgerState, *, keep_pending: bool) -> LedgerEntry:
        """This entry with ``state`` as its announced state (its record went out)."""
        return replace(
            self,
            date_updated=state.date_updated,
            deleted=state.deleted,
            appointment=dict(state.appointment),
            deleted_by=state.deleted_by,
            announced=True,
            pending=self.pending if keep_pending else None,
        )

    def change_for(self, dedupe_id: str) -> Mapping[str, Any] | None:
        """The ``change`` a delivery with this dedupe id was recorded with, if it is recent."""
        found: Mapping[str, Any] | None = None
        for seen, change in self.recent:
            if seen == dedupe_id:
                found = change
        return found


def ledger_expiration(now: datetime, ttl_seconds: int, entry: LedgerEntry) -> int:
    """The item's TTL (epoch seconds): ``ttl_seconds`` after ``now``, or ``TTL_PAST_START_SECONDS``
    after the latest ``startTime`` the item holds (announced or pending) when that is later."""
    expires = int(now.timestamp()) + ttl_seconds
    held = [entry.appointment, entry.pending.appointment if entry.pending is not None else {}]
    for appointment in held:
        start = try_upstream_time(appointment.get("startTime"))
        if start is not None:
            expires = max(expires, int(start.timestamp()) + TTL_PAST_START_SECONDS)
    return expires


@dataclass(frozen=True)
class BatchRead:
    """What one batch needs from the ledger, read in one call."""

    entries: Mapping[str, LedgerEntry] = field(default_factory=dict)
    receipts: frozenset[str] = frozenset()  # dedupe ids already settled (receipt or ``settled``)


class LedgerConflict(EnricherError):
    """The item changed since it was read (another writer, or a newer state): retry the message."""

    error_type = "LedgerConflict"
    retryable = True


class UnprocessedKeys(EnricherError, RuntimeError):
    """A DynamoDB batch read left keys unprocessed after its retries: try again later."""

    error_type = "LedgerUnavailable"
    retryable = True


class UnprocessedWrites(EnricherError, RuntimeError):
    """A DynamoDB batch write left items unprocessed after its retries."""

    error_type = "LedgerUnavailable"
    retryable = True


class LedgerReader(Protocol):
    """What the reconciler reads."""

    def entries(self, appointment_ids: Sequence[str]) -> dict[str, LedgerEntry]:
        """Entries by appointment id; ids the ledger does not hold are absent."""
        ...

    def known_locations(self) -> list[str]:
        """Every location id the ledger has seen, sorted."""
        ...


class Ledger(LedgerReader, Protocol):
    """What the enricher also writes."""

    def read(self, appointment_ids: Sequence[str], dedupe_ids: Sequence[str]) -> BatchRead:
        """Entries and receipts together (one BatchGetItem for a batch of ten)."""
        ...

    def put_receipt(self, dedupe_id: str, outcome: str) -> None:
        """Record that a delivery was settled (expires with the idempotency window)."""
        ...

    def put_receipts(self, outcomes: Mapping[str, str]) -> None:
        """``put_receipt`` for each dedupe id -> outcome, in as few requests as the store allows
        (one BatchWriteItem for a batch of ten)."""
        ...

    def save(self, entry: LedgerEntry) -> tuple[str, ...]:
        """Write ``entry`` as revision ``entry.revision + 1`` if the stored item is still at
        ``entry.revision`` (0: absent); ``LedgerConflict`` otherwise. Returns the deliveries of
        ``entry.settle`` the item had no room for: the caller writes their receipts."""
        ...

    def remember_locations(self, location_ids: Sequence[str]) -> None:
        """Add locations to the ``locations`` item: one request for those this container has not
        added yet, none when it has added them all."""
        ...
