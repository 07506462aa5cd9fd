"""Crash safety: SIGKILL the enricher process in the middle of a batch; nothing is lost or doubled.

An enricher "container" (``python -m dev.soak worker``: SqsPoller + EnricherFunction) runs in its
own process against this test's moto server and sandbox, over HTTP. The sandbox is slowed down so
a batch spends seconds in upstream fetches; the process is killed with SIGKILL once the batch's
first fetch is on the wire, i.e. after its messages were received and claimed (INPROGRESS in
DynamoDB) and before they were published or deleted. After the visibility timeout a fresh process
takes over: the messages come back, the stale claims expire (they last as long as the killed
invocation could have run) and every webhook ends as exactly one record.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from typing import Any

import pytest

from dev.awslocal import create_resources
from dev.signing import ingest_message, make_webhook, sign_ed25519
from dev.soak import appointment_event, start_worker_process, stop_process
from dev.sqs import queue_depth

pytestmark = pytest.mark.integration

VISIBILITY_TIMEOUT = 3
FUNCTION_TIMEOUT = 8.0  # the killed invocation's claims expire this long after they were taken
APPOINTMENTS = 8
PER_APPOINTMENT = 4


class Lines:
    """A child's stdout, read on a thread (JSON lines from ``dev.soak worker``)."""

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
    claims = stack.client("dynamodb").scan(TableName=stack.table_name)["Items"]
    assert len(claims) == len(webhook_ids) and all(c["status"]["S"] == "COMPLETED" for c in claims)


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
        claims = stack.client("dynamodb").scan(TableName=stack.table_name)["Items"]
        assert claims and all(c["status"]["S"] == "INPROGRESS" for c in claims)

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
