"""Enrichment rules: webhook + fetched appointment -> enriched record. Pure functions, no I/O."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from .changes import Change
from .models import (
    Appointment,
    AppointmentSnapshot,
    AppointmentWebhook,
    Derived,
    EnrichedRecord,
    RecordChange,
)
from .related import RelatedResult, local_time
from .wire import Trigger, rfc3339, try_upstream_time

# Recurring instance ids: <masterId>_<startEpochMs>_<durationSeconds>
_INSTANCE_ID = re.compile(r"^(?P<master>[A-Za-z0-9-]+)_(?P<start>\d{10,16})_(?P<dur>\d{1,7})$")


def _offset_as_sent(raw: Any) -> str | None:
    """The UTC offset the upstream wrote (``+05:30``); None when it sent a local time without one
    (or anything that does not parse)."""
    if try_upstream_time(raw) is None:
        return None
    offset = datetime.fromisoformat(str(raw).strip()).utcoffset()
    if offset is None:
        return None
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def derive(appointment: Appointment | AppointmentSnapshot) -> Derived:
    """Compute ``derived``: UTC times, duration, offset as sent, recurring-instance facts.

    Snapshot fields may be of any shape: each value is derived only when it parses.
    """
    start = try_upstream_time(appointment.startTime)
    end = try_upstream_time(appointment.endTime)
    duration = (end - start).total_seconds() / 60 if start and end else None

    master_id = appointment.masterEventId if isinstance(appointment.masterEventId, str) else None
    instance_start: str | None = None
    instance_duration: int | None = None
    match = _INSTANCE_ID.fullmatch(appointment.id)
    if match:
        master_id = master_id or match["master"]
        try:
            instance_start = rfc3339(datetime.fromtimestamp(int(match["start"]) / 1000, tz=UTC))
        except (OverflowError, OSError, ValueError):
            instance_start = None
        instance_duration = int(match["dur"])

    is_recurring = appointment.isRecurring in (True, "true") or match is not None
    status = appointment.appointmentStatus
    return Derived(
        startTimeUtc=rfc3339(start) if start else None,
        endTimeUtc=rfc3339(end) if end else None,
        durationMinutes=duration,
        timezoneOffset=_offset_as_sent(appointment.startTime),
        masterEventId=master_id,
        instanceStartUtc=instance_start,
        instanceDurationSeconds=instance_duration,
        isRecurring=is_recurring,
        appointmentStatus=status if isinstance(status, str) else None,
    )


def is_deleted_flag(appointment: Appointment) -> bool:
    """The fetched object says ``deleted: true`` (a boolean, or the string the API sometimes sends):
    it is published as deleted, built from that object."""
    value = (appointment.model_extra or {}).get("deleted")
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def build_record(
    webhook: AppointmentWebhook,
    appointment: Appointment | None,
    *,
    received_at: str,
    now: datetime,
    webhook_id: str | None = None,
    trigger: Trigger = "webhook",
    change: Change | None = None,
    related: RelatedResult | None = None,
    sequence: int | None = None,
) -> EnrichedRecord:
    """One record per webhook. ``appointment`` None means deleted: the webhook snapshot is used.

    ``webhook_id``: the webhook's id as text (``wire.WebhookRef``; defaults to a string
    ``webhookId``); ``change`` only when tracked; ``related`` only when ENRICH_RELATED names any.
    """
    if webhook_id is None and isinstance(webhook.webhookId, str) and webhook.webhookId:
        webhook_id = webhook.webhookId
    fetched_deleted = appointment is not None and is_deleted_flag(appointment)
    deleted = appointment is None or webhook.type == "AppointmentDelete" or fetched_deleted
    body: Appointment | AppointmentSnapshot = (
        appointment if appointment is not None and (fetched_deleted or not deleted) else webhook.appointment
    )
    extra: dict[str, Any] = {}
    if change is not None:
        extra["change"] = RecordChange.model_validate(change.as_json())
    derived = derive(body)
    if related is not None:
        extra["related"] = related.entities
        if related.errors:
            extra["relatedErrors"] = related.errors
        if related.wants_timezone:
            derived = with_local_times(derived, body, related.timezone)
    if sequence is not None:
        extra["sequence"] = sequence
    return EnrichedRecord(
        schemaVersion="1",
        eventType=webhook.type,
        webhookId=webhook_id,
        locationId=webhook.locationId,
        appointmentId=webhook.appointment.id,
        receivedAt=received_at,
        enrichedAt=rfc3339(now),
        deleted=deleted,
        appointment=body,
        derived=derived,
        trigger=trigger,
        **extra,
    )


def with_local_times(
    derived: Derived, body: Appointment | AppointmentSnapshot, timezone: str | None
) -> Derived:
    """``derived`` plus ``timezone`` and, when the zone is known to zoneinfo, the local times."""
    values: dict[str, Any] = {"timezone": timezone}
    start, end = local_time(body.startTime, timezone), local_time(body.endTime, timezone)
    if start is not None:
        values["startTimeLocal"] = start
    if end is not None:
        values["endTimeLocal"] = end
    return derived.model_copy(update=values)
