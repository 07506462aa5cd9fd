"""End to end: one appointment's life through the gateway, the receiver, the ingest queue, the
enricher, the ledger and the topic; the sandbox holds the appointment's state and each step
posts a signed webhook. Every record says what changed, as the contract defines it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests

from dev.fakes.signing import EVENTS_DIR, make_webhook, signed_headers, webhook_snapshot
from tests.conftest import drain

pytestmark = pytest.mark.e2e

BASE = json.loads((EVENTS_DIR / "appointments" / "Bx7kQ2mN9pLr4TsVw1Yz.json").read_text())["event"]


def _step(gateway: Any, poller: Any, stack: Any, kind: str, event: dict[str, Any]) -> dict[str, Any]:
    body = make_webhook(kind, webhook_snapshot(event), event["locationId"])
    response = requests.post(gateway.webhook_url, data=body, headers=signed_headers(body), timeout=10)
    assert response.status_code == 202, response.text
    while poller.poll_once():
        pass
    (message,) = drain(stack, stack.enriched_queue_url)
    record: dict[str, Any] = json.loads(message["Body"])
    assert message["MessageAttributes"]["changeKind"]["StringValue"] == record["change"]["kind"]
    assert record["trigger"] == "webhook"
    return record


def test_create_reschedule_cancel_same_instant_delete(gateway, poller, local_stack, sandbox) -> None:
    event = dict(
        BASE,
        id="Seq" + uuid.uuid4().hex[:12],
        appointmentStatus="confirmed",
        assignedUserId="UserOne",
        startTime="2026-12-01T10:00:00+00:00",
        endTime="2026-12-01T10:30:00+00:00",
        dateUpdated="2026-11-30T09:00:00+00:00",
    )
    sandbox.put_appointment(event)
    created = _step(gateway, poller, local_stack, "AppointmentCreate", event)
    assert created["change"] == {"kind": "created", "kinds": ["created"], "changedFields": [], "previous": {}}

    moved = dict(
        event,
        assignedUserId="UserTwo",
        startTime="2026-12-02T14:00:00+00:00",
        endTime="2026-12-02T14:30:00+00:00",
        dateUpdated="2026-11-30T09:05:00+00:00",
    )
    sandbox.put_appointment(moved)
    rescheduled = _step(gateway, poller, local_stack, "AppointmentUpdate", moved)
    assert rescheduled["change"] == {
        "kind": "rescheduled",
        "kinds": ["rescheduled", "reassigned"],
        "changedFields": ["assignedUserId", "endTime", "startTime"],
        "previous": {
            "assignedUserId": "UserOne",
            "endTime": "2026-12-01T10:30:00+00:00",
            "startTime": "2026-12-01T10:00:00+00:00",
        },
    }

    cancelled_event = dict(moved, appointmentStatus="cancelled", dateUpdated="2026-11-30T09:10:00+00:00")
    sandbox.put_appointment(cancelled_event)
    cancelled = _step(gateway, poller, local_stack, "AppointmentUpdate", cancelled_event)
    assert cancelled["change"]["kinds"] == ["cancelled"]
    assert cancelled["change"]["previous"] == {"appointmentStatus": "confirmed"}

    same_instant = dict(
        cancelled_event,
        startTime="2026-12-02T19:30:00+05:30",
        endTime="2026-12-02T20:00:00+05:30",
        dateUpdated="2026-11-30T09:15:00+00:00",
    )
    sandbox.put_appointment(same_instant)
    unchanged = _step(gateway, poller, local_stack, "AppointmentUpdate", same_instant)
    assert unchanged["change"]["kind"] == "unchanged" and unchanged["change"]["changedFields"] == []
    assert unchanged["appointment"]["startTime"] == "2026-12-02T19:30:00+05:30"  # as sent upstream

    sandbox.delete_appointment(event["id"])
    deleted = _step(gateway, poller, local_stack, "AppointmentDelete", same_instant)
    assert deleted["deleted"] is True and deleted["change"]["kinds"] == ["deleted"]
    assert [r["change"]["kind"] for r in (created, rescheduled, cancelled, unchanged, deleted)] == [
        "created",
        "rescheduled",
        "cancelled",
        "unchanged",
        "deleted",
    ]
    # One revision per record, in order: what a consumer of the standard topic re-sorts by.
    records = (created, rescheduled, cancelled, unchanged, deleted)
    assert [r["sequence"] for r in records] == [1, 2, 3, 4, 5]
