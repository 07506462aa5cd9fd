"""The ledger's DynamoDB adapter over the wire (moto server), in the item layout the reconciler reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from appointment_enricher.ledger.base import SETTLED_LIMIT, LedgerConflict, LedgerEntry, ledger_time
from appointment_enricher.ledger.dynamodb import DynamoLedger
from dev.stack.awslocal import LocalStack

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _ledger(stack: LocalStack, client: Any = None) -> DynamoLedger:
    return DynamoLedger(
        client or stack.client("dynamodb"), stack.ledger_table_name, now=lambda: NOW, sleep=lambda _: None
    )


def _entry(appointment_id: str, **over: Any) -> LedgerEntry:
    fields: dict[str, Any] = {
        "appointment_id": appointment_id,
        "location_id": "L1",
        "date_updated": datetime(2026, 11, 30, 10, 0, 0, 500_000, tzinfo=UTC),
        "deleted": False,
        "appointment": {"id": appointment_id, "appointmentStatus": "confirmed", "price": 1.5},
        "recent": (("w1", {"kind": "created", "kinds": ["created"]}),),
    }
    fields.update(over)
    return LedgerEntry(**fields)


def test_saved_entry_reads_back_in_the_contract_layout(local_stack: LocalStack) -> None:
    ledger = _ledger(local_stack)
    ledger.save(_entry("A1"))

    raw = local_stack.client("dynamodb").get_item(
        TableName=local_stack.ledger_table_name, Key={"id": {"S": "appointment#A1"}}
    )["Item"]
    assert raw["locationId"] == {"S": "L1"}
    assert raw["dateUpdated"] == {"S": "2026-11-30T10:00:00.500Z"}
    assert raw["deleted"] == {"BOOL": False}
    assert raw["revision"] == {"N": "1"}
    assert int(raw["expiration"]["N"]) > NOW.timestamp() + 90 * 86400

    entry = ledger.entries(["A1", "missing"])
    assert set(entry) == {"A1"}
    got = entry["A1"]
    assert got.location_id == "L1" and not got.deleted and got.revision == 1
    assert got.date_updated == datetime(2026, 11, 30, 10, 0, 0, 500_000, tzinfo=UTC)
    assert got.appointment["price"] == 1.5  # numbers stay numbers (no Decimal)
    assert got.change_for("w1") == {"kind": "created", "kinds": ["created"]}
    assert got.change_for("w2") is None


def test_unknown_date_updated_is_absent_not_empty(local_stack: LocalStack) -> None:
    ledger = _ledger(local_stack)
    ledger.save(_entry("A2", date_updated=None, deleted=True))
    raw = local_stack.client("dynamodb").get_item(
        TableName=local_stack.ledger_table_name, Key={"id": {"S": "appointment#A2"}}
    )["Item"]
    assert "dateUpdated" not in raw and raw["deleted"] == {"BOOL": True}
    assert ledger.entries(["A2"])["A2"].date_updated is None


def test_write_is_conditional_on_the_revision_read(local_stack: LocalStack) -> None:
    ledger = _ledger(local_stack)
    ledger.save(_entry("A3"))
    with pytest.raises(LedgerConflict):
        ledger.save(_entry("A3"))  # revision 0 = "absent", but it exists now
    first = ledger.entries(["A3"])["A3"]
    later = first.date_updated + timedelta(minutes=1) if first.date_updated else None
    ledger.save(_entry("A3", revision=first.revision, date_updated=later))
    with pytest.raises(LedgerConflict):
        ledger.save(_entry("A3", revision=first.revision))  # a second writer of the same read
    assert ledger.entries(["A3"])["A3"].revision == 2
    assert ledger.entries(["A3"])["A3"].date_updated == later


def test_more_than_100_ids_are_read_in_chunks(local_stack: LocalStack) -> None:
    ledger = _ledger(local_stack)
    ids = [f"B{i:03d}" for i in range(0, 230, 2)]  # 115 stored
    for appointment_id in ids:
        ledger.save(_entry(appointment_id))
    wanted = [f"B{i:03d}" for i in range(230)]  # 230 asked: 3 BatchGetItem calls
    calls: list[int] = []
    real = local_stack.client("dynamodb")

    class Counting:
        exceptions = real.exceptions

        def batch_get_item(self, **kwargs: Any) -> Any:
            calls.append(len(kwargs["RequestItems"][local_stack.ledger_table_name]["Keys"]))
            return real.batch_get_item(**kwargs)

    found = _ledger(local_stack, Counting()).entries(wanted)
    assert sorted(found) == ids
    assert calls == [100, 100, 30]


def test_unprocessed_keys_are_retried(local_stack: LocalStack) -> None:
    """A throttled BatchGetItem returns some keys unprocessed; they are asked for again."""
    ledger = _ledger(local_stack)
    ids = [f"C{i}" for i in range(6)]
    for appointment_id in ids:
        ledger.save(_entry(appointment_id))
    real = local_stack.client("dynamodb")
    table = local_stack.ledger_table_name
    calls: list[int] = []

    class Throttled:
        exceptions = real.exceptions

        def batch_get_item(self, **kwargs: Any) -> Any:
            keys = kwargs["RequestItems"][table]["Keys"]
            calls.append(len(keys))
            if len(calls) == 1:  # serve half, hand back the rest unprocessed
                response = real.batch_get_item(RequestItems={table: {"Keys": keys[:3]}})
                response["UnprocessedKeys"] = {table: {"Keys": keys[3:], "ConsistentRead": True}}
                return response
            return real.batch_get_item(**kwargs)

    found = _ledger(local_stack, Throttled()).entries(ids)
    assert sorted(found) == ids
    assert calls == [6, 3]


def test_known_locations_are_added_once_per_container(local_stack: LocalStack) -> None:
    ledger = _ledger(local_stack)
    assert ledger.known_locations() == []
    real = local_stack.client("dynamodb")
    updates: list[str] = []

    class Counting:
        exceptions = real.exceptions

        def update_item(self, **kwargs: Any) -> Any:
            updates.append(",".join(kwargs["ExpressionAttributeValues"][":l"]["SS"]))
            return real.update_item(**kwargs)

        def get_item(self, **kwargs: Any) -> Any:
            return real.get_item(**kwargs)

    container = _ledger(local_stack, Counting())
    for location in ("L2", "L1", "L2", "L1"):
        container.remember_locations([location])
    container.remember_locations(["L3", "L1", "L4", "L3"])  # a batch: one write of the new ones
    container.remember_locations(["L4", "L2"])
    _ledger(local_stack, Counting()).remember_locations(["L1"])  # another container: ADD is idempotent
    assert updates == ["L2", "L1", "L3,L4", "L1"]
    assert ledger.known_locations() == ["L1", "L2", "L3", "L4"]


def test_a_read_entry_shows_its_location_is_known_so_a_new_container_does_not_write_it(
    local_stack: LocalStack,
) -> None:
    """Every item was written after its location (``Tracker.save``): a container whose read finds
    an appointment of L1 adds only the locations it found nothing for."""
    real = local_stack.client("dynamodb")
    writer = _ledger(local_stack)
    writer.remember_locations(["L1"])
    writer.save(_entry("K1"))
    updates: list[list[str]] = []

    class Counting:
        exceptions = real.exceptions

        def update_item(self, **kwargs: Any) -> Any:
            updates.append(kwargs["ExpressionAttributeValues"][":l"]["SS"])
            return real.update_item(**kwargs)

        def batch_get_item(self, **kwargs: Any) -> Any:
            return real.batch_get_item(**kwargs)

    fresh = _ledger(local_stack, Counting())
    read = fresh.read(["K1", "K9"], ["d1"])
    assert set(read.entries) == {"K1"}
    fresh.remember_locations(["L1", "L7"])
    fresh.remember_locations(["L1"])  # a group's save: nothing left to write
    assert updates == [["L7"]]
    assert _ledger(local_stack).known_locations() == ["L1", "L7"]


def test_the_appointment_is_stored_compressed_and_read_back_whole(local_stack: LocalStack) -> None:
    appointment = {"id": "D1", "notes": "x" * 2000, "startTime": "2026-12-01T10:00:00+05:30"}
    ledger = _ledger(local_stack)
    ledger.save(_entry("D1", appointment=appointment))
    raw = local_stack.client("dynamodb").get_item(
        TableName=local_stack.ledger_table_name, Key={"id": {"S": "appointment#D1"}}
    )["Item"]
    assert len(raw["appointment"]["B"]) < 200  # 2 KB of JSON, compressed
    assert ledger.entries(["D1"])["D1"].appointment == appointment


def test_ledger_time_sorts_as_instants() -> None:
    whole = ledger_time(datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC))
    later = ledger_time(datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC))
    assert whole == "2026-01-01T00:00:00.000Z" and whole < later


def test_entries_and_receipts_are_read_in_one_call_across_two_tables(local_stack: LocalStack) -> None:
    """Receipts live in the idempotency table; one BatchGetItem names both tables."""
    real = local_stack.client("dynamodb")
    calls: list[dict[str, bool]] = []

    class Counting:
        exceptions = real.exceptions

        def batch_get_item(self, **kwargs: Any) -> Any:
            calls.append({table: r["ConsistentRead"] for table, r in kwargs["RequestItems"].items()})
            return real.batch_get_item(**kwargs)

        def put_item(self, **kwargs: Any) -> Any:
            return real.put_item(**kwargs)

    ledger = DynamoLedger(
        Counting(),
        local_stack.ledger_table_name,
        receipts_table_name=local_stack.table_name,
        now=lambda: NOW,
    )
    ledger.save(_entry("R1"))
    ledger.put_receipt("w-done", "published")
    read = ledger.read(["R1", "R2"], ["w-done", "w-new"])
    assert set(read.entries) == {"R1"} and read.receipts == {"w-done"}
    # Entries strongly consistent; receipts (a duplicate comes minutes later) at half the price.
    assert calls == [{local_stack.ledger_table_name: True, local_stack.table_name: False}]
    receipt = real.get_item(TableName=local_stack.table_name, Key={"id": {"S": "receipt#w-done"}})["Item"]
    assert receipt["outcome"] == {"S": "published"} and int(receipt["expiration"]["N"]) > NOW.timestamp()


def test_the_announce_write_settles_its_deliveries_within_the_items_room(local_stack: LocalStack) -> None:
    """Deliveries whose records went out are kept in the item (``settled``, 12 bytes each): a
    later read reports them with the receipts; the ones past ``SETTLED_LIMIT`` are handed back
    for receipt items, and expired ones make room again."""
    clock = {"now": NOW}
    ledger = DynamoLedger(
        local_stack.client("dynamodb"),
        local_stack.ledger_table_name,
        receipt_ttl_seconds=3600,
        now=lambda: clock["now"],
        sleep=lambda _: None,
    )
    first = [f"wh-{i}" for i in range(SETTLED_LIMIT - 2)]
    assert ledger.save(_entry("S1", settle=tuple(first))) == ()
    read = ledger.read(["S1"], [*first, "wh-other"])
    assert read.receipts == frozenset(first)
    raw = local_stack.client("dynamodb").get_item(
        TableName=local_stack.ledger_table_name, Key={"id": {"S": "appointment#S1"}}
    )["Item"]
    assert len(raw["settled"]["B"]) == 12 * len(first)

    entry = read.entries["S1"]
    more = [f"wh-more-{i}" for i in range(4)]
    left = ledger.save(replace(entry, settle=tuple(more)))
    assert left == tuple(more[2:])  # two fit
    assert ledger.read(["S1"], more).receipts == frozenset(more[:2])

    clock["now"] = NOW + timedelta(hours=2)  # the first ones expired
    entry = ledger.entries(["S1"])["S1"]
    assert ledger.read(["S1"], first).receipts == frozenset()
    assert ledger.save(replace(entry, settle=tuple(more[2:]))) == ()
    assert ledger.read(["S1"], more).receipts == frozenset(more[2:])  # the older two expired too
