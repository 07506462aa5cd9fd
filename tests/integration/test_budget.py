"""The fleet's upstream budget over the wire: the enricher handler (moto server: SQS, SNS,
DynamoDB over HTTP) and the sandbox PowerLeads API counting requests per location and per day.

Time is never waited out: a handed-back message's visibility is reset by the test (as if the
budget had returned), and the daily reset is driven by rewriting the budget item's day.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from appointment_enricher.budget.base import Limits, utc_day
from appointment_enricher.budget.dynamodb import DynamoBudget
from dev.fakes.lambda_loader import load_function_module
from dev.fakes.sandbox import DEFAULT_APPOINTMENTS_DIR, SandboxServer
from dev.stack.awslocal import LocalStack
from dev.stack.poller import SqsPoller

pytestmark = pytest.mark.integration

LOCATION = "0007BWpSzSwfiuSl0tR2"
OTHER = "0007BWpSzSwfiuSl0tR3"
PATH = "/calendars/events/appointments/"
SEED = json.loads((DEFAULT_APPOINTMENTS_DIR / "ocQHyuzHvysMo5N5VsXc.json").read_text())["event"]
DAILY = 3


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxServer]:
    """Our own sandbox: a daily quota of three requests per location."""
    with SandboxServer(daily_limit=DAILY) as server:
        yield server


@pytest.fixture
def enricher(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The enricher without a share of its own: these tests are about the shared bucket (the
    container's own request per location and interval is tested last, with the template's env)."""
    assert stack_env["BUDGET_TABLE_NAME"] and stack_env["INGEST_QUEUE_URL"]
    assert stack_env["ENRICHER_MAXIMUM_CONCURRENCY"] == "5"  # what the template deploys
    monkeypatch.delenv("ENRICHER_MAXIMUM_CONCURRENCY")
    return load_function_module("enricher")


@pytest.fixture
def poller(enricher: ModuleType, local_stack: LocalStack) -> SqsPoller:
    return SqsPoller(
        enricher.lambda_handler,
        local_stack.ingest_queue_url,
        sqs_client=local_stack.client("sqs"),
        wait_time_seconds=0,
        timeout_seconds=30,
    )


def put(sandbox: SandboxServer, location: str = LOCATION) -> str:
    event = copy.deepcopy(SEED)
    event.update(id="B" + uuid.uuid4().hex[:19], locationId=location)
    sandbox.put_appointment(event)
    return str(event["id"])


def enqueue(stack: LocalStack, event_id: str, location: str = LOCATION) -> None:
    webhook_id = "wh-" + uuid.uuid4().hex
    webhook = {
        "type": "AppointmentUpdate",
        "locationId": location,
        "webhookId": webhook_id,
        "appointment": {"id": event_id, "calendarId": SEED["calendarId"], "appointmentStatus": "confirmed"},
    }
    body = {"body": json.dumps(webhook), "receivedAt": "2026-01-01T00:00:00Z", "dedupeId": webhook_id}
    stack.client("sqs").send_message(
        QueueUrl=stack.ingest_queue_url,
        MessageBody=json.dumps(body),
        MessageGroupId=event_id,
        MessageDeduplicationId=webhook_id,
    )


def budget_item(stack: LocalStack, location: str = LOCATION) -> dict[str, Any] | None:
    item: dict[str, Any] | None = (
        stack.client("dynamodb")
        .get_item(
            TableName=stack.ref("LedgerTable"), Key={"id": {"S": "budget#" + location}}, ConsistentRead=True
        )
        .get("Item")
    )
    return item


def set_budget(stack: LocalStack, *, tat: float, used: int = 0, day: str | None = None) -> None:
    """What other containers did: the bucket filled until ``tat``, ``used`` requests today."""
    stack.client("dynamodb").put_item(
        TableName=stack.ref("LedgerTable"),
        Item={
            "id": {"S": "budget#" + LOCATION},
            "tat": {"N": str(tat)},
            "day": {"S": day or utc_day(time.time())},
            "used": {"N": str(used)},
            "v": {"N": "7"},
        },
    )


def step(poller: SqsPoller) -> tuple[list[dict[str, Any]], set[str]]:
    messages = poller.receive()
    return messages, (poller.process(messages) if messages else set())


def come_back(stack: LocalStack, messages: list[dict[str, Any]], kept: set[str]) -> None:
    """The budget returned: what was handed back becomes visible now."""
    for m in messages:
        if m["MessageId"] in kept:
            stack.client("sqs").change_message_visibility(
                QueueUrl=stack.ingest_queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )


def records(stack: LocalStack) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in stack.drain(stack.enriched_queue_url, wait_seconds=0)]


def test_rate_limiting_alone_never_reaches_the_dlq(
    poller: SqsPoller, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    event_id = put(sandbox)
    enqueue(local_stack, event_id)
    set_budget(local_stack, tat=time.time() + 3600)  # the fleet spent the window for an hour
    bodies, resent = set(), 0
    for attempt in range(12):  # more than twice the template's maxReceiveCount (5)
        messages, kept = step(poller)
        assert len(messages) == 1, attempt
        bodies.add(messages[0]["Body"])
        if kept:  # handed back at once, visible again when budget returns (not in 360 s)
            assert poller.receive() == []
            come_back(local_stack, messages, kept)
        else:  # one receive short of maxReceiveCount: sent again as a new message, the old acknowledged
            resent += 1
            assert int(messages[0]["Attributes"]["ApproximateReceiveCount"]) == 4
        assert local_stack.drain(local_stack.ingest_dlq_url, wait_seconds=0) == [], attempt
    assert resent >= 2 and len(bodies) == 1
    assert sandbox.count(PATH + event_id) == 0  # no request was spent finding the limit
    local_stack.client("dynamodb").delete_item(
        TableName=local_stack.ref("LedgerTable"), Key={"id": {"S": "budget#" + LOCATION}}
    )
    for _ in range(3):
        messages, kept = step(poller)
        come_back(local_stack, messages, kept)
    assert [r["appointment"]["id"] for r in records(local_stack)] == [event_id]
    assert local_stack.drain(local_stack.ingest_dlq_url, wait_seconds=0) == []
    assert local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0) == []


def test_throttled_work_takes_places_in_its_locations_queue_one_fleet_token_apart(
    poller: SqsPoller, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    """Three messages the bucket cannot serve for a minute are handed back with places in the
    location's queue (``qtat``), one token of the fleet's steady rate apart from where the bucket
    frees: they come back as the fleet can serve them, not all at once, and stay out of the other
    locations' way until then."""
    from appointment_enricher.budget.wiring import fleet_limits  # noqa: PLC0415

    ids = [put(sandbox) for _ in range(3)]
    for event_id in ids:
        enqueue(local_stack, event_id)
    tat = time.time() + 60
    set_budget(local_stack, tat=tat)
    messages, kept = step(poller)
    assert len(messages) == 3 and len(kept) == 3
    limits = fleet_limits(None)  # this module's enricher runs without shares
    item = budget_item(local_stack)
    assert item is not None and "qtat" in item
    frees = tat + limits.spacing - limits.ahead  # when the bucket serves its next token
    assert float(item["qtat"]["N"]) == pytest.approx(frees + 3 * limits.place_spacing)
    assert all(sandbox.count(PATH + event_id) == 0 for event_id in ids)
    assert poller.receive() == []  # handed back for about a minute, not one second
    local_stack.client("dynamodb").delete_item(
        TableName=local_stack.ref("LedgerTable"), Key={"id": {"S": "budget#" + LOCATION}}
    )
    come_back(local_stack, messages, kept)
    for _ in range(2):
        step(poller)
    assert sorted(r["appointment"]["id"] for r in records(local_stack)) == sorted(ids)


def test_the_daily_quota_parks_and_resumes_after_the_reset(
    poller: SqsPoller, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    first = [put(sandbox) for _ in range(DAILY)]
    for event_id in first:
        enqueue(local_stack, event_id)
    for _ in range(3):
        step(poller)
    assert len(records(local_stack)) == DAILY
    item = budget_item(local_stack)
    assert (
        item is not None and int(item["used"]["N"]) >= DAILY
    )  # the day's quota, sized by upstream's headers
    parked = put(sandbox)
    enqueue(local_stack, parked)
    other = put(sandbox, OTHER)
    enqueue(local_stack, other, OTHER)
    messages, kept = step(poller)
    assert len(messages) == 2
    assert [m["MessageId"] for m in messages if m["MessageId"] in kept] == [
        m["MessageId"] for m in messages if parked in m["Body"]
    ]
    assert [r["appointment"]["id"] for r in records(local_stack)] == [other]  # not held up
    assert poller.receive() == []  # parked: invisible until the reset
    assert sandbox.count(PATH + parked) == 0
    # Midnight UTC: yesterday's count no longer applies (upstream's resets with it).
    sandbox.reset()
    set_budget(local_stack, tat=0, used=200_000, day="2000-01-01")
    come_back(local_stack, messages, kept)
    step(poller)
    assert [r["appointment"]["id"] for r in records(local_stack)] == [parked]
    assert local_stack.drain(local_stack.ingest_dlq_url, wait_seconds=0) == []


def test_containers_sharing_the_table_never_exceed_the_window_together(local_stack: LocalStack) -> None:
    """Three containers' buckets on one DynamoDB item, asking greedily at one instant: together
    they get at most one lease's worth, and conflicting writes are decided again, not lost."""
    dynamodb, table = local_stack.client("dynamodb"), local_stack.ref("LedgerTable")
    containers = [DynamoBudget(dynamodb, table) for _ in range(3)]
    now, limits = time.time(), Limits()
    granted = [c.lease(OTHER, 5, now=now, limits=limits).tokens for c in containers for _ in range(2)]
    assert sum(granted) == limits.burst
    item = budget_item(local_stack, OTHER)
    assert item is not None and int(item["used"]["N"]) == limits.burst
    later = now + limits.interval_seconds
    granted = [
        c.lease(OTHER, 5, now=later + i * limits.spacing * 5, limits=limits).tokens
        for i, c in enumerate(containers)
    ]
    assert granted == [5, 5, 5]


def test_a_location_with_a_few_requests_per_interval_costs_no_budget_write(
    stack_env: dict[str, str], local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    """As deployed (``ENRICHER_MAXIMUM_CONCURRENCY`` from the template: five containers, nine
    requests per location and interval each of their own): three changes in one fresh location
    and one in another are fetched and published with no lease written to the table."""
    assert stack_env["ENRICHER_MAXIMUM_CONCURRENCY"] == "5"
    poller = SqsPoller(
        load_function_module("enricher").lambda_handler,
        local_stack.ingest_queue_url,
        sqs_client=local_stack.client("sqs"),
        wait_time_seconds=0,
        timeout_seconds=30,
    )
    locations = ["0007BWpSzSwfiuSl" + uuid.uuid4().hex[:4] for _ in range(2)]
    locations = [locations[0], locations[0], locations[0], locations[1]]
    ids = [put(sandbox, location) for location in locations]
    for event_id, location in zip(ids, locations, strict=True):
        enqueue(local_stack, event_id, location)
    messages, kept = step(poller)
    assert len(messages) == 4 and kept == set()
    assert sorted(r["appointment"]["id"] for r in records(local_stack)) == sorted(ids)
    # No lease: the bucket's tat never moved. (The item exists: this module's sandbox allows three
    # requests a day, so upstream's X-RateLimit-Daily-Remaining after one is a real gap in the
    # day's count and is written; at the documented 200,000 a day it would not be.)
    items = [budget_item(local_stack, location) for location in sorted(set(locations))]
    assert [float(item["tat"]["N"]) if item else 0.0 for item in items] == [0.0, 0.0]
    assert all(sandbox.count(PATH + event_id) == 1 for event_id in ids)
