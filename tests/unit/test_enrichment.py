"""Enrichment rules: derived fields, deleted records, instance ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appointment_enricher.enrichment import build_record, derive
from appointment_enricher.models import AppointmentSnapshot, AppointmentWebhook, GetAppointmentResponse

ROOT = Path(__file__).resolve().parents[2]
SEED = json.loads((ROOT / "events" / "appointments" / "ocQHyuzHvysMo5N5VsXc.json").read_text())
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def webhook(kind: str = "AppointmentUpdate", **appointment: object) -> AppointmentWebhook:
    return AppointmentWebhook.model_validate(
        {
            "type": kind,
            "locationId": "0007BWpSzSwfiuSl0tR2",
            "webhookId": "wh-1",
            "appointment": {"id": "ocQHyuzHvysMo5N5VsXc", **appointment},
        }
    )


def test_seed_record_carries_the_upstream_event_and_utc_start() -> None:
    appointment = GetAppointmentResponse.model_validate(SEED).event
    record = build_record(webhook(), appointment, received_at="2026-11-24T11:59:59Z", now=NOW)
    document = json.loads(record.model_dump_json(exclude_unset=True))
    assert document["appointment"] == dict(SEED["event"], isRecurring=True)
    assert document["derived"]["startTimeUtc"] == "2023-09-25T10:30:00Z"
    assert document["derived"]["timezoneOffset"] == "+05:30"
    assert document["derived"]["isRecurring"] is True
    assert document["deleted"] is False
    assert document["schemaVersion"] == "1"
    assert document["enrichedAt"] == "2026-11-24T12:00:00Z"
    assert document["receivedAt"] == "2026-11-24T11:59:59Z"
    assert document["webhookId"] == "wh-1"


def test_duration_and_naive_times_are_utc() -> None:
    derived = derive(
        AppointmentSnapshot(id="a1", startTime="2024-03-10 09:00:00", endTime="2024-03-10 09:45:00")
    )
    assert derived.startTimeUtc == "2024-03-10T09:00:00Z"
    assert derived.endTimeUtc == "2024-03-10T09:45:00Z"
    assert derived.durationMinutes == 45
    assert derived.timezoneOffset is None


def test_negative_offsets_survive() -> None:
    derived = derive(
        AppointmentSnapshot(
            id="a1", startTime="2024-03-10T09:00:00-07:00", endTime="2024-03-10T10:00:00-07:00"
        )
    )
    assert derived.timezoneOffset == "-07:00"
    assert derived.startTimeUtc == "2024-03-10T16:00:00Z"


def test_instance_ids_give_master_and_instance_start() -> None:
    derived = derive(AppointmentSnapshot(id="ocQHyuzHvysMo5N5VsXc_1729821600000_1800"))
    assert derived.masterEventId == "ocQHyuzHvysMo5N5VsXc"
    assert derived.instanceStartUtc == "2024-10-25T02:00:00Z"
    assert derived.instanceDurationSeconds == 1800
    assert derived.isRecurring is True


def test_plain_ids_are_not_instances() -> None:
    derived = derive(AppointmentSnapshot(id="ocQHyuzHvysMo5N5VsXc"))
    assert derived.masterEventId is None
    assert derived.instanceStartUtc is None
    assert derived.isRecurring is False


@pytest.mark.parametrize("kind", ["AppointmentDelete", "AppointmentUpdate"])
def test_deleted_records_come_from_the_webhook_snapshot(kind: str) -> None:
    appointment = GetAppointmentResponse.model_validate(SEED).event
    snapshot_start = "2023-09-25T16:00:00+05:30"
    hook = webhook(kind, title="Snapshot title", startTime=snapshot_start, source="booking_widget")
    fetched = appointment if kind == "AppointmentDelete" else None  # Delete ignores a fetched body too
    record = build_record(hook, fetched, received_at="2026-11-24T11:59:59Z", now=NOW)
    document = json.loads(record.model_dump_json(exclude_unset=True))
    assert document["deleted"] is True
    assert document["appointment"]["title"] == "Snapshot title"
    assert document["appointment"]["source"] == "booking_widget"
    assert document["derived"]["startTimeUtc"] == "2023-09-25T10:30:00Z"
