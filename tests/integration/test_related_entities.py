"""Related entities over the wire (ENRICH_RELATED): the enricher handler on the moto server's
queues and topic, fetching contacts, calendars, users and locations from the sandbox API.

Every test makes its own ids, so the session's sandbox data and each cold start's cache (a fresh
handler module per test) never leak between tests.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from appointment_enricher.powerleads.client import RetryPolicy
from dev.fakes.lambda_loader import load_function_module
from dev.fakes.sandbox import DEFAULT_TOKEN, Fault, SandboxServer
from dev.stack.awslocal import LocalStack
from tests.integration.test_enricher_pipeline import SEED, Driver, published

pytestmark = pytest.mark.integration

ALL = "contact,calendar,assignedUser,location"


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer(rate_limit_interval_ms=300) as server:
        yield server


@pytest.fixture
def enricher(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("ENRICH_RELATED", ALL)
    module = load_function_module("enricher")
    client = module.service.source
    client.retry = RetryPolicy(base_delay=0.01, max_delay=0.02, max_attempts=3)
    client.timeout = (0.5, 0.5)
    module.service.deadline_margin_seconds = 1.0
    module.service.publisher.sleep = lambda _: None
    return module


@pytest.fixture
def driver(enricher: ModuleType, local_stack: LocalStack) -> Driver:
    return Driver(enricher, local_stack)


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:19]


def put_appointment(sandbox: SandboxServer, **over: Any) -> dict[str, Any]:
    """A fresh appointment with a fresh contact, calendar, user and location (seeded by the sandbox)."""
    event = copy.deepcopy(SEED)
    user = new_id("U")
    event.update(
        id=new_id("A"),
        locationId=new_id("L"),
        contactId=new_id("C"),
        calendarId=new_id("K"),
        assignedUserId=user,
        users=[user],
        startTime="2026-07-01T15:00:00Z",
        endTime="2026-07-01T15:30:00Z",
    )
    event.update(over)
    sandbox.put_appointment(event)
    return event


def enqueue(stack: LocalStack, event: dict[str, Any], kind: str = "AppointmentUpdate") -> str:
    """The receiver's ingest envelope around a webhook whose snapshot names the related ids."""
    webhook_id = new_id("wh")
    snapshot = {
        k: event[k] for k in ("id", "calendarId", "contactId", "assignedUserId", "startTime", "endTime")
    }
    webhook = {
        "type": kind,
        "locationId": event["locationId"],
        "webhookId": webhook_id,
        "appointment": snapshot,
    }
    body = json.dumps(
        {"body": json.dumps(webhook), "receivedAt": "2026-01-01T00:00:00Z", "dedupeId": webhook_id}
    )
    stack.client("sqs").send_message(
        QueueUrl=stack.ingest_queue_url,
        MessageBody=body,
        MessageGroupId=event["id"],
        MessageDeduplicationId=webhook_id,
    )
    return webhook_id


def entity(sandbox: SandboxServer, kind: str, entity_id: str) -> dict[str, Any]:
    found = sandbox.related.get(kind, entity_id)
    assert found is not None
    return found[1]


def calls(sandbox: SandboxServer, segment: str, entity_id: str) -> int:
    return sandbox.count(f"/{segment}/{entity_id}")


def test_every_entity_is_embedded_with_its_own_version_and_local_times(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    event = put_appointment(sandbox)
    enqueue(local_stack, event)
    _, kept = driver.step()
    assert kept == set()
    (record,) = published(local_stack)
    related = record["related"]
    contact = entity(sandbox, "contact", event["contactId"])
    location = entity(sandbox, "location", event["locationId"])
    assert related["contact"] == {
        k: contact[k] for k in ("id", "name", "firstName", "lastName", "email", "phone", "timezone", "tags")
    }
    assert "customFields" in contact and "customFields" not in related["contact"]  # CONTACT_FIELDS only
    assert related["calendar"] == entity(sandbox, "calendar", event["calendarId"])
    assert related["assignedUser"] == entity(sandbox, "assignedUser", event["assignedUserId"])
    assert related["location"] == location
    assert "relatedErrors" not in record
    zone = ZoneInfo(location["timezone"])
    assert record["derived"]["timezone"] == location["timezone"]
    start = datetime.fromisoformat(record["derived"]["startTimeLocal"])
    assert start.utcoffset() == datetime(2026, 7, 1, 15, tzinfo=ZoneInfo("UTC")).astimezone(zone).utcoffset()
    assert start == datetime.fromisoformat("2026-07-01T15:00:00+00:00")
    assert datetime.fromisoformat(record["derived"]["endTimeLocal"]) == datetime.fromisoformat(
        "2026-07-01T15:30:00+00:00"
    )
    versions = {r["path"].split("/")[1]: r["headers"]["Version"] for r in sandbox.requests_log()}
    assert versions == {
        "calendars": "2021-04-15",  # the appointment and the calendar
        "contacts": "2021-07-28",
        "users": "2021-07-28",
        "locations": "2021-07-28",
    }


@pytest.mark.parametrize(
    ("segment", "right"),
    [
        ("contacts", "2021-07-28"),
        ("calendars", "2021-04-15"),
        ("users", "2021-07-28"),
        ("locations", "2021-07-28"),
    ],
)
def test_the_sandbox_refuses_a_wrong_version(sandbox: SandboxServer, segment: str, right: str) -> None:
    event = put_appointment(sandbox)
    entity_id = {
        "contacts": event["contactId"],
        "calendars": event["calendarId"],
        "users": event["assignedUserId"],
        "locations": event["locationId"],
    }[segment]
    url = f"{sandbox.url}/{segment}/{entity_id}"
    auth = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    wrong = "2021-04-15" if right != "2021-04-15" else "2021-07-28"
    refused = requests.get(url, headers={**auth, "Version": wrong}, timeout=5)
    assert refused.status_code == 400 and right in refused.json()["message"][0]
    assert requests.get(url, headers={**auth, "Version": right}, timeout=5).status_code == 200


def test_unknown_entities_are_null_with_their_reason_and_never_quarantined(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    event = put_appointment(sandbox, assignedUserId="", users=[])
    sandbox.related.forget("contact", event["contactId"])  # 400 "Contact not found"
    sandbox.related.forget("calendar", event["calendarId"])  # 404
    enqueue(local_stack, event)
    _, kept = driver.step()
    assert kept == set()
    (record,) = published(local_stack)
    assert record["related"]["contact"] is None and record["related"]["calendar"] is None
    assert record["related"]["assignedUser"] is None
    assert record["relatedErrors"] == {"contact": "Invalid", "calendar": "NotFound", "assignedUser": "NoId"}
    assert record["related"]["location"]["id"] == event["locationId"]
    assert record["derived"]["timezone"] == record["related"]["location"]["timezone"]
    assert local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0) == []
    assert calls(sandbox, "users", "") == 0


def test_a_429_on_the_user_fetch_retries_the_message(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    event = put_appointment(sandbox)
    user = event["assignedUserId"]
    sandbox.queue_faults([Fault.error(429, headers={"Retry-After": "0"})] * 3, event_id=user)
    enqueue(local_stack, event)
    messages, kept = driver.step()
    assert kept == {m["MessageId"] for m in messages} and len(messages) == 1
    assert published(local_stack) == []
    assert calls(sandbox, "users", user) == 3
    _, kept = driver.step()
    assert kept == set()
    (record,) = published(local_stack)
    assert record["related"]["assignedUser"]["id"] == user and "relatedErrors" not in record
    assert local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0) == []


def test_a_401_on_a_related_fetch_after_the_token_refresh_retries_the_message(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    event = put_appointment(sandbox)
    contact = event["contactId"]
    sandbox.queue_faults([Fault.error(401)] * 2, event_id=contact)
    enqueue(local_stack, event)
    messages, kept = driver.step()
    assert kept == {m["MessageId"] for m in messages} and len(messages) == 1
    assert published(local_stack) == []
    # The first answer, then one more with the token read again (the client's one refresh): no third.
    assert calls(sandbox, "contacts", contact) == 2
    assert local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0) == []
    _, kept = driver.step()
    assert kept == set()
    (record,) = published(local_stack)
    assert record["related"]["contact"]["id"] == contact and "relatedErrors" not in record


def test_one_401_on_a_related_fetch_is_healed_by_the_token_refresh(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    event = put_appointment(sandbox)
    sandbox.queue_faults([Fault.error(401)], event_id=event["calendarId"])
    enqueue(local_stack, event)
    _, kept = driver.step()
    assert kept == set()
    (record,) = published(local_stack)
    assert record["related"]["calendar"]["id"] == event["calendarId"] and "relatedErrors" not in record
    assert calls(sandbox, "calendars", event["calendarId"]) == 2


def test_a_403_after_the_token_refresh_is_forbidden_not_retried(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    event = put_appointment(sandbox)
    user = event["assignedUserId"]
    sandbox.queue_faults([Fault.error(403)] * 2, event_id=user)
    enqueue(local_stack, event)
    _, kept = driver.step()
    assert kept == set()
    (record,) = published(local_stack)
    assert record["related"]["assignedUser"] is None and record["relatedErrors"] == {
        "assignedUser": "Forbidden"
    }
    assert record["related"]["contact"]["id"] == event["contactId"]
    assert calls(sandbox, "users", user) == 2
    assert local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0) == []


def test_coalesced_webhooks_share_one_set_of_fetches_and_the_cache_serves_the_next_batch(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    first = put_appointment(sandbox)
    # Another appointment of the same location, calendar and user, for another contact.
    second = put_appointment(
        sandbox,
        locationId=first["locationId"],
        calendarId=first["calendarId"],
        assignedUserId=first["assignedUserId"],
    )
    for _ in range(4):
        enqueue(local_stack, first)
    enqueue(local_stack, second)
    messages, kept = driver.step()
    assert len(messages) == 5 and kept == set()
    records = published(local_stack)
    assert len(records) == 5 and all(r["related"]["calendar"]["id"] == first["calendarId"] for r in records)
    assert calls(sandbox, "calendars", first["calendarId"]) == 1
    assert calls(sandbox, "users", first["assignedUserId"]) == 1
    assert calls(sandbox, "locations", first["locationId"]) == 1
    assert calls(sandbox, "contacts", first["contactId"]) == 1
    assert calls(sandbox, "contacts", second["contactId"]) == 1
    before = len(sandbox.requests_log())
    enqueue(local_stack, second)
    driver.step()
    (again,) = published(local_stack)
    assert again["related"] == next(r for r in records if r["appointmentId"] == second["id"])["related"]
    assert len(sandbox.requests_log()) == before + 1  # the appointment only: the rest is cached


def test_a_deleted_appointment_still_carries_its_related_entities(
    driver: Driver, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    event = put_appointment(sandbox)
    sandbox.delete_appointment(event["id"])
    enqueue(local_stack, event, "AppointmentDelete")
    _, kept = driver.step()
    assert kept == set()
    (record,) = published(local_stack)
    assert record["deleted"] is True
    assert record["related"]["contact"]["id"] == event["contactId"]
    assert record["related"]["calendar"]["id"] == event["calendarId"]
    assert record["related"]["assignedUser"]["id"] == event["assignedUserId"]
    assert record["derived"]["startTimeLocal"]
    assert sandbox.count("/calendars/events/appointments/") == 0  # a delete needs no appointment fetch


def test_without_a_cache_one_batch_still_fetches_each_entity_once(
    stack_env: dict[str, str],
    local_stack: LocalStack,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENRICH_RELATED", ALL)
    monkeypatch.setenv("RELATED_CACHE_SECONDS", "0")
    monkeypatch.setenv("CONTACT_CACHE_SECONDS", "0")
    driver = Driver(load_function_module("enricher"), local_stack)
    first = put_appointment(sandbox)
    second = put_appointment(sandbox, locationId=first["locationId"], calendarId=first["calendarId"])
    for event in (first, first, second, first, second):
        enqueue(local_stack, event)
    messages, kept = driver.step()
    assert len(messages) == 5 and kept == set()
    assert len(published(local_stack)) == 5
    assert calls(sandbox, "calendars", first["calendarId"]) == 1  # shared by both groups
    assert calls(sandbox, "locations", first["locationId"]) == 1
    assert calls(sandbox, "contacts", first["contactId"]) == 1  # shared by three coalesced webhooks
    enqueue(local_stack, first)
    driver.step()
    assert calls(sandbox, "calendars", first["calendarId"]) == 2  # no cache: the next batch asks again
