"""DynamoDB adapter of the ledger port (``ledger/base.py``): the item layout documented there.

Low-level client (injected, one per container) and hand-written attribute conversion: the few
attribute types are known, and boto3's TypeDeserializer would turn numbers into Decimals.
Entries are read strongly consistent: a write is conditional on the revision read, so a stale
read would cost a retry, and a burst's next batch follows the last write by milliseconds.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..clocks import WallClock, utc_now
from ..wire import DEFAULT_MAX_AGE_SECONDS
from . import compression
from .base import (
    APPOINTMENT_KEY_PREFIX,
    DEFAULT_LEDGER_TTL_SECONDS,
    LOCATIONS_KEY,
    MAX_KEYS_PER_READ,
    RECEIPT_KEY_PREFIX,
    SETTLED_KEY_BYTES,
    BatchRead,
    LedgerConflict,
    LedgerEntry,
    LedgerState,
    UnprocessedKeys,
    UnprocessedWrites,
    appointment_key,
    fold_settled,
    ledger_expiration,
    ledger_time,
    parse_ledger_time,
    settled_key,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

UNPROCESSED_ATTEMPTS = 6
MAX_ITEMS_PER_WRITE = 25  # BatchWriteItem's limit
_T = TypeVar("_T")


def _chunks(values: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _entry(item: Mapping[str, Any]) -> LedgerEntry:
    date_updated = item.get("dateUpdated", {}).get("S")
    recent = json.loads(item.get("recent", {}).get("S", "[]"))
    announced_json = _appointment_json(item.get("appointment", {}))
    return LedgerEntry(
        appointment_id=item["id"]["S"].removeprefix(APPOINTMENT_KEY_PREFIX),
        location_id=item.get("locationId", {}).get("S", ""),
        date_updated=parse_ledger_time(date_updated) if date_updated else None,
        deleted=bool(item.get("deleted", {}).get("BOOL", False)),
        appointment=json.loads(announced_json) if announced_json else {},
        recent=tuple((str(dedupe), change) for dedupe, change in recent),
        revision=int(item.get("revision", {}).get("N", "0")),
        deleted_by=item.get("deletedBy", {}).get("S"),
        announced=bool(item.get("announced", {}).get("BOOL", True)),
        pending=_pending(item.get("pending", {}), announced_json),
        sequence=int(item.get("sequence", {}).get("N", "0")),
        sequences={str(k): int(v) for k, v in json.loads(item.get("sequences", {}).get("S", "{}")).items()},
        settled=settled_marks(item.get("settled", {})),
    )


_SETTLED_ENTRY_BYTES = SETTLED_KEY_BYTES + 4


def settled_marks(attribute: Mapping[str, Any]) -> dict[bytes, int]:
    """A ledger item's ``settled`` attribute: ``settled_key`` -> expiry (epoch seconds)."""
    data = attribute.get("B", b"")
    step = _SETTLED_ENTRY_BYTES
    return {
        data[i : i + SETTLED_KEY_BYTES]: int.from_bytes(data[i + SETTLED_KEY_BYTES : i + step], "big")
        for i in range(0, len(data) - step + 1, step)
    }


def _settled_attribute(settled: Mapping[bytes, int]) -> dict[str, Any]:
    return {"B": b"".join(key + until.to_bytes(4, "big") for key, until in sorted(settled.items()))}


def _pending(attribute: Mapping[str, Any], announced_json: bytes) -> LedgerState | None:
    if "B" not in attribute:
        return None
    data = json.loads(compression.decompress_pending(attribute["B"], announced_json))
    date_updated = data.get("dateUpdated")
    return LedgerState(
        parse_ledger_time(date_updated) if date_updated else None,
        bool(data.get("deleted")),
        data.get("appointment") or {},
        data.get("deletedBy"),
    )


def _pending_attribute(state: LedgerState, announced_json: bytes) -> dict[str, Any]:
    data = {
        "dateUpdated": ledger_time(state.date_updated) if state.date_updated is not None else None,
        "deleted": state.deleted,
        "deletedBy": state.deleted_by,
        "appointment": dict(state.appointment),
    }
    return {"B": compression.compress_pending(_compact(data).encode(), announced_json)}


def _appointment_json(attribute: Mapping[str, Any]) -> bytes:
    """The announced appointment's JSON as stored (also the pending state's dictionary)."""
    return compression.decompress_appointment(attribute["B"]) if "B" in attribute else b""


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class DynamoLedger:
    """``Ledger`` on one DynamoDB table (which may also hold the idempotency records)."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        ttl_seconds: int = DEFAULT_LEDGER_TTL_SECONDS,
        receipt_ttl_seconds: int = 2 * DEFAULT_MAX_AGE_SECONDS,  # as the enricher's idempotency TTL
        receipts_table_name: str | None = None,
        now: WallClock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.table_name = table_name
        self.ttl_seconds = ttl_seconds
        self.receipt_ttl_seconds = receipt_ttl_seconds
        # Receipts are short-lived idempotency records: the idempotency table when there is one.
        self.receipts_table_name = receipts_table_name or table_name
        self.now = now
        self.sleep = sleep
        self._locations_added: set[str] = set()
        self._lock = threading.Lock()

    # -- reads (the reconciler's port) -------------------------------------------------------

    def entries(self, appointment_ids: Sequence[str]) -> dict[str, LedgerEntry]:
        """BatchGetItem, 100 keys a call; unprocessed keys are retried with jittered backoff."""
        keys = [(self.table_name, appointment_key(i)) for i in dict.fromkeys(appointment_ids)]
        return dict(self._read(keys).entries)

    def read(self, appointment_ids: Sequence[str], dedupe_ids: Sequence[str]) -> BatchRead:
        """Entries and receipts in one BatchGetItem (two tables in one request when they differ)."""
        keys = [(self.table_name, appointment_key(i)) for i in dict.fromkeys(appointment_ids)]
        keys += [(self.receipts_table_name, RECEIPT_KEY_PREFIX + d) for d in dict.fromkeys(dedupe_ids)]
        read = self._read(keys)
        now = int(self.now().timestamp())
        settled = {k for e in read.entries.values() for k, until in e.settled.items() if until > now}
        if not settled:
            return read
        folded = {d for d in dedupe_ids if settled_key(d) in settled}
        return BatchRead(read.entries, read.receipts | folded)

    def put_receipt(self, dedupe_id: str, outcome: str) -> None:
        self.client.put_item(TableName=self.receipts_table_name, Item=self._receipt(dedupe_id, outcome))

    def put_receipts(self, outcomes: Mapping[str, str]) -> None:
        """BatchWriteItem, 25 receipts a call (the same write units as as many PutItems, one round
        trip); unprocessed items are retried with jittered backoff, ``UnprocessedWrites`` after."""
        items = [self._receipt(dedupe_id, outcome) for dedupe_id, outcome in outcomes.items()]
        for chunk in _chunks(items, MAX_ITEMS_PER_WRITE):
            request: dict[str, Any] = {self.receipts_table_name: [{"PutRequest": {"Item": i}} for i in chunk]}
            for attempt in range(UNPROCESSED_ATTEMPTS):
                if attempt:
                    self.sleep(random.random() * min(1.0, 0.05 * (1 << attempt)))  # noqa: S311 - jitter
                response = self.client.batch_write_item(RequestItems=request)
                request = dict(response.get("UnprocessedItems") or {})
                if not request:
                    break
            else:
                left = sum(len(r) for r in request.values())
                raise UnprocessedWrites(f"receipt write left {left} items unprocessed")

    def _receipt(self, dedupe_id: str, outcome: str) -> dict[str, Any]:
        return {
            "id": {"S": RECEIPT_KEY_PREFIX + dedupe_id},
            "outcome": {"S": outcome},
            "expiration": {"N": str(int(self.now().timestamp()) + self.receipt_ttl_seconds)},
        }

    def _read(self, keys: list[tuple[str, str]]) -> BatchRead:
        entries: dict[str, LedgerEntry] = {}
        receipts: set[str] = set()
        for chunk in _chunks(keys, MAX_KEYS_PER_READ):
            for item in self._batch_get(chunk):
                key = item["id"]["S"]
                if key.startswith(RECEIPT_KEY_PREFIX):
                    receipts.add(key.removeprefix(RECEIPT_KEY_PREFIX))
                elif key.startswith(APPOINTMENT_KEY_PREFIX):
                    entry = _entry(item)
                    entries[entry.appointment_id] = entry
        # An appointment's item is only ever written after its location was added to the
        # ``locations`` item (``Tracker.save``): the locations of the entries read need no write.
        known = {entry.location_id for entry in entries.values()} - self._locations_added
        if known:
            with self._lock:
                self._locations_added.update(known)
        return BatchRead(entries, frozenset(receipts))

    def _batch_get(self, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        request: dict[str, Any] = {}
        for table, key in keys:
            # Entries must be current (a burst's next batch follows the last write by milliseconds);
            # receipts need not: a duplicate delivery comes back minutes later (FIFO deduplicates
            # within five minutes; a retry waits out the visibility timeout), so they are read
            # eventually consistent, at half the price, when they have a table of their own.
            consistent = table == self.table_name
            request.setdefault(table, {"Keys": [], "ConsistentRead": consistent})["Keys"].append(
                {"id": {"S": key}}
            )
        items: list[dict[str, Any]] = []
        for attempt in range(UNPROCESSED_ATTEMPTS):
            if attempt:
                self.sleep(random.random() * min(1.0, 0.05 * (1 << attempt)))  # noqa: S311 - jitter
            response = self.client.batch_get_item(RequestItems=request)
            for found in response.get("Responses", {}).values():
                items.extend(found)
            request = dict(response.get("UnprocessedKeys") or {})
            if not request:
                return items
        left = sum(len(r["Keys"]) for r in request.values())
        raise UnprocessedKeys(f"ledger read left {left} keys unprocessed")

    def known_locations(self) -> list[str]:
        response = self.client.get_item(
            TableName=self.table_name, Key={"id": {"S": LOCATIONS_KEY}}, ConsistentRead=True
        )
        return sorted(response.get("Item", {}).get("locationIds", {}).get("SS", []))

    # -- writes (the enricher) ---------------------------------------------------------------

    def save(self, entry: LedgerEntry) -> tuple[str, ...]:
        """One conditional ``PutItem``; the deliveries of ``entry.settle`` that found no room in
        ``settled`` are returned for the caller to receipt."""
        now = int(self.now().timestamp())
        settled, left = fold_settled(
            entry.settled, entry.settle, now=now, expires=now + self.receipt_ttl_seconds
        )
        announced_json = _compact(dict(entry.appointment)).encode()
        item: dict[str, Any] = {
            "id": {"S": appointment_key(entry.appointment_id)},
            "locationId": {"S": entry.location_id},
            "deleted": {"BOOL": entry.deleted},
            "appointment": {"B": compression.compress_appointment(announced_json)},
            "recent": {"S": _compact([[dedupe, change] for dedupe, change in entry.recent])},
            "revision": {"N": str(entry.revision + 1)},
            "expiration": {"N": str(ledger_expiration(self.now(), self.ttl_seconds, entry))},
        }
        if entry.date_updated is not None:
            item["dateUpdated"] = {"S": ledger_time(entry.date_updated)}
        if entry.deleted_by is not None:
            item["deletedBy"] = {"S": entry.deleted_by}
        if not entry.announced:
            item["announced"] = {"BOOL": False}
        if entry.pending is not None:
            item["pending"] = _pending_attribute(entry.pending, announced_json)
        if entry.sequence:
            item["sequence"] = {"N": str(entry.sequence)}
            item["sequences"] = {"S": _compact(dict(entry.sequences))}
        if settled:
            item["settled"] = _settled_attribute(settled)
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(id)"}
            if entry.revision == 0
            else {
                "ConditionExpression": "revision = :expected",
                "ExpressionAttributeValues": {":expected": {"N": str(entry.revision)}},
            }
        )
        try:
            self.client.put_item(TableName=self.table_name, Item=item, **condition)
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            raise LedgerConflict(f"ledger item of {entry.appointment_id} changed since it was read") from exc
        return left

    def remember_locations(self, location_ids: Sequence[str]) -> None:
        """One ``ADD`` of every new location (idempotent across containers). Held under the lock:
        a caller that arrives while the batch's write is in flight waits for it instead of
        writing the same locations again."""
        with self._lock:
            new = sorted(set(location_ids) - self._locations_added)
            if not new:
                return
            self.client.update_item(
                TableName=self.table_name,
                Key={"id": {"S": LOCATIONS_KEY}},
                UpdateExpression="ADD locationIds :l",
                ExpressionAttributeValues={":l": {"SS": new}},
            )
            self._locations_added.update(new)
