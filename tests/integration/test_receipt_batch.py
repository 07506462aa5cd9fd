"""A batch's receipts in one BatchWriteItem: the ledger adapter on moto server, its retry of
unprocessed items, and the enricher handler settling a batch of ten with one request."""

from __future__ import annotations

from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import botocore.client
import pytest

from appointment_enricher.ledger.base import UnprocessedWrites
from appointment_enricher.ledger.dynamodb import MAX_ITEMS_PER_WRITE, UNPROCESSED_ATTEMPTS, DynamoLedger
from dev.fakes.sandbox import SandboxServer
from dev.stack.awslocal import LocalStack
from tests.integration.test_enricher_pipeline import (
    Driver,
    appointment_id,
    driver,
    enqueue,
    enricher,
    published,
    put,
    receipts,
    sandbox_server,
)

pytestmark = pytest.mark.integration

__all__ = ["driver", "enricher", "sandbox_server"]  # fixtures shared with the pipeline tests

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Counting:
    """The real moto client, with the requests it is asked for recorded."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.exceptions = real.exceptions
        self.writes: list[int] = []

    def batch_write_item(self, **kwargs: Any) -> Any:
        self.writes.append(sum(len(r) for r in kwargs["RequestItems"].values()))
        return self.real.batch_write_item(**kwargs)

    def batch_get_item(self, **kwargs: Any) -> Any:
        return self.real.batch_get_item(**kwargs)


def test_receipts_go_in_as_few_requests_as_the_limit_allows(local_stack: LocalStack) -> None:
    client = Counting(local_stack.client("dynamodb"))
    ledger = DynamoLedger(
        client, local_stack.ledger_table_name, receipts_table_name=local_stack.table_name, now=lambda: NOW
    )
    outcomes = {f"w-{i:02d}": ("published" if i % 3 else "suppressed") for i in range(30)}
    ledger.put_receipts(outcomes)
    assert client.writes == [MAX_ITEMS_PER_WRITE, 30 - MAX_ITEMS_PER_WRITE]
    assert ledger.read([], [*outcomes, "w-absent"]).receipts == set(outcomes)
    real = local_stack.client("dynamodb")
    item = real.get_item(TableName=local_stack.table_name, Key={"id": {"S": "receipt#w-00"}})["Item"]
    assert item["outcome"] == {"S": "suppressed"} and int(item["expiration"]["N"]) > NOW.timestamp()


class Unprocessing:
    """A DynamoDB that leaves the first ``leave`` items of each request unprocessed, ``times`` times."""

    def __init__(self, leave: int, times: int) -> None:
        self.leave, self.times = leave, times
        self.requests: list[list[str]] = []

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        ((table, writes),) = RequestItems.items()
        self.requests.append([w["PutRequest"]["Item"]["id"]["S"] for w in writes])
        if self.times <= 0:
            return {"UnprocessedItems": {}}
        self.times -= 1
        return {"UnprocessedItems": {table: writes[: self.leave]}}


def test_unprocessed_receipts_are_retried_with_backoff() -> None:
    client = Unprocessing(leave=2, times=2)
    sleeps: list[float] = []
    ledger = DynamoLedger(
        client, "ledger", receipts_table_name="receipts", now=lambda: NOW, sleep=sleeps.append
    )
    ledger.put_receipts({f"w-{i}": "published" for i in range(5)})
    assert [len(r) for r in client.requests] == [5, 2, 2]
    assert client.requests[1] == client.requests[2] == ["receipt#w-0", "receipt#w-1"]
    assert len(sleeps) == 2 and all(0 <= s <= 1.0 for s in sleeps)


def test_receipts_left_unprocessed_after_every_attempt_raise() -> None:
    client = Unprocessing(leave=1, times=UNPROCESSED_ATTEMPTS + 5)
    ledger = DynamoLedger(client, "ledger", now=lambda: NOW, sleep=lambda _: None)
    with pytest.raises(UnprocessedWrites, match="1 items unprocessed"):
        ledger.put_receipts({"w-1": "published", "w-2": "published"})
    assert len(client.requests) == UNPROCESSED_ATTEMPTS


def test_a_batch_of_ten_published_is_settled_by_its_announce_writes_alone(
    driver: Driver,
    enricher: ModuleType,
    local_stack: LocalStack,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ten published deliveries: their announce writes list them as settled, so no receipt
    request at all; a quarantined delivery in the next batch takes one receipt request."""
    ids = [appointment_id() for _ in range(10)]
    for a in ids:
        put(sandbox, a)
    by_appointment = {a: enqueue(local_stack, a) for a in ids}
    webhooks = set(by_appointment.values())
    calls: list[str] = []
    original = botocore.client.BaseClient._make_api_call

    def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if client.meta.service_model.service_name == "dynamodb":
            calls.append(operation)
        return original(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counted)
    messages, kept = driver.step()
    monkeypatch.undo()
    assert len(messages) == 10 and kept == set()
    assert {r["webhookId"] for r in published(local_stack)} == webhooks
    assert receipts(local_stack) == [] and calls.count("BatchWriteItem") == 0, calls
    # Per appointment two conditional ledger writes (the write-ahead with the state pending, then
    # its promotion to announced once published, which also settles the delivery).
    assert calls.count("PutItem") == 20, calls
    ledger = DynamoLedger(
        local_stack.client("dynamodb"),
        local_stack.ledger_table_name,
        receipts_table_name=local_stack.table_name,
    )
    assert ledger.read(ids, [*webhooks, "w-absent"]).receipts == webhooks

    for a in ids[:3]:  # the same webhooks delivered again, past the queue's deduplication window
        enqueue(local_stack, a, webhook_id=by_appointment[a], sqs_dedupe="again-" + by_appointment[a])
    messages, kept = driver.step()
    assert len(messages) == 3 and kept == set() and published(local_stack) == []  # duplicates
