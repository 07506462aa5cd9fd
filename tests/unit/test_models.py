"""The Get Appointment model, the webhook model and the enriched record schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from appointment_enricher.models import (
    AppointmentWebhook,
    EnrichedRecord,
    GetAppointmentResponse,
)
from dev.tools.export_schema import SCHEMA_PATH, render

ROOT = Path(__file__).resolve().parents[2]
SEED = json.loads((ROOT / "events" / "appointments" / "ocQHyuzHvysMo5N5VsXc.json").read_text())
REQUIRED = [
    "id",
    "title",
    "calendarId",
    "locationId",
    "contactId",
    "groupId",
    "appointmentStatus",
    "assignedUserId",
    "users",
    "startTime",
    "endTime",
    "dateAdded",
    "dateUpdated",
]


def event(**changes: object) -> dict[str, object]:
    body = dict(SEED["event"])
    body.update(changes)
    return {"event": body}


def test_seed_example_validates_and_round_trips_unchanged_but_for_is_recurring() -> None:
    appointment = GetAppointmentResponse.model_validate(SEED).event
    dumped = json.loads(appointment.model_dump_json(exclude_unset=True))
    expected = dict(SEED["event"], isRecurring=True)
    assert SEED["event"]["isRecurring"] == "true"  # the spec's own example is a string
    assert dumped == expected


@pytest.mark.parametrize("field", REQUIRED)
def test_documented_required_fields_are_required(field: str) -> None:
    body = dict(SEED["event"])
    del body[field]
    with pytest.raises(ValidationError) as info:
        GetAppointmentResponse.model_validate({"event": body})
    assert any(err["loc"][-1] == field for err in info.value.errors())


@pytest.mark.parametrize("field", ["address", "notes", "isRecurring", "rrule", "masterEventId"])
def test_documented_optional_fields_are_optional(field: str) -> None:
    body = dict(SEED["event"])
    body.pop(field, None)
    GetAppointmentResponse.model_validate({"event": body})


@pytest.mark.parametrize(
    "value",
    ["2023-09-25T16:00:00+05:30", "2023-09-25 16:00:00", "2023-09-25T10:30:00Z", "2023-09-25T10:30:00.000Z"],
)
def test_time_fields_accept_documented_formats_and_keep_the_text(value: str) -> None:
    appointment = GetAppointmentResponse.model_validate(event(startTime=value)).event
    assert appointment.startTime == value


@pytest.mark.parametrize("value", ["yesterday", "", "2023-13-40T00:00:00Z", 1695636000, None])
def test_time_fields_reject_garbage(value: object) -> None:
    with pytest.raises(ValidationError):
        GetAppointmentResponse.model_validate(event(startTime=value))


@pytest.mark.parametrize(
    ("sent", "expected"), [("true", True), ("false", False), (True, True), (False, False)]
)
def test_is_recurring_coerces_strings(sent: object, expected: bool) -> None:
    assert GetAppointmentResponse.model_validate(event(isRecurring=sent)).event.isRecurring is expected


def test_is_recurring_rejects_nonsense() -> None:
    with pytest.raises(ValidationError):
        GetAppointmentResponse.model_validate(event(isRecurring="sometimes"))


def test_unknown_fields_are_kept() -> None:
    appointment = GetAppointmentResponse.model_validate(
        event(meetingLocationType="zoom", createdBy={"source": "booking_widget", "userId": "u1", "x": 1})
    ).event
    dumped = json.loads(appointment.model_dump_json(exclude_unset=True))
    assert dumped["meetingLocationType"] == "zoom"
    assert dumped["createdBy"] == {"source": "booking_widget", "userId": "u1", "x": 1}


def test_appointment_status_is_an_open_set() -> None:
    status = GetAppointmentResponse.model_validate(
        event(appointmentStatus="rescheduled")
    ).event.appointmentStatus
    assert status == "rescheduled"


@pytest.mark.parametrize("bad_id", ["../etc", "a/b", "a%2Fb", "a?b", "a#b", "", "x" * 129, "\uff41bc"])
def test_ids_outside_the_safe_alphabet_are_rejected(bad_id: str) -> None:
    with pytest.raises(ValidationError):
        AppointmentWebhook.model_validate(
            {"type": "AppointmentUpdate", "locationId": "loc1", "appointment": {"id": bad_id}}
        )


def test_webhook_type_must_be_an_appointment_event() -> None:
    with pytest.raises(ValidationError):
        AppointmentWebhook.model_validate(
            {"type": "ContactCreate", "locationId": "l", "appointment": {"id": "a"}}
        )


def test_webhook_snapshot_fields_of_any_shape_are_kept_as_sent() -> None:
    """Only type, locationId and appointment.id are required (what intake checks)."""
    webhook = AppointmentWebhook.model_validate(
        {
            "type": "AppointmentUpdate",
            "locationId": "L1",
            "webhookId": {"not": "a string"},
            "timestamp": 1700000000,
            "appId": 7,
            "appointment": {"id": "A1", "startTime": [1, 2], "dateUpdated": "garbage", "isRecurring": "yes"},
        }
    )
    dumped = webhook.model_dump(exclude_unset=True)
    assert dumped["appointment"]["startTime"] == [1, 2] and dumped["webhookId"] == {"not": "a string"}
    assert dumped["appointment"]["isRecurring"] == "yes"


def test_committed_json_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text() == render(), "schemas/ is stale: run `python -m dev.tools.export_schema`"


def test_a_record_validates_against_the_exported_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    record = EnrichedRecord(
        eventType="AppointmentUpdate",
        webhookId="w-1",
        locationId=SEED["event"]["locationId"],
        appointmentId=SEED["event"]["id"],
        receivedAt="2026-11-24T00:00:00Z",
        enrichedAt="2026-11-24T00:00:01Z",
        deleted=False,
        appointment=GetAppointmentResponse.model_validate(SEED).event,
        derived={  # type: ignore[arg-type]
            "startTimeUtc": "2023-09-25T10:30:00Z",
            "endTimeUtc": "2023-09-25T10:30:00Z",
            "durationMinutes": 0,
            "timezoneOffset": "+05:30",
            "masterEventId": None,
            "instanceStartUtc": None,
            "instanceDurationSeconds": None,
            "isRecurring": True,
            "appointmentStatus": "confirmed",
        },
    )
    document = json.loads(record.model_dump_json(exclude_unset=True))
    jsonschema.validate(document, schema)
    broken = dict(document, deleted="no")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:30", "9999-12-31T23:59:59-05:00"])
def test_times_that_overflow_in_utc_are_invalid(value: str) -> None:
    with pytest.raises(ValidationError):
        GetAppointmentResponse.model_validate(event(startTime=value))
