"""The enricher handler over the wire: moto server (SQS, SNS, DynamoDB, Secrets Manager over HTTP
via AWS_ENDPOINT_URL) and the sandbox PowerLeads API (HTTP) with injected faults.

Batches are real ReceiveMessage output turned into Lambda SQS events by the dev poller; messages
the handler reports as failed are made visible again at once, as after the visibility timeout.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from appointment_enricher.ledger.base import settled_key
from appointment_enricher.ledger.dynamodb import settled_marks
from appointment_enricher.powerleads.client import RetryPolicy
from dev.fakes.lambda_loader import load_function_module
from dev.fakes.sandbox import DEFAULT_APPOINTMENTS_DIR, Fault, SandboxServer
from dev.stack.awslocal import LocalStack
from dev.stack.poller import SqsPoller

pytestmark = pytest.mark.integration

LOCATION = "0007BWpSzSwfiuSl0tR2"
PATH = "/calendars/events/appointments/"
SEED = json.loads((DEFAULT_APPOINTMENTS_DIR / "ocQHyuzHvysMo5N5VsXc.json").read_text())["event"]
MAX_AGE = 86400


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxServer]:
    """Our own sandbox with a short rate-limit window so 429s without Retry-After stay fast."""
    with SandboxServer(rate_limit_interval_ms=300) as server:
        yield server


@pytest.fixture
def enricher(stack_env: dict[str, str]) -> ModuleType:
    """A cold start of functions/enricher/app.py with small backoffs and timeouts."""
    module = load_function_module("enricher")
    client = module.service.source
    client.retry = RetryPolicy(base_delay=0.02, max_delay=0.1, max_attempts=6)
    client.timeout = (0.5, 0.5)
    module.service.deadline_margin_seconds = 1.0
    module.service.publisher.sleep = lambda _: None
    return module


class Driver:
    """One poll = one invocation on real ReceiveMessage output; failed messages come back at once."""

    def __init__(self, module: ModuleType, stack: LocalStack, timeout_seconds: float = 30.0) -> None:
        self.stack = stack
        self.sqs = stack.client("sqs")
        self.poller = SqsPoller(
            module.lambda_handler,
            stack.ingest_queue_url,
            sqs_client=self.sqs,
            wait_time_seconds=0,
            timeout_seconds=timeout_seconds,
        )
        self.kept: list[set[str]] = []

    def step(self) -> tuple[list[dict[str, Any]], set[str]]:
        messages = self.poller.receive()
        if not messages:
            return [], set()
        kept = self.poller.process(messages)
        self.kept.append(kept)
        for m in messages:
            if m["MessageId"] in kept:
                self.sqs.change_message_visibility(
                    QueueUrl=self.stack.ingest_queue_url,
                    ReceiptHandle=m["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
        return messages, kept

    def run_until_empty(self, max_steps: int = 10) -> None:
        for _ in range(max_steps):
            messages, _ = self.step()
            if not messages:
                return
        raise AssertionError("ingest queue did not drain")


@pytest.fixture
def driver(enricher: ModuleType, local_stack: LocalStack) -> Driver:
    return Driver(enricher, local_stack)


def appointment_id() -> str:
    return "T" + uuid.uuid4().hex[:19]


def put(sandbox: SandboxServer, event_id: str, **over: Any) -> None:
    event = copy.deepcopy(SEED)
    event.update(id=event_id, **over)
    sandbox.put_appointment(event)


def enqueue(
    stack: LocalStack,
    event_id: str,
    kind: str = "AppointmentUpdate",
    webhook_id: str | None = None,
    sqs_dedupe: str | None = None,
    raw: str | None = None,
    location: str = LOCATION,
) -> str:
    """Write what the receiver writes: the ingest envelope, group = appointment, dedupe = webhookId."""
    webhook_id = webhook_id or "wh-" + uuid.uuid4().hex
    webhook = {
        "type": kind,
        "locationId": location,
        "webhookId": webhook_id,
        "appointment": {"id": event_id, "calendarId": SEED["calendarId"], "appointmentStatus": "confirmed"},
    }
    body = raw or json.dumps(
        {"body": json.dumps(webhook), "receivedAt": "2026-01-01T00:00:00Z", "dedupeId": webhook_id}
    )
    stack.client("sqs").send_message(
        QueueUrl=stack.ingest_queue_url,
        MessageBody=body,
        MessageGroupId=event_id,
        MessageDeduplicationId=sqs_dedupe or webhook_id,
        MessageAttributes={"eventType": {"DataType": "String", "StringValue": kind}},
    )
    return webhook_id


def published(stack: LocalStack) -> list[dict[str, Any]]:
    """Records that reached EnrichedQueue (through the topic subscription), with their attributes."""
    out = []
    for m in stack.drain(stack.enriched_queue_url, wait_seconds=0):
        record = json.loads(m["Body"])
        record["_attributes"] = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
        out.append(record)
    return out


def upstream_calls(sandbox: SandboxServer, event_id: str) -> int:
    return sandbox.count(PATH + event_id)


def idempotency_items(stack: LocalStack) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = stack.client("dynamodb").scan(TableName=stack.table_name)["Items"]
    return items


def receipts(stack: LocalStack) -> list[dict[str, Any]]:
    """Receipt items: with the ledger on (the local stack's default) they and the ledger items'
    ``settled`` replace the Powertools claims; published deliveries are in ``settled``."""
    return [i for i in idempotency_items(stack) if i["id"]["S"].startswith("receipt#")]


def ledger_settled(stack: LocalStack, dedupe_ids: Iterable[str]) -> dict[str, int]:
    """Deliveries the announce writes marked settled in their ledger items: dedupe id -> expiry."""
    held: dict[bytes, int] = {}
    for item in stack.client("dynamodb").scan(TableName=stack.ledger_table_name)["Items"]:
        held.update(settled_marks(item.get("settled", {})))
    return {d: held[settled_key(d)] for d in dedupe_ids if settled_key(d) in held}


# ----- exactly one effect per webhook --------------------------------------------------------


def test_duplicates_publish_once_with_the_ledgers_receipts(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a)
    webhook_id = enqueue(local_stack, a)
    messages, kept = driver.step()
    assert kept == set()
    (record,) = published(local_stack)
    assert record["webhookId"] == webhook_id and record["deleted"] is False
    assert record["_attributes"] == {
        "eventType": "AppointmentUpdate",
        "locationId": LOCATION,
        "calendarId": SEED["calendarId"],
        "appointmentStatus": SEED["appointmentStatus"],
        "schemaVersion": "1",
        "changeKind": "created",  # the local stack runs with the ledger on
    }
    # settled by the ledger's announce write: no receipt item, no Powertools claim
    assert receipts(local_stack) == [] and idempotency_items(local_stack) == []
    (expires,) = ledger_settled(local_stack, [webhook_id]).values()
    assert expires >= time.time() + 2 * MAX_AGE - 60  # kept >= 2x max age, like a receipt

    # The sender retries after FIFO's five-minute window: a new SQS message, same webhook. On
    # its first receive it is fetched beside the ledger read (the read then finds it settled):
    # one upstream request, nothing published.
    enqueue(local_stack, a, webhook_id=webhook_id, sqs_dedupe="resent-" + webhook_id)
    _, kept = driver.step()
    assert kept == set() and published(local_stack) == []
    assert upstream_calls(sandbox, a) == 2
    # Lambda redelivers the very same SQS message (e.g. the batch was retried as a whole), which
    # SQS counts: the ledger read comes first and finds it settled, no upstream request.
    again = [{**m, "Attributes": {**m["Attributes"], "ApproximateReceiveCount": "2"}} for m in messages]
    assert driver.poller.process(again) == set()
    assert published(local_stack) == []
    assert upstream_calls(sandbox, a) == 2
    assert local_stack.drain(local_stack.ingest_queue_url, wait_seconds=0) == []


def test_without_a_ledger_duplicates_publish_once_with_the_powertools_idempotency_table(
    stack_env: dict[str, str],
    local_stack: LocalStack,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEDGER_TABLE_NAME", "")
    driver = Driver(load_function_module("enricher"), local_stack)
    a = appointment_id()
    put(sandbox, a)
    webhook_id = enqueue(local_stack, a)
    messages, kept = driver.step()
    assert kept == set()
    (record,) = published(local_stack)
    assert record["webhookId"] == webhook_id and "change" not in record and record["trigger"] == "webhook"
    (item,) = idempotency_items(local_stack)
    assert item["status"]["S"] == "COMPLETED"
    assert int(item["expiration"]["N"]) >= time.time() + 2 * MAX_AGE - 60
    enqueue(local_stack, a, webhook_id=webhook_id, sqs_dedupe="resent-" + webhook_id)
    driver.step()
    driver.poller.process(messages)
    assert published(local_stack) == [] and upstream_calls(sandbox, a) == 1


class FailingPublishes:
    """Proxy for the SNS client whose first ``n`` PublishBatch calls fail (throttled endpoint)."""

    def __init__(self, client: Any, n: int) -> None:
        self.client, self.n = client, n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def publish_batch(self, **kwargs: Any) -> Any:
        if self.n > 0:
            self.n -= 1
            raise ConnectionError("simulated SNS outage")
        return self.client.publish_batch(**kwargs)


def test_a_record_that_failed_part_way_is_completed_by_the_retry(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a)
    destination = enricher.service.publisher.destinations[0]
    destination.client = FailingPublishes(destination.client, n=3)  # all three in-call attempts
    webhook_id = enqueue(local_stack, a)
    messages, kept = driver.step()
    assert kept == {messages[0]["MessageId"]}  # claimed + fetched, then the publish failed
    assert published(local_stack) == [] and receipts(local_stack) == []  # not settled
    assert ledger_settled(local_stack, [webhook_id]) == {}
    _, kept = driver.step()
    assert kept == set()
    assert [r["webhookId"] for r in published(local_stack)] == [webhook_id]
    assert list(ledger_settled(local_stack, [webhook_id])) == [webhook_id] and receipts(local_stack) == []


# ----- order and coalescing ------------------------------------------------------------------


def test_per_appointment_order_holds_across_retries(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a, b = appointment_id(), appointment_id()
    put(sandbox, a)
    put(sandbox, b)
    sandbox.queue_faults([Fault.error(503)] * 6, event_id=a)  # more than the client's attempts
    order = [
        enqueue(local_stack, a, "AppointmentDelete"),
        enqueue(local_stack, a),
        enqueue(local_stack, a),
    ]
    other = enqueue(local_stack, b)
    messages, kept = driver.step()
    assert len(messages) == 4
    assert len(kept) == 2  # the two updates of A; A's earlier delete and B went out
    first = published(local_stack)
    assert sorted(r["webhookId"] for r in first) == sorted([order[0], other])
    driver.run_until_empty()
    second = published(local_stack)
    assert [r["webhookId"] for r in first + second if r["appointmentId"] == a] == order
    assert upstream_calls(sandbox, a) == 7  # 6 failed attempts, then one fetch for both updates


def test_n_updates_in_a_batch_make_one_upstream_call(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a = appointment_id()
    put(sandbox, a)
    order = [enqueue(local_stack, a) for _ in range(6)]
    messages, kept = driver.step()
    assert len(messages) == 6 and kept == set()
    assert upstream_calls(sandbox, a) == 1
    records = published(local_stack)
    assert [r["webhookId"] for r in records] == order
    assert all(r["appointment"]["id"] == a and not r["deleted"] for r in records)


def test_transient_faults_are_absorbed_within_one_invocation(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    # The 429 with ``Remaining: 0`` also empties the fleet budget, which then hands out one token
    # per slot; on a loaded machine a thread can lose several slots in a row and its item is handed
    # back (not a failure: tests/integration/test_budget.py covers that). This test is about the
    # retry loop, so the budget may wait as long as the batch does.
    enricher.service.source.budget.max_wait = 30.0
    ids = [appointment_id() for _ in range(6)]
    for event_id in ids:
        put(sandbox, event_id)
    sandbox.set_latency(30)
    sandbox.queue_faults([Fault.error(429, headers={"Retry-After": "0.2"})], event_id=ids[0])
    sandbox.queue_faults([Fault.error(429)], event_id=ids[1])  # Remaining: 0, Interval: 300 ms
    sandbox.queue_faults([Fault.error(500), Fault.error(502), Fault.error(503)], event_id=ids[2])
    sandbox.queue_faults([Fault.hang(1.5)], event_id=ids[3])  # read timeout 0.5 s
    sandbox.queue_faults([Fault.drop()], event_id=ids[4])
    webhook_ids = [enqueue(local_stack, event_id) for event_id in ids]
    messages, kept = driver.step()
    assert len(messages) == 6 and kept == set()
    assert sorted(r["webhookId"] for r in published(local_stack)) == sorted(webhook_ids)


def test_a_retry_budget_past_the_deadline_is_a_batch_item_failure(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    a, b = appointment_id(), appointment_id()
    put(sandbox, a)
    put(sandbox, b, locationId="OtherLocation000001")
    sandbox.queue_faults([Fault.error(429, headers={"Retry-After": "120"})], event_id=a)
    enqueue(local_stack, a)
    enqueue(local_stack, b, location="OtherLocation000001")  # its own rate-limit window
    started = time.monotonic()
    messages, kept = driver.step()
    assert time.monotonic() - started < 5  # gave up at once instead of sleeping 120 s
    assert [m["MessageId"] for m in messages if m["MessageId"] in kept] == [messages[0]["MessageId"]]
    assert [r["appointmentId"] for r in published(local_stack)] == [b]
    # The retry comes while the location is still paused: no request is made at all.
    driver.step()
    assert upstream_calls(sandbox, a) == 1 and published(local_stack) == []
    enricher.service.source.gate._resume_at.clear()  # ... 120 s later
    driver.run_until_empty()
    assert [r["appointmentId"] for r in published(local_stack)] == [a]


# ----- quarantine and deleted records ---------------------------------------------------------


def test_every_quarantined_message_carries_its_reason(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    cases = {
        "UpstreamRejected": [Fault.error(422)],
        "InvalidAppointment": [Fault.invalid_body()],
        "InvalidUpstreamBody": [Fault.invalid_body("<html>maintenance</html>")],
    }
    sent: dict[str, str] = {}
    for error_type, faults in cases.items():
        event_id = appointment_id()
        put(sandbox, event_id)
        sandbox.queue_faults(faults, event_id=event_id)
        sent[error_type] = enqueue(local_stack, event_id)
    bad_request = appointment_id()
    put(sandbox, bad_request)
    sandbox.queue_faults([Fault.error(400)], event_id=bad_request)
    sent["UpstreamRejected/400"] = enqueue(local_stack, bad_request)
    huge = appointment_id()
    put(sandbox, huge, notes="x" * (260 * 1024))
    sent["RecordTooLarge"] = enqueue(local_stack, huge)
    enqueue(local_stack, appointment_id(), raw="this is not an ingest message")
    sent["InvalidIngestMessage"] = "this is not an ingest message"

    originals = {}
    messages, kept = driver.step()
    assert len(messages) == 6 and kept == set()  # all acknowledged
    for m in messages:
        originals[m["MessageId"]] = m["Body"]
    parked = local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0)
    assert len(parked) == 6
    by_type: dict[str, list[dict[str, str]]] = {}
    for m in parked:
        attributes = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
        assert attributes["errorMessage"] and attributes["failedAt"].endswith("Z")
        assert m["Body"] == originals[attributes["sourceMessageId"]]  # the original, unchanged
        by_type.setdefault(attributes["errorType"], []).append(attributes | {"body": m["Body"]})
    assert sorted((t, len(v)) for t, v in by_type.items()) == [
        ("InvalidAppointment", 1),
        ("InvalidIngestMessage", 1),
        ("InvalidUpstreamBody", 1),
        ("RecordTooLarge", 1),
        ("UpstreamRejected", 2),
    ]
    assert {a["errorMessage"][:8] for a in by_type["UpstreamRejected"]} == {"HTTP 400", "HTTP 422"}
    assert published(local_stack) == []
    assert local_stack.drain(local_stack.ingest_queue_url, wait_seconds=0) == []
    # Completed, so a late duplicate is not quarantined twice (redrive gives a fresh dedupe id);
    # the unparseable message has no dedupe id to claim.
    assert [i["outcome"]["S"] for i in receipts(local_stack)] == ["quarantined"] * 5


def test_404_and_deletes_publish_deleted_records_from_the_snapshot(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    gone, deleted = appointment_id(), appointment_id()
    put(sandbox, deleted)
    enqueue(local_stack, gone)
    enqueue(local_stack, deleted, "AppointmentDelete")
    _, kept = driver.step()
    assert kept == set()
    records = {r["appointmentId"]: r for r in published(local_stack)}
    assert records[gone]["deleted"] is True and records[gone]["eventType"] == "AppointmentUpdate"
    assert records[deleted]["deleted"] is True and records[deleted]["eventType"] == "AppointmentDelete"
    assert records[gone]["appointment"] == {
        "id": gone,
        "calendarId": SEED["calendarId"],
        "appointmentStatus": "confirmed",
    }
    assert upstream_calls(sandbox, gone) == 1 and upstream_calls(sandbox, deleted) == 0


# ----- observability ------------------------------------------------------------------------


@contextmanager
def captured_logs(module: ModuleType) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(module.logger.registered_formatter)
    target = logging.getLogger(module.logger.name)  # one logger per service name, shared by reloads
    level = target.level
    target.setLevel(logging.INFO)
    target.addHandler(handler)
    try:
        yield stream
    finally:
        target.removeHandler(handler)
        target.setLevel(level)


def emf_metrics(stdout: str) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for line in stdout.splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        for definition in document["_aws"]["CloudWatchMetrics"]:
            for metric in definition["Metrics"]:
                value = document[metric["Name"]]
                values.setdefault(metric["Name"], []).extend(value if isinstance(value, list) else [value])
    return values


def total(metrics: dict[str, Any], name: str) -> float:
    return float(sum(metrics.get(name, [])))


@pytest.fixture
def metrics_on(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")


def test_outcomes_are_emitted_as_emf_metrics_and_logged_with_the_dedupe_id(
    metrics_on: None,
    enricher: ModuleType,
    driver: Driver,
    local_stack: LocalStack,
    sandbox: SandboxServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ok, gone, rejected, limited = (appointment_id() for _ in range(4))
    for event_id in (ok, rejected):
        put(sandbox, event_id)
    put(sandbox, limited, locationId="OtherLocation000002")
    sandbox.queue_faults([Fault.error(422)], event_id=rejected)
    sandbox.queue_faults(
        [Fault.error(429), Fault.error(429, headers={"Retry-After": "120"})], event_id=limited
    )
    webhook_ok = enqueue(local_stack, ok)
    enqueue(local_stack, gone)
    enqueue(local_stack, rejected)
    enqueue(local_stack, limited, location="OtherLocation000002")  # its pause must not stall the rest
    capsys.readouterr()
    enricher.metrics.clear_metrics()  # one metric set per process; earlier tests ran with metrics off
    with captured_logs(enricher) as logs:
        driver.step()
    metrics = emf_metrics(capsys.readouterr().out)
    assert total(metrics, "RecordsReceived") == 4.0
    assert total(metrics, "RecordsEnriched") == 1.0
    assert total(metrics, "RecordsDeleted") == 1.0
    assert total(metrics, "RecordsQuarantined") == 1.0
    assert total(metrics, "RecordsRetried") == 1.0
    assert total(metrics, "Upstream429") == 2.0
    assert len(metrics["UpstreamLatency"]) == 5  # ok, gone, rejected, limited x2
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    (published_line,) = [x for x in lines if x.get("appointmentId") == ok]
    assert published_line["correlation_id"] == webhook_ok
    assert published_line["message"] == "record published"


def test_auth_failures_are_retryable_counted_and_the_token_never_logged(
    metrics_on: None,
    stack_env: dict[str, str],
    local_stack: LocalStack,
    sandbox: SandboxServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = "revoked-" + uuid.uuid4().hex
    local_stack.set_token(token)
    module = load_function_module("enricher")
    module.service.deadline_margin_seconds = 1.0
    a = appointment_id()
    put(sandbox, a)
    enqueue(local_stack, a)
    capsys.readouterr()
    module.metrics.clear_metrics()
    with captured_logs(module) as logs:
        _, kept = Driver(module, local_stack).step()
    out = capsys.readouterr()
    assert len(kept) == 1  # retryable: the message comes back
    assert total(emf_metrics(out.out), "UpstreamAuthFailure") == 2.0  # first try + one re-read of the secret
    assert token not in out.out + out.err + logs.getvalue()
    assert "UpstreamAuthError" in logs.getvalue()


class FakeSubsegment:
    def __init__(self, sink: list[dict[str, str]]) -> None:
        self.sink = sink
        self.annotations: dict[str, str] = {}

    def put_annotation(self, key: str, value: str) -> None:
        self.annotations[key] = value

    def put_metadata(self, key: str, value: Any) -> None:
        pass


class FakeTracer:
    def __init__(self) -> None:
        self.segment: dict[str, str] = {}
        self.subsegments: list[dict[str, str]] = []
        self.provider = self

    def put_annotation(self, key: str, value: str) -> None:
        self.segment[key] = value

    @contextmanager
    def in_subsegment(self, name: str) -> Iterator[FakeSubsegment]:
        sub = FakeSubsegment(self.subsegments)
        yield sub
        self.subsegments.append(sub.annotations)


def test_tracer_annotations_name_the_appointment_and_location(
    enricher: ModuleType, driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    tracer = FakeTracer()
    enricher.tracer = tracer
    a, b = appointment_id(), appointment_id()
    for event_id in (a, b):
        put(sandbox, event_id)
        enqueue(local_stack, event_id)
    driver.step()
    assert sorted(s["appointmentId"] for s in tracer.subsegments) == sorted([a, b])
    assert {s["locationId"] for s in tracer.subsegments} == {LOCATION}


def test_the_handler_file_is_thin() -> None:
    source = (Path(__file__).resolve().parents[2] / "functions" / "enricher" / "app.py").read_text()
    assert "import requests" not in source and len(source.splitlines()) < 150
