"""Guarantees that hold across components (DESIGN "End to end"), over the wire: the enricher
handler on moto server (SQS with the stack's redrive policy, SNS, DynamoDB) and the sandbox API.

* a ledger state counts as announced only once its record is published: a message dead-lettered
  by a publish outage leaves the announced state as it was; the next record reports its change
  against what consumers saw, a redrive publishes the original change, the reconciler sees the
  unpublished state as missing;
* a publish entry rejected as the sender's fault is quarantined with its reason;
* ``sequence`` grows per appointment, one per record, coalesced records in order;
* the reconciler, run over the same stack, finds a dead-lettered change and a never-published
  appointment missing;
* a 404 tombstone remembers why it exists and heals on a live fetch or listing (a reconcile run),
  whatever its dateUpdated;
* a fetched ``deleted: true`` is published as deleted, from the fetched object.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from appointment_enricher.reconcile.rules import decide
from dev.fakes.lambda_context import LambdaContext, make_context
from dev.fakes.lambda_loader import load_handler
from dev.fakes.sandbox import SandboxServer
from dev.stack.awslocal import LocalStack
from dev.stack.reconcile_local import iso_ms, recent_event, reconciler_env
from tests.integration.test_change_tracking import (
    T0,
    T1,
    driver,
    enricher,
    entry,
    ledger,
    sandbox_server,
    send,
)
from tests.integration.test_enricher_pipeline import Driver, appointment_id, published, put

pytestmark = pytest.mark.integration

__all__ = ["driver", "enricher", "sandbox_server"]  # the change-tracking tests' fixtures, shared

START0 = "2026-12-10T10:00:00+00:00"
START1 = "2026-12-11T15:00:00+00:00"


def _break_topic(enricher: ModuleType) -> tuple[Any, str]:
    destination = enricher.service.publisher.destinations[0]
    real = destination.topic_arn
    destination.topic_arn = real + "-missing"  # SNS answers NotFound: every publish fails
    return destination, real


def _fail_until_dead_lettered(driver: Driver, stack: LocalStack, receives: int = 5) -> list[dict[str, Any]]:
    """Receive (and fail) the message ``receives`` times; the next receive moves it to IngestDLQ."""
    for _ in range(receives):
        messages, kept = driver.step()
        assert len(messages) == 1 and len(kept) == 1
    messages, _ = driver.step()
    assert messages == []
    dead = stack.drain(stack.ingest_dlq_url, wait_seconds=0)
    assert len(dead) == 1
    return dead


def _redrive(stack: LocalStack, dead: list[dict[str, Any]], event_id: str) -> None:
    """What a DLQ redrive does: the same body back on the ingest queue (a new SQS dedupe id)."""
    for message in dead:
        stack.client("sqs").send_message(
            QueueUrl=stack.ingest_queue_url,
            MessageBody=message["Body"],
            MessageGroupId=event_id,
            MessageDeduplicationId="redrive-" + message["MessageId"],
        )


Reconcile = Callable[[list[str]], dict[str, Any]]


@pytest.fixture
def reconcile(
    stack_env: dict[str, str], local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> Reconcile:
    """The ReconcilerFunction handler on the same stack and sandbox, one run per call."""
    for name, value in reconciler_env(stack_env, local_stack.ledger_table_name).items():
        monkeypatch.setenv(name, value)
    handler = load_handler("reconciler")

    def run(locations: list[str]) -> dict[str, Any]:
        summary: dict[str, Any] = handler(
            {"locationIds": locations}, make_context("ReconcilerFunction", timeout_seconds=60)
        )
        assert summary["errors"] == 0, summary
        return summary

    return run


def _location() -> str:
    return "E2eLoc" + uuid.uuid4().hex[:10]


def _listed(event_id: str, date_updated: str, **over: Any) -> dict[str, Any]:
    return {"id": event_id, "locationId": "0007BWpSzSwfiuSl0tR2", "dateUpdated": date_updated, **over}


def test_a_change_dead_lettered_by_a_publish_outage_is_reported_by_the_next_record(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0, startTime=START0)
    send(local_stack, a, "AppointmentCreate")
    driver.run_until_empty()
    (created,) = published(local_stack)
    put(sandbox, a, dateUpdated=T1, startTime=START1)
    send(local_stack, a)
    destination, real = _break_topic(enricher)
    try:
        _fail_until_dead_lettered(driver, local_stack)
    finally:
        destination.topic_arn = real
    held = entry(local_stack, a)
    assert held.date_updated == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # still the announced one
    assert held.pending is not None and held.pending.date_updated == datetime(2026, 11, 30, 10, 5, tzinfo=UTC)
    # The reconciler compares with the announced state: the listing is newer, so it is missed.
    assert decide(_listed(a, T1), held) is not None

    send(local_stack, a)  # a newer webhook; upstream unchanged since the lost one
    driver.run_until_empty()
    (record,) = published(local_stack)
    assert record["change"]["kind"] == "rescheduled"
    assert record["_attributes"]["changeKind"] == "rescheduled"
    assert record["change"]["previous"]["startTime"] == created["appointment"]["startTime"]
    assert record["sequence"] > created["sequence"]
    announced = entry(local_stack, a)
    assert announced.pending is None and announced.date_updated == datetime(2026, 11, 30, 10, 5, tzinfo=UTC)


def test_a_redrive_publishes_the_original_change_and_sequence(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0, startTime=START0)
    send(local_stack, a, "AppointmentCreate")
    driver.run_until_empty()
    (created,) = published(local_stack)
    put(sandbox, a, dateUpdated=T1, startTime=START1)
    webhook = send(local_stack, a)
    destination, real = _break_topic(enricher)
    try:
        dead = _fail_until_dead_lettered(driver, local_stack)
    finally:
        destination.topic_arn = real
    _redrive(local_stack, dead, a)
    driver.run_until_empty()
    (record,) = published(local_stack)
    assert record["webhookId"] == webhook and record["change"]["kind"] == "rescheduled"
    assert record["sequence"] == created["sequence"] + 1
    _redrive(local_stack, dead, a)  # redriven twice: the receipt makes it a duplicate
    driver.run_until_empty()
    assert published(local_stack) == []


def test_the_reconciler_treats_a_never_published_state_as_missing(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    send(local_stack, a, "AppointmentCreate")
    destination, real = _break_topic(enricher)
    try:
        _, kept = driver.step()
    finally:
        destination.topic_arn = real
    assert len(kept) == 1
    held = ledger(local_stack).entries([a])[a]  # written ahead, never announced
    assert not held.announced and held.state is None
    recovery = decide(_listed(a, T0), held)
    assert recovery is not None and recovery.kind == "AppointmentUpdate"
    driver.run_until_empty()
    (record,) = published(local_stack)
    assert record["change"]["kind"] == "created"
    assert decide(_listed(a, T0), entry(local_stack, a)) is None


def test_a_reconcile_run_recovers_a_dead_lettered_change_and_a_never_published_create(
    enricher: ModuleType,
    driver: Driver,
    local_stack: LocalStack,
    sandbox: SandboxServer,
    reconcile: Reconcile,
) -> None:
    """The reconciler compares the listing with the announced state: a change written ahead and
    dead-lettered is still missing to it, and so is an appointment none of whose states went out."""
    location = _location()
    a, b = appointment_id(), appointment_id()
    before = recent_event(a, location, "E2eCal", updated=datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    sandbox.put_appointment(before)
    send(local_stack, a, "AppointmentCreate", location=location)
    driver.run_until_empty()
    (created,) = published(local_stack)
    later = {
        name: iso_ms(datetime.fromisoformat(before[name]) + timedelta(hours=2))
        for name in ("startTime", "endTime")
    }
    sandbox.put_appointment({**before, **later, "dateUpdated": "2026-11-30T10:05:00.000Z"})
    send(local_stack, a, location=location)
    sandbox.put_appointment(recent_event(b, location, "E2eCal"))
    destination, real = _break_topic(enricher)
    try:
        _fail_until_dead_lettered(driver, local_stack)
        send(local_stack, b, "AppointmentCreate", location=location)
        _fail_until_dead_lettered(driver, local_stack)
    finally:
        destination.topic_arn = real
    assert published(local_stack) == []

    summary = reconcile([location])
    assert summary["enqueued"] == 2 and summary["recovered"] == {"AppointmentUpdate": 2}, summary
    driver.run_until_empty()
    records = {r["appointmentId"]: r for r in published(local_stack)}
    assert records[a]["trigger"] == "reconcile" and records[a]["change"]["kind"] == "rescheduled"
    assert records[a]["change"]["previous"]["startTime"] == created["appointment"]["startTime"]
    assert records[b]["change"]["kind"] == "created"
    assert reconcile([location])["enqueued"] == 0  # both announced now


def test_a_sender_fault_publish_entry_is_quarantined_with_its_reason(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    send(local_stack, a, "AppointmentCreate")
    destination = enricher.service.publisher.destinations[0]
    destination.fifo = True  # FIFO ids on a standard topic: SNS fails the entry, SenderFault true
    try:
        _, kept = driver.step()
    finally:
        destination.fifo = False
    assert kept == set() and published(local_stack) == []
    (parked,) = local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0)
    attributes = {k: v["StringValue"] for k, v in parked["MessageAttributes"].items()}
    assert attributes["errorType"] == "PublishRejected"
    assert "InvalidParameter" in attributes["errorMessage"]


def test_sequence_grows_per_appointment_and_coalesced_records_each_take_their_own(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    send(local_stack, a, "AppointmentCreate")
    driver.run_until_empty()
    (first,) = published(local_stack)
    put(sandbox, a, dateUpdated=T1, assignedUserId="someone-else")
    webhooks = [send(local_stack, a) for _ in range(3)]
    driver.run_until_empty()
    records = published(local_stack)
    assert [r["webhookId"] for r in records] == webhooks
    assert [r["sequence"] for r in records] == [first["sequence"] + n for n in (1, 2, 3)]
    assert [r["change"]["kind"] for r in records] == ["reassigned", "unchanged", "unchanged"]
    assert entry(local_stack, a).sequence == first["sequence"] + 3


def test_a_404_tombstone_heals_on_a_live_fetch_and_on_a_live_listing(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    enricher.service.not_found_grace_seconds = 0  # the template allows it
    a = appointment_id()
    send(local_stack, a, snapshot={"dateUpdated": T0})  # upstream answers 404 (an incident)
    driver.run_until_empty()
    (tombstone,) = published(local_stack)
    assert tombstone["deleted"] is True and tombstone["change"]["kind"] == "deleted"
    held = entry(local_stack, a)
    assert held.deleted and held.deleted_by == "notFound"
    # Listed live again, same dateUpdated: the reconciler repairs it (the ledger is not "current").
    assert decide(_listed(a, T0), held) is not None

    put(sandbox, a, dateUpdated=T0)  # the incident is over; nothing changed upstream
    send(local_stack, a, snapshot={"dateUpdated": T0})
    driver.run_until_empty()
    (healed,) = published(local_stack)  # not a stale read
    assert healed["deleted"] is False and healed["change"]["kind"] == "created"
    assert not entry(local_stack, a).deleted
    assert decide(_listed(a, T0), entry(local_stack, a)) is None


def test_a_404_tombstone_is_repaired_by_a_live_listing_even_with_an_older_date_updated(
    enricher: ModuleType,
    driver: Driver,
    local_stack: LocalStack,
    sandbox: SandboxServer,
    reconcile: Reconcile,
) -> None:
    """A 404 tombstone is not evidence of a delete: listed live, the appointment is enqueued and
    published again as created, whatever its dateUpdated (here older than the tombstone's, which
    came from the webhook's snapshot); the fetch is not a stale read and the message is not
    settled as covered."""
    enricher.service.not_found_grace_seconds = 0
    location = _location()
    a = appointment_id()
    send(local_stack, a, location=location, snapshot={"dateUpdated": T1})  # upstream answers 404
    driver.run_until_empty()
    (tombstone,) = published(local_stack)
    assert tombstone["deleted"] is True
    held = entry(local_stack, a)
    assert held.deleted_by == "notFound" and held.date_updated == datetime(2026, 11, 30, 10, 5, tzinfo=UTC)

    sandbox.put_appointment(
        recent_event(a, location, "E2eCal", updated=datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    )
    summary = reconcile([location])
    assert summary["enqueued"] == 1, summary
    driver.run_until_empty()
    (healed,) = published(local_stack)
    assert healed["trigger"] == "reconcile" and healed["deleted"] is False
    assert healed["change"]["kind"] == "created" and healed["sequence"] == tombstone["sequence"] + 1
    assert not entry(local_stack, a).deleted
    assert reconcile([location])["enqueued"] == 0  # repaired: nothing more to recover


def test_a_delete_webhook_tombstone_stays_until_a_newer_date_updated(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    send(local_stack, a, "AppointmentCreate")
    driver.run_until_empty()
    published(local_stack)
    send(local_stack, a, "AppointmentDelete", snapshot={"dateUpdated": T0})
    driver.run_until_empty()
    published(local_stack)
    held = entry(local_stack, a)
    assert held.deleted and held.deleted_by == "webhook"
    assert decide(_listed(a, T0), held) is None  # listed live with the same dateUpdated: stays
    newer = (datetime(2026, 11, 30, 10, 0, tzinfo=UTC) + timedelta(minutes=1)).isoformat()
    assert decide(_listed(a, newer), held) is not None


def test_a_fetched_deleted_true_is_published_as_deleted_from_the_fetched_object(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    send(local_stack, a, "AppointmentCreate")
    driver.run_until_empty()
    published(local_stack)
    put(sandbox, a, dateUpdated=T1, deleted=True, title="as fetched")
    send(local_stack, a, snapshot={"title": "as sent"})
    driver.run_until_empty()
    (record,) = published(local_stack)
    assert record["deleted"] is True and record["change"]["kind"] == "deleted"
    assert record["appointment"]["title"] == "as fetched"
    assert json.loads(json.dumps(record["appointment"]))["deleted"] is True
    held = entry(local_stack, a)
    assert held.deleted and held.deleted_by == "fetched"


def test_no_publish_round_starts_once_the_batch_deadline_is_near(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer, monkeypatch: Any
) -> None:
    """Two webhooks of one appointment in one batch: two rounds. After the first, the Lambda has
    too little time left; the second record retries (same change and sequence), the ledger
    announces only what went out."""
    import dev.stack.poller as poller  # noqa: PLC0415

    contexts: list[LambdaContext] = []
    monkeypatch.setattr(
        poller, "make_context", lambda name, **kw: contexts.append(make_context(name, **kw)) or contexts[-1]
    )
    real = enricher.service.publisher

    class ThenLate:
        def publish(self, messages: Any, *, time_left: Any = None) -> dict[str, str]:
            out: dict[str, str] = real.publish(messages, time_left=time_left)
            contexts[-1].deadline_monotonic = time.monotonic() + 2  # under the 6.4 s reserve below
            return out

    enricher.service.deadline_margin_seconds = 8.0  # publish reserve: 0.8 of it
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    first, second = send(local_stack, a, "AppointmentCreate"), send(local_stack, a)
    enricher.service.publisher = ThenLate()
    try:
        _, kept = driver.step()
    finally:
        enricher.service.publisher = real
    assert len(kept) == 1
    (out,) = published(local_stack)
    assert out["webhookId"] == first
    held = entry(local_stack, a)
    assert held.announced and held.pending is not None  # the second record's state is not out yet
    driver.run_until_empty()
    (retried,) = published(local_stack)
    assert retried["webhookId"] == second and retried["sequence"] == out["sequence"] + 1
    assert entry(local_stack, a).pending is None


def test_no_publish_retry_starts_once_the_batch_deadline_is_near(
    stack_env: dict[str, str],
    moto_server: str,
    local_stack: LocalStack,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SendMessageBatch answers 500 (a fault proxy in front of moto, OutputMode=queue); the retry
    would start once the batch deadline is near (the backoff used the time up): neither the SDK
    nor the publisher attempts it, and the record retries with the next receive. One request in
    all, where SDK retries (2 a call) inside the publisher's own (3) would have made six, past the
    Lambda timeout and before the ledger announce and the receipts."""
    import boto3  # noqa: PLC0415

    import dev.stack.poller as poller  # noqa: PLC0415
    from appointment_enricher.aws.sdk import PUBLISH_CONFIG  # noqa: PLC0415
    from dev.fakes.faultproxy import Fault, FaultProxy  # noqa: PLC0415
    from dev.fakes.lambda_loader import load_function_module  # noqa: PLC0415

    contexts: list[LambdaContext] = []
    monkeypatch.setattr(
        poller, "make_context", lambda name, **kw: contexts.append(make_context(name, **kw)) or contexts[-1]
    )
    monkeypatch.delenv("OUTPUT_TOPIC_ARN")
    for name, value in local_stack.env(sandbox.url, output_mode="queue").items():
        monkeypatch.setenv(name, value)
    enricher = load_function_module("enricher")
    publisher = enricher.service.publisher
    (destination,) = publisher.destinations
    with FaultProxy(moto_server, operations=("SendMessageBatch",)).start() as proxy:
        destination.client = boto3.client("sqs", endpoint_url=proxy.url, config=PUBLISH_CONFIG)
        publisher.sleep = lambda _: setattr(contexts[-1], "deadline_monotonic", time.monotonic() + 1)
        proxy.set_fault(Fault.error(500))
        a = appointment_id()
        put(sandbox, a, dateUpdated=T0)
        send(local_stack, a, "AppointmentCreate")
        driver = Driver(enricher, local_stack)
        _, kept = driver.step()
        assert len(kept) == 1 and proxy.stats.requests["SendMessageBatch"] == 1, proxy.stats.requests
        assert not entry(local_stack, a).announced  # nothing went out: written ahead only
        proxy.set_fault(None)
        publisher.sleep = lambda _: None
        driver.run_until_empty()
    (record,) = published(local_stack)
    assert record["change"]["kind"] == "created" and record["sequence"] == 1
    assert entry(local_stack, a).announced


@pytest.mark.parametrize("days_ahead", [1, 1095])
def test_a_ledger_item_outlives_every_listing_of_its_appointment(
    days_ahead: int, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    """The reconciler lists an appointment from its start minus the look-ahead (731 days at most)
    until its start plus the look-back (366 at most); the item must still be there, or the
    appointment comes back as ``created``. One booked three years ahead is listed long after a
    TTL counted from the write alone would have ended."""
    a = appointment_id()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=days_ahead)
    put(
        sandbox,
        a,
        dateUpdated=T0,
        startTime=start.isoformat(),
        endTime=(start + timedelta(hours=1)).isoformat(),
    )
    send(local_stack, a, "AppointmentCreate")
    driver.run_until_empty()
    item = local_stack.client("dynamodb").get_item(
        TableName=local_stack.ledger_table_name, Key={"id": {"S": "appointment#" + a}}
    )["Item"]
    expires = int(item["expiration"]["N"])
    assert expires >= start.timestamp() + (366 + 7) * 86_400  # last listed at start + 366 days; a margin
    assert expires >= time.time() + 731 * 86_400  # and never less than the longest look-ahead
