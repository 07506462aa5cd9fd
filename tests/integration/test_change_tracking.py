"""``change`` and the ledger over the wire: the enricher handler on moto server (SQS, SNS,
DynamoDB) and the sandbox PowerLeads API, driven one invocation at a time.

The hard cases of the contract: redeliveries keep their change, coalesced webhooks carry it once,
the ledger never moves backwards, tombstones and re-creation, the 404 grace, and suppression.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest

from appointment_enricher.ledger.base import LedgerEntry
from appointment_enricher.ledger.dynamodb import DynamoLedger
from appointment_enricher.powerleads.client import RetryPolicy
from appointment_enricher.wire import IngestMessage, rfc3339
from dev.fakes.lambda_loader import load_function_module
from dev.fakes.sandbox import SandboxServer
from dev.stack.awslocal import LocalStack
from tests.integration.test_enricher_pipeline import (
    LOCATION,
    Driver,
    appointment_id,
    captured_logs,
    published,
    put,
    upstream_calls,
)

pytestmark = pytest.mark.integration

T0 = "2026-11-30T10:00:00+00:00"
T1 = "2026-11-30T10:05:00+00:00"
T2 = "2026-11-30T10:10:00+00:00"


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer(rate_limit_interval_ms=300) as server:
        yield server


@pytest.fixture
def enricher(stack_env: dict[str, str]) -> ModuleType:
    module = load_function_module("enricher")
    module.service.source.retry = RetryPolicy(base_delay=0.02, max_delay=0.1, max_attempts=3)
    module.service.deadline_margin_seconds = 1.0
    module.service.publisher.sleep = lambda _: None
    return module


@pytest.fixture
def driver(enricher: ModuleType, local_stack: LocalStack) -> Driver:
    return Driver(enricher, local_stack)


def send(
    stack: LocalStack,
    event_id: str,
    kind: str = "AppointmentUpdate",
    *,
    webhook_id: str | None = None,
    received_at: str = "2026-11-30T00:00:00Z",
    sqs_dedupe: str | None = None,
    snapshot: dict[str, Any] | None = None,
    location: str = LOCATION,
    app_id: str | None = None,
) -> str:
    """What the receiver enqueues (group = appointment, dedupe = webhookId)."""
    webhook_id = webhook_id or "wh-" + uuid.uuid4().hex
    body = json.dumps(
        {
            "type": kind,
            "locationId": location,
            "webhookId": webhook_id,
            "appointment": {"id": event_id, **(snapshot or {})},
            **({"appId": app_id} if app_id is not None else {}),
        }
    )
    stack.client("sqs").send_message(
        QueueUrl=stack.ingest_queue_url,
        MessageBody=IngestMessage(body, received_at, webhook_id).encode(),
        MessageGroupId=event_id,
        MessageDeduplicationId=sqs_dedupe or webhook_id,
    )
    return webhook_id


def ledger(stack: LocalStack) -> DynamoLedger:
    return DynamoLedger(stack.client("dynamodb"), stack.ledger_table_name)


def entry(stack: LocalStack, event_id: str) -> LedgerEntry:
    return ledger(stack).entries([event_id])[event_id]


def changes(stack: LocalStack) -> list[dict[str, Any]]:
    return [r["change"] | {"_attr": r["_attributes"]["changeKind"]} for r in published(stack)]


def test_first_record_is_created_and_the_ledger_holds_the_contract_layout(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    send(local_stack, a, "AppointmentCreate")
    driver.run_until_empty()
    ((record,),) = [published(local_stack)]
    assert record["change"] == {"kind": "created", "kinds": ["created"], "changedFields": [], "previous": {}}
    assert record["trigger"] == "webhook" and record["_attributes"]["changeKind"] == "created"
    held = entry(local_stack, a)
    assert held.location_id == LOCATION and not held.deleted
    assert held.date_updated == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert ledger(local_stack).known_locations() == [LOCATION]


def test_n_coalesced_webhooks_the_first_carries_the_change(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    send(local_stack, a, "AppointmentCreate")
    driver.run_until_empty()
    published(local_stack)
    put(sandbox, a, dateUpdated=T1, appointmentStatus="cancelled")
    for _ in range(3):
        send(local_stack, a)
    before = upstream_calls(sandbox, a)
    driver.step()
    kinds = [c["kind"] for c in changes(local_stack)]
    assert kinds == ["cancelled", "unchanged", "unchanged"]
    assert upstream_calls(sandbox, a) - before == 1


def test_a_redelivery_after_the_ledger_write_gets_the_same_change(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    """The publish fails after the ledger was written; meanwhile the appointment changes again.
    The retry publishes the change recorded for that webhook, and the next webhook the rest."""
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    send(local_stack, a, "AppointmentCreate")
    driver.run_until_empty()
    published(local_stack)
    put(sandbox, a, dateUpdated=T1, assignedUserId="someone-else")
    webhook = send(local_stack, a)
    destination = enricher.service.publisher.destinations[0]
    real_topic = destination.topic_arn
    destination.topic_arn = real_topic + "-missing"  # SNS answers NotFound: the publish fails
    try:
        _, kept = driver.step()
    finally:
        destination.topic_arn = real_topic
    assert len(kept) == 1 and published(local_stack) == []
    assert entry(local_stack, a).change_for(webhook) is not None  # written ahead of the publish

    put(sandbox, a, dateUpdated=T2, assignedUserId="someone-else", appointmentStatus="showed")
    driver.run_until_empty()
    (retried,) = published(local_stack)
    assert retried["webhookId"] == webhook
    assert retried["change"]["kinds"] == ["reassigned"]  # as recorded, not "statusChanged" too
    send(local_stack, a)
    driver.run_until_empty()
    (after,) = published(local_stack)
    assert after["change"]["kinds"] == ["statusChanged"]
    assert after["change"]["previous"] == {"appointmentStatus": "confirmed"}


def test_a_redelivery_whose_claim_was_lost_republishes_the_same_change(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    """Published, then the claim never completed (a crash): the redelivery is processed again
    and must not say ``unchanged`` (nor contradict the first record)."""
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    webhook = send(local_stack, a, "AppointmentCreate")
    driver.run_until_empty()
    (first,) = published(local_stack)
    dynamodb = local_stack.client("dynamodb")  # as if it was never marked settled
    dynamodb.update_item(
        TableName=local_stack.ledger_table_name,
        Key={"id": {"S": "appointment#" + a}},
        UpdateExpression="REMOVE settled",
    )
    send(local_stack, a, "AppointmentCreate", webhook_id=webhook, sqs_dedupe=webhook + "-again")
    driver.run_until_empty()
    (second,) = published(local_stack)
    assert second["webhookId"] == webhook and second["change"] == first["change"]
    assert first["change"]["kind"] == "created"


def test_an_older_fetch_is_a_stale_read_retried_never_a_reversal(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a, dateUpdated=T1, appointmentStatus="cancelled")
    send(local_stack, a)
    driver.run_until_empty()
    published(local_stack)
    put(sandbox, a, dateUpdated=T0, appointmentStatus="confirmed")  # a lagging replica
    send(local_stack, a)
    _, kept = driver.step()
    assert len(kept) == 1 and published(local_stack) == []
    assert entry(local_stack, a).date_updated == datetime(2026, 11, 30, 10, 5, tzinfo=UTC)
    put(sandbox, a, dateUpdated=T2, appointmentStatus="cancelled", notes="caught up")
    driver.run_until_empty()
    (record,) = published(local_stack)
    assert record["change"]["kinds"] == ["updated"] and record["change"]["changedFields"] == ["notes"]


def test_a_tombstone_then_a_recreated_appointment_is_created_again(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    send(local_stack, a, "AppointmentCreate")
    send(local_stack, a, "AppointmentDelete", snapshot={"dateUpdated": T1})
    driver.run_until_empty()
    assert [c["kind"] for c in changes(local_stack)] == ["created", "deleted"]
    held = entry(local_stack, a)
    assert held.deleted and held.date_updated == datetime(2026, 11, 30, 10, 5, tzinfo=UTC)
    send(local_stack, a, "AppointmentDelete")  # a second tombstone says nothing new
    driver.run_until_empty()
    assert [c["kind"] for c in changes(local_stack)] == ["unchanged"]
    put(sandbox, a, dateUpdated=T2)
    send(local_stack, a, "AppointmentCreate")
    driver.run_until_empty()
    assert [c["kind"] for c in changes(local_stack)] == ["created"]
    assert not entry(local_stack, a).deleted


def test_404_is_retried_within_the_grace_then_the_appointment_is_published(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    send(local_stack, a, "AppointmentCreate", received_at=rfc3339(datetime.now(UTC)))
    _, kept = driver.step()  # 404: the read path lags the webhook
    assert len(kept) == 1 and published(local_stack) == []
    put(sandbox, a, dateUpdated=T0)
    driver.run_until_empty()
    (record,) = published(local_stack)
    assert record["deleted"] is False and record["change"]["kind"] == "created"
    assert upstream_calls(sandbox, a) == 2


def test_404_past_the_grace_is_published_as_deleted(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    enricher.service.not_found_grace_seconds = 1
    a = appointment_id()
    send(local_stack, a, received_at=rfc3339(datetime.now(UTC)), snapshot={"title": "as sent"})
    _, kept = driver.step()
    assert len(kept) == 1 and published(local_stack) == []
    time.sleep(1.1)
    driver.run_until_empty()
    (record,) = published(local_stack)
    assert record["deleted"] is True and record["appointment"] == {"id": a, "title": "as sent"}
    assert record["change"]["kind"] == "deleted" and entry(local_stack, a).deleted


def test_suppressed_unchanged_records_are_counted_not_published(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    enricher.service.suppress_unchanged = True
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    for kind in ("AppointmentCreate", "AppointmentUpdate", "AppointmentUpdate"):
        send(local_stack, a, kind)
    counted: list[tuple[str, float]] = []
    real_add = enricher.metrics.add_metric
    enricher.metrics.add_metric = lambda name, unit, value: (
        counted.append((name, value)) or real_add(name=name, unit=unit, value=value)
    )
    with captured_logs(enricher) as logs:
        driver.step()
    assert [c["kind"] for c in changes(local_stack)] == ["created"]
    assert ("UnchangedSuppressed", 2) in counted
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    suppressed = [x for x in lines if x["message"] == "record suppressed"]
    assert len(suppressed) == 2 and all(x["changeKind"] == "unchanged" for x in suppressed)
    assert driver.poller.receive() == []  # acknowledged, not retried
