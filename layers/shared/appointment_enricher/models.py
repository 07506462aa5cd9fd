"""Typed shapes of what comes in (webhooks, Get Appointment) and what goes out (the enriched record).

Pure domain: no boto3, no requests. Upstream quirks handled here, once:
time fields are typed ``object`` upstream and come as ISO 8601 with an offset or as
``YYYY-MM-DD HH:MM:SS``; ``isRecurring`` may be the string ``"true"``; unknown fields are kept.
Time fields keep the exact string that was sent (consumers see the upstream value unchanged);
parsed values are exposed through ``parse_upstream_time`` and land in ``derived``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .changes import ChangeKind
from .wire import ID_PATTERN, EventType, Trigger, parse_upstream_time


def _check_time(value: str) -> str:
    parse_upstream_time(value)
    return value


UpstreamTime = Annotated[str, AfterValidator(_check_time)]
ResourceId = Annotated[str, Field(pattern=ID_PATTERN)]


class CreatedBy(BaseModel):
    """``CreatedOrUpdatedBy``: who booked the appointment."""

    model_config = ConfigDict(extra="allow")

    source: str
    userId: str | None = None


class Appointment(BaseModel):
    """``CalendarEventDTO``, the ``event`` of Get Appointment, required/optional as documented."""

    model_config = ConfigDict(extra="allow")

    id: ResourceId = Field(description="Event id or recurring instance id")
    title: str
    calendarId: str
    locationId: str
    contactId: str
    groupId: str
    appointmentStatus: str = Field(description="Open set: new, confirmed, cancelled, showed, noshow, ...")
    assignedUserId: str
    users: list[str]
    startTime: UpstreamTime
    endTime: UpstreamTime
    dateAdded: UpstreamTime
    dateUpdated: UpstreamTime
    address: str | None = None
    notes: str | None = None
    isRecurring: bool | None = None
    rrule: str | None = None
    assignedResources: list[str] | None = None
    createdBy: CreatedBy | None = None
    masterEventId: str | None = None


class GetAppointmentResponse(BaseModel):
    """``GetCalendarEventSuccessfulResponseDTO``: ``{"event": {...}}``."""

    model_config = ConfigDict(extra="allow")

    event: Appointment


class AppointmentSnapshot(BaseModel):
    """The appointment as the webhook carries it: only the id is guaranteed (intake checked it).

    Every other field is kept exactly as sent, whatever its shape: a signed webhook is never
    refused for its snapshot (the enricher fetches the truth), and a delete publishes it as is.
    ``derive`` computes values only from what parses.
    """

    model_config = ConfigDict(extra="allow")

    id: ResourceId
    calendarId: Any = None
    contactId: Any = None
    title: Any = None
    appointmentStatus: Any = None
    startTime: Any = None
    endTime: Any = None
    dateAdded: Any = None
    dateUpdated: Any = None
    isRecurring: Any = None
    masterEventId: Any = None


class AppointmentWebhook(BaseModel):
    """An appointment webhook delivery: ``type``, ``locationId`` and ``appointment.id`` are what
    ``wire.read_webhook`` requires; ``webhookId``, ``timestamp``, ``appId`` are kept as sent."""

    model_config = ConfigDict(extra="allow")

    type: EventType
    locationId: ResourceId
    appointment: AppointmentSnapshot
    webhookId: Any = None
    timestamp: Any = None
    appId: Any = None
    versionId: Any = None


class Derived(BaseModel):
    """Values computed from the appointment so consumers need not parse upstream quirks."""

    startTimeUtc: str | None = Field(description="RFC 3339 UTC")
    endTimeUtc: str | None = Field(description="RFC 3339 UTC")
    durationMinutes: float | None
    timezoneOffset: str | None = Field(description="Offset of startTime as sent, e.g. +05:30; null if none")
    masterEventId: str | None
    instanceStartUtc: str | None = Field(description="Start parsed from an instance id, RFC 3339 UTC")
    instanceDurationSeconds: int | None
    isRecurring: bool
    appointmentStatus: str | None
    timezone: str | None = Field(
        default=None,
        description="IANA zone: the location's timezone, else the contact's (when ENRICH_RELATED names "
        "location or contact)",
    )
    startTimeLocal: str | None = Field(
        default=None, description="startTime in timezone, RFC 3339 with offset"
    )
    endTimeLocal: str | None = Field(default=None, description="endTime in timezone, RFC 3339 with offset")


class RecordChange(BaseModel):
    """What changed since the last record of this appointment (present when a ledger is on)."""

    kind: ChangeKind = Field(description="The first of kinds, in precedence order")
    kinds: list[ChangeKind] = Field(
        description="Every kind that applies, in the order deleted, created, cancelled, rescheduled, "
        "statusChanged, reassigned, updated, unchanged"
    )
    changedFields: list[str] = Field(
        description="Sorted appointment fields that differ from the last record (times as instants; "
        "dateUpdated alone is no change)"
    )
    previous: dict[str, Any] = Field(description="The earlier values of changedFields, as earlier published")


class EnrichedRecord(BaseModel):
    """Schema version 1 of what consumers receive: one record per webhook event."""

    model_config = ConfigDict(
        title="EnrichedAppointmentRecord",
        json_schema_extra={"$id": "https://powerleads-enricher/schemas/enriched-record-v1.json"},
    )

    schemaVersion: Literal["1"] = "1"
    eventType: EventType
    webhookId: str | None
    locationId: str
    appointmentId: str
    receivedAt: str = Field(description="When the receiver accepted the webhook, RFC 3339 UTC")
    enrichedAt: str = Field(description="When this record was built, RFC 3339 UTC")
    deleted: bool
    appointment: Appointment | AppointmentSnapshot = Field(
        description="Get Appointment's event (API field names, unknown fields kept); "
        "the webhook snapshot when deleted"
    )
    derived: Derived
    trigger: Trigger = Field(
        default="webhook", description="What produced the event: webhook, reconcile or backfill"
    )
    change: RecordChange | None = Field(default=None, description="Present when change tracking is on")
    related: dict[str, dict[str, Any] | None] | None = Field(
        default=None,
        description="When ENRICH_RELATED names entities: contact, calendar, assignedUser, location as the "
        "API returns them (contacts cut to CONTACT_FIELDS); null when permanently unavailable",
    )
    relatedErrors: dict[str, Literal["NotFound", "Invalid", "Forbidden", "NoId"]] | None = Field(
        default=None, description="Why an entity in related is null, by entity name"
    )
    sequence: int | None = Field(
        default=None,
        description="The appointment's ledger revision at this record (when change tracking is on): "
        "strictly increasing per appointment; a redelivery keeps its first",
    )


def enriched_record_json_schema() -> dict[str, Any]:
    """The JSON Schema exported under ``schemas/`` (serialization mode: what consumers read)."""
    return EnrichedRecord.model_json_schema(mode="serialization")
