"""Crash safety: SIGKILL the enricher process in the middle of a batch; nothing is lost or doubled.

An enricher "container" (``python -m dev.soak.webhooks worker``: SqsPoller + EnricherFunction) runs in its
own process against this test's moto server and sandbox, over HTTP. The sandbox is slowed down so
a batch spends seconds in upstream fetches; the process is killed with SIGKILL once the batch's
first fetch is on the wire, i.e. after its messages were received and read against the ledger
and before they were published or deleted. After the visibility timeout a fresh process takes
over: the messages come back and every webhook ends as exactly one record. (The local stack runs
with the ledger on, so its receipts and conditional writes are the claims: there is no
INPROGRESS record to expire.)
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from typing import Any

import pytest

from dev.fakes.signing import ingest_message, make_webhook, sign_ed25519
from dev.soak.plan import appointment_event
from dev.soak.processes import start_worker_process, stop_process
from dev.stack.awslocal import create_resources
from dev.stack.sqs import queue_depth
from tests.integration.test_enricher_pipeline import ledger_settled

pytestmark = pytest.mark.integration

VISIBILITY_TIMEOUT = 3
FUNCTION_TIMEOUT = 8.0  # the killed invocation's claims expire this long after they were taken
APPOINTMENTS = 8
PER_APPOINTMENT = 4


class Lines:
    """A child's stdout, read on a thread (JSON lines from ``dev.soak.webhooks worker``)."""

    def __init__(self, proc: Any) -> None:
        self.items: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: Any) -> None:
        for line in proc.stdout:
            try:
                self.items.append(json.loads(line))
            except ValueError:
                continue

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [i for i in list(self.items) if i.get("event") == kind]


def _until(condition, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def _stack_with_webhooks(moto_server: str, sandbox: Any) -> tuple[Any, dict[str, str], list[str]]:
    """A fresh stack whose ingest queue holds APPOINTMENTS x PER_APPOINTMENT webhooks, in order."""
    stack = create_resources(
        moto_server, suffix=uuid.uuid4().hex[:10], visibility_timeout=VISIBILITY_TIMEOUT, max_receive_count=10
    )
    sqs = stack.client("sqs")
    env = stack.env(
        sandbox.url,
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="ERROR",
        POWERTOOLS_TRACE_DISABLED="true",
        ENRICHER_MAX_WORKERS="2",
    )
    webhook_ids: list[str] = []
    for index in range(APPOINTMENTS):
        appointment_id = f"Crash{uuid.uuid4().hex[:8]}A{index}"
        location_id = f"CrashLoc{index % 3}"
        event = appointment_event(appointment_id, location_id, index)
        sandbox.put_appointment(event)
        for seq in range(PER_APPOINTMENT):
            webhook_id = f"crash-{index}-{seq}-{uuid.uuid4().hex[:6]}"
            kind = "AppointmentCreate" if seq == 0 else "AppointmentUpdate"
            body = make_webhook(kind, {"id": appointment_id, "title": f"seq {seq}"}, location_id, webhook_id)
            sqs.send_message(
                QueueUrl=stack.ingest_queue_url,
                MessageBody=ingest_message(
                    body, "2026-05-01T12:00:00Z", webhook_id, {"x-ghl-signature": sign_ed25519(body)}
                ),
                MessageGroupId=appointment_id,
                MessageDeduplicationId=webhook_id,
                MessageAttributes={
                    "eventType": {"DataType": "String", "StringValue": kind},
                    "locationId": {"DataType": "String", "StringValue": location_id},
                },
            )
            webhook_ids.append(webhook_id)

    return stack, env, webhook_ids


def _finish_with_fresh_enricher(stack: Any, env: dict[str, str], total: int) -> list[dict[str, Any]]:
    """Start a new enricher process, collect records until all ``total`` are out (bounded)."""
    sqs = stack.client("sqs")
    second = start_worker_process(env, timeout_seconds=FUNCTION_TIMEOUT)
    records: list[dict[str, Any]] = []
    try:

        def all_out() -> bool:
            records.extend(stack.drain(stack.enriched_queue_url, wait_seconds=0))
            return len(records) >= total and queue_depth(sqs, stack.ingest_queue_url, in_flight=True) == 0

        assert _until(all_out, 60, step=0.5), (
            f"{len(records)} of {total} records after the restart; "
            f"{queue_depth(sqs, stack.ingest_queue_url, in_flight=True)} still queued"
        )
        time.sleep(VISIBILITY_TIMEOUT + 1)  # anything still to come (a duplicate) would show now
        records.extend(stack.drain(stack.enriched_queue_url, wait_seconds=1))
    finally:
        stop_process(second)
    return records


def _assert_balanced(stack: Any, records: list[dict[str, Any]], webhook_ids: list[str]) -> None:
    published = [json.loads(m["Body"])["webhookId"] for m in records]
    duplicates = sorted(w for w in set(published) if published.count(w) > 1)
    assert not duplicates, f"published twice: {duplicates}"
    assert sorted(published) == sorted(webhook_ids), "lost records after the crash"
    assert stack.drain(stack.quarantine_queue_url, wait_seconds=0) == []
    assert stack.drain(stack.ingest_dlq_url, wait_seconds=0) == []
    assert _settled(stack, webhook_ids) == set(webhook_ids)
    # The ledger is on: per appointment, in publish order, one "created" and then "unchanged"
    # (the sandbox serves one state per appointment), whatever the crash cut.
    kinds: dict[str, list[str]] = {}
    for message in records:
        record = json.loads(message["Body"])
        kinds.setdefault(record["appointmentId"], []).append(record["change"]["kind"])
    assert all(k == ["created"] + ["unchanged"] * (len(k) - 1) for k in kinds.values()), kinds


def _settled(stack: Any, webhook_ids: list[str]) -> set[str]:
    """Settled deliveries: receipt items in the idempotency table, or ``settled`` in a ledger item."""
    items = stack.client("dynamodb").scan(TableName=stack.table_name)["Items"]
    receipted = {i["id"]["S"].removeprefix("receipt#") for i in items if i["id"]["S"].startswith("receipt#")}
    return receipted | set(ledger_settled(stack, webhook_ids))


def test_sigkill_mid_batch_then_fresh_enricher_balances(moto_server, sandbox) -> None:
    stack, env, webhook_ids = _stack_with_webhooks(moto_server, sandbox)
    sqs = stack.client("sqs")
    total = len(webhook_ids)
    sandbox.set_latency(1500)  # each fetch takes 1.5 s: a batch is mid-flight for seconds
    first = start_worker_process(env, timeout_seconds=FUNCTION_TIMEOUT)
    try:
        lines = Lines(first)
        assert _until(lambda: sandbox.count("/calendars/events/appointments/") >= 1, 30), (
            "the first enricher never reached the upstream"
        )
        time.sleep(0.3)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert first.returncode == -signal.SIGKILL
        invoked = lines.events("invoke")
        assert invoked, "killed before any invocation started"
        assert not lines.events("done"), "the batch finished before the kill: not a mid-batch crash"
        in_batch = len(invoked[-1]["messageIds"])
        assert in_batch > 1
        # Nothing of the killed batch was published, and its messages are in flight, not lost.
        assert stack.drain(stack.enriched_queue_url, wait_seconds=0) == []
        assert queue_depth(sqs, stack.ingest_queue_url, in_flight=True) == total
        assert _settled(stack, webhook_ids) == set()  # nothing of it was settled

        time.sleep(VISIBILITY_TIMEOUT)
        sandbox.set_latency(0)
    finally:
        stop_process(first)
    _assert_balanced(stack, _finish_with_fresh_enricher(stack, env, total), webhook_ids)


def test_sigkill_after_publish_before_ack_publishes_nothing_twice(moto_server, sandbox) -> None:
    """The nastier crash: the batch is published and its claims completed, but the process dies
    before SQS hears about it (Lambda's poller can lose the ack the same way). The messages come
    back; only the idempotency table stands between them and duplicate records."""
    stack, env, webhook_ids = _stack_with_webhooks(moto_server, sandbox)
    sqs = stack.client("sqs")
    total = len(webhook_ids)
    first = start_worker_process(env, timeout_seconds=FUNCTION_TIMEOUT, pause_after_invoke=60)
    try:
        lines = Lines(first)
        assert _until(lambda: bool(lines.events("done")), 30), "the first batch never finished"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        batch = lines.events("invoke")[0]["messageIds"]
        assert lines.events("done")[0]["result"] == {"batchItemFailures": []}
        early = stack.drain(stack.enriched_queue_url, wait_seconds=1)
        assert len(early) == len(batch) > 1  # published ...
        assert queue_depth(sqs, stack.ingest_queue_url, in_flight=True) == total  # ... but never acknowledged
        time.sleep(VISIBILITY_TIMEOUT)
    finally:
        stop_process(first)
    later = _finish_with_fresh_enricher(stack, env, total - len(early))
    _assert_balanced(stack, early + later, webhook_ids)


class Killed(BaseException):
    """The container dying: raised where a crash would stop the process, caught by nothing."""


def test_crash_between_ledger_write_and_publish_leaves_no_gap_and_no_contradiction(
    stack_env: dict[str, str], local_stack: Any, sandbox: Any
) -> None:
    """The ledger is written ahead of the publish. The process dies in between: nothing is
    published, nothing acknowledged, nothing settled. The retry publishes every webhook once with
    the change the ledger recorded for it (not ``unchanged``), and the appointment's next change
    is told against exactly that state."""
    from appointment_enricher.ledger.dynamodb import DynamoLedger  # noqa: PLC0415
    from dev.fakes.lambda_loader import load_function_module  # noqa: PLC0415
    from tests.integration.test_change_tracking import send  # noqa: PLC0415
    from tests.integration.test_enricher_pipeline import Driver, put  # noqa: PLC0415

    module = load_function_module("enricher")
    module.service.deadline_margin_seconds = 0.5
    driver = Driver(module, local_stack, timeout_seconds=2.0)
    ids = [f"Crash{uuid.uuid4().hex[:8]}" for _ in range(3)]
    webhooks: dict[str, list[str]] = {}
    for a in ids:
        put(sandbox, a, dateUpdated="2026-11-30T10:00:00Z", appointmentStatus="confirmed")
        webhooks[a] = [send(local_stack, a, "AppointmentCreate"), send(local_stack, a)]

    def die(messages: Any, **_: Any) -> dict[str, str]:
        raise Killed

    real_publish = module.service.publisher.publish
    module.service.publisher.publish = die
    messages = driver.poller.receive()
    assert len(messages) == 6
    with pytest.raises(Killed):
        driver.poller.process(messages)
    module.service.publisher.publish = real_publish
    sqs = local_stack.client("sqs")
    for m in messages:
        sqs.change_message_visibility(
            QueueUrl=local_stack.ingest_queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )
    assert local_stack.drain(local_stack.enriched_queue_url, wait_seconds=0) == []
    ledger = DynamoLedger(local_stack.client("dynamodb"), local_stack.ledger_table_name)
    held = ledger.entries(ids)
    assert all(held[a].change_for(w) is not None for a in ids for w in webhooks[a])  # written ahead

    put(sandbox, ids[0], dateUpdated="2026-11-30T10:01:00Z", appointmentStatus="cancelled")
    assert _settled(local_stack, [w for a in ids for w in webhooks[a]]) == set()
    driver.run_until_empty()
    records = [
        json.loads(m["Body"]) for m in local_stack.drain(local_stack.enriched_queue_url, wait_seconds=0)
    ]
    by_appointment: dict[str, list[tuple[str, str]]] = {}
    for record in records:
        by_appointment.setdefault(record["appointmentId"], []).append(
            (record["webhookId"], record["change"]["kind"])
        )
    for a in ids:  # every webhook once, in order, with its recorded change
        assert by_appointment[a] == [(webhooks[a][0], "created"), (webhooks[a][1], "unchanged")]

    send(local_stack, ids[0])
    driver.run_until_empty()
    (next_record,) = [
        json.loads(m["Body"]) for m in local_stack.drain(local_stack.enriched_queue_url, wait_seconds=0)
    ]
    assert next_record["change"]["kind"] == "cancelled"
    assert next_record["change"]["previous"] == {"appointmentStatus": "confirmed"}
