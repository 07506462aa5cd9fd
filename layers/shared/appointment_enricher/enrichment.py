"""Enrichment rules: webhook + fetched appointment -> enriched record. Pure functions, no I/O."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from .models import Appointment, AppointmentSnapshot, AppointmentWebhook, Derived, EnrichedRecord
from .wire import parse_upstream_time, rfc3339

# Recurring instance ids: <masterId>_<startEpochMs>_<durationSeconds>
_INSTANCE_ID = re.compile(r"^(?P<master>[A-Za-z0-9-]+)_(?P<start>\d{10,16})_(?P<dur>\d{1,7})$")


def _offset_as_sent(raw: str | None) -> str | None:
    """The UTC offset the upstream wrote (``+05:30``); None when it sent a local time without one."""
    if raw is None:
        return None
    offset = datetime.fromisoformat(raw.strip()).utcoffset()
    if offset is None:
        return None
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def derive(appointment: Appointment | AppointmentSnapshot) -> Derived:
    """Compute ``derived``: UTC times, duration, offset as sent, recurring-instance facts."""
    start = parse_upstream_time(appointment.startTime) if appointment.startTime else None
    end = parse_upstream_time(appointment.endTime) if appointment.endTime else None
    duration = (end - start).total_seconds() / 60 if start and end else None

    master_id = appointment.masterEventId
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

    is_recurring = bool(appointment.isRecurring) or match is not None
    return Derived(
        startTimeUtc=rfc3339(start) if start else None,
        endTimeUtc=rfc3339(end) if end else None,
        durationMinutes=duration,
        timezoneOffset=_offset_as_sent(appointment.startTime),
        masterEventId=master_id,
        instanceStartUtc=instance_start,
        instanceDurationSeconds=instance_duration,
        isRecurring=is_recurring,
        appointmentStatus=appointment.appointmentStatus,
    )


def build_record(
    webhook: AppointmentWebhook,
    appointment: Appointment | None,
    *,
    received_at: str,
    now: datetime,
) -> EnrichedRecord:
    """One record per webhook. ``appointment`` None means deleted: the webhook snapshot is used."""
    deleted = appointment is None or webhook.type == "AppointmentDelete"
    body: Appointment | AppointmentSnapshot = (
        webhook.appointment if deleted or appointment is None else appointment
    )
    return EnrichedRecord(
        schemaVersion="1",
        eventType=webhook.type,
        webhookId=webhook.webhookId,
        locationId=webhook.locationId,
        appointmentId=webhook.appointment.id,
        receivedAt=received_at,
        enrichedAt=rfc3339(now),
        deleted=deleted,
        appointment=body,
        derived=derive(body),
    )
