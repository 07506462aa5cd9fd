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
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..clocks import WallClock, utc_now
from ..wire import DEFAULT_MAX_AGE_SECONDS
from .base import (
    APPOINTMENT_KEY_PREFIX,
    DEFAULT_LEDGER_TTL_SECONDS,
    LOCATIONS_KEY,
    MAX_KEYS_PER_READ,
    RECEIPT_KEY_PREFIX,
    BatchRead,
    LedgerConflict,
    LedgerEntry,
    LedgerState,
    UnprocessedKeys,
    UnprocessedWrites,
    appointment_key,
    ledger_expiration,
    ledger_time,
    parse_ledger_time,
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
    return LedgerEntry(
        appointment_id=item["id"]["S"].removeprefix(APPOINTMENT_KEY_PREFIX),
        location_id=item.get("locationId", {}).get("S", ""),
        date_updated=parse_ledger_time(date_updated) if date_updated else None,
        deleted=bool(item.get("deleted", {}).get("BOOL", False)),
        appointment=_appointment(item.get("appointment", {})),
        recent=tuple((str(dedupe), change) for dedupe, change in recent),
        revision=int(item.get("revision", {}).get("N", "0")),
        deleted_by=item.get("deletedBy", {}).get("S"),
        announced=bool(item.get("announced", {}).get("BOOL", True)),
        pending=_pending(item.get("pending", {})),
        sequence=int(item.get("sequence", {}).get("N", "0")),
        sequences={str(k): int(v) for k, v in json.loads(item.get("sequences", {}).get("S", "{}")).items()},
    )


def _pending(attribute: Mapping[str, Any]) -> LedgerState | None:
    if "B" not in attribute:
        return None
    data = json.loads(zlib.decompress(attribute["B"]))
    date_updated = data.get("dateUpdated")
    return LedgerState(
        parse_ledger_time(date_updated) if date_updated else None,
        bool(data.get("deleted")),
        data.get("appointment") or {},
        data.get("deletedBy"),
    )


def _pending_attribute(state: LedgerState) -> dict[str, Any]:
    data = {
        "dateUpdated": ledger_time(state.date_updated) if state.date_updated is not None else None,
        "deleted": state.deleted,
        "deletedBy": state.deleted_by,
        "appointment": dict(state.appointment),
    }
    return {"B": zlib.compress(_compact(data).encode(), 9)}


def _appointment(attribute: Mapping[str, Any]) -> dict[str, Any]:
    if "B" in attribute:
        loaded: dict[str, Any] = json.loads(zlib.decompress(attribute["B"]))
        return loaded
    return {}


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
        return self._read(keys)

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

    def save(self, entry: LedgerEntry) -> None:
        item: dict[str, Any] = {
            "id": {"S": appointment_key(entry.appointment_id)},
            "locationId": {"S": entry.location_id},
            "deleted": {"BOOL": entry.deleted},
            "appointment": {"B": zlib.compress(_compact(dict(entry.appointment)).encode(), 9)},
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
            item["pending"] = _pending_attribute(entry.pending)
        if entry.sequence:
            item["sequence"] = {"N": str(entry.sequence)}
            item["sequences"] = {"S": _compact(dict(entry.sequences))}
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

    def remember_location(self, location_id: str) -> None:
        with self._lock:
            if location_id in self._locations_added:
                return
        self.client.update_item(
            TableName=self.table_name,
            Key={"id": {"S": LOCATIONS_KEY}},
            UpdateExpression="ADD locationIds :l",
            ExpressionAttributeValues={":l": {"SS": [location_id]}},
        )
        with self._lock:
            self._locations_added.add(location_id)
