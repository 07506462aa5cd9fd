"""The reconciler's rules: which listed appointment states the pipeline has missed, and the ingest
message that recovers each one.

Pure: no boto3, no requests, no clock. There is no upstream API that lists missed webhooks, so the
reconciler lists appointments (``GET /calendars/events``) and compares every listed event with
the ledger (the last state the enricher published of each appointment):

* not in the ledger, or listed with a newer ``dateUpdated``  -> AppointmentUpdate;
* listed ``deleted: true`` while the ledger holds it live    -> AppointmentDelete;
* listed live while the ledger holds a 404 tombstone         -> AppointmentUpdate (a repair);
* a ledger item with no announced state (its publish never succeeded) counts as missing;
* anything else (same or older state, a delete already known, a delete of an appointment never
  published) -> nothing. So a second run with nothing new enqueues nothing.

Each recovery is queued exactly as the receiver queues a webhook (``wire.IngestMessage``), marked
``trigger: reconcile``, with group = appointment id and a dedupe id derived from the appointment
id and the state found (``wire.reconcile_dedupe_id``): the enricher then fetches the truth and
publishes it like any webhook.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..ledger.base import LedgerEntry
from ..wire import (
    IngestMessage,
    WebhookRef,
    ingest_attributes,
    is_valid_id,
    reconcile_dedupe_id,
    rfc3339,
    try_upstream_time,
)

RecoveryKind = Literal["AppointmentUpdate", "AppointmentDelete"]

_TIME_FIELDS = ("startTime", "endTime", "dateAdded", "dateUpdated")
_TEXT_FIELDS = ("calendarId", "contactId", "title", "appointmentStatus", "masterEventId", "groupId")


@dataclass(frozen=True)
class Recovery:
    """One missed appointment state to enqueue."""

    kind: RecoveryKind
    appointment_id: str
    date_updated: str | None  # the listed value, RFC 3339 UTC when readable
    dedupe_id: str


def listed_id(event: Mapping[str, Any]) -> str | None:
    """The event's id when it is safe to use (URL path, FIFO group id, log line); else None."""
    value = event.get("id")
    return value if is_valid_id(value) else None


def is_listed_deleted(event: Mapping[str, Any]) -> bool:
    """``deleted: true`` (a real boolean, or the string ``"true"`` the API sometimes sends)."""
    value = event.get("deleted")
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def decide(event: Mapping[str, Any], entry: LedgerEntry | None) -> Recovery | None:
    """What the pipeline missed of this listed event, or None when the ledger is up to date."""
    appointment_id = listed_id(event)
    if appointment_id is None:
        return None
    listed_at = try_upstream_time(event.get("dateUpdated"))
    listed_text = rfc3339(listed_at) if listed_at is not None else None
    if entry is not None and not entry.announced:
        entry = None  # written ahead of a publish that never succeeded: consumers never saw it
    state = entry.state if entry is not None else None
    if entry is not None and state is not None and state.repairable and not is_listed_deleted(event):
        # A 404 tombstone listed live: published again whatever its dateUpdated. The marker holds
        # the ledger revision, so a second run before the enricher repaired it enqueues the same id.
        marker = f"{listed_text or ''}#after404#{entry.revision}"
        return Recovery(
            "AppointmentUpdate", appointment_id, listed_text, reconcile_dedupe_id(appointment_id, marker)
        )
    if is_listed_deleted(event):
        if entry is None or entry.deleted:
            return None  # never published, or its delete already was: nothing to recover
        return Recovery(
            "AppointmentDelete",
            appointment_id,
            listed_text,
            reconcile_dedupe_id(appointment_id, listed_text, deleted=True),
        )
    if entry is not None:
        known = entry.date_updated
        if listed_at is None or (known is not None and listed_at <= known):
            return None  # same or older state (or nothing to compare with): the ledger is current
    return Recovery(
        "AppointmentUpdate", appointment_id, listed_text, reconcile_dedupe_id(appointment_id, listed_text)
    )


def snapshot(event: Mapping[str, Any]) -> dict[str, Any]:
    """The listed event as a webhook's ``appointment``, minus values a webhook snapshot may not hold.

    The enricher validates snapshots (times must parse, texts must be strings); a listed event with
    one odd field must still be recovered, not quarantined, so such a field is left out. The
    enricher fetches the full appointment anyway; for a delete the snapshot is the record.
    """
    kept: dict[str, Any] = {}
    for key, value in event.items():
        if key in _TIME_FIELDS and (not isinstance(value, str) or try_upstream_time(value) is None):
            continue
        if key in _TEXT_FIELDS and not isinstance(value, str):
            continue
        if key == "isRecurring" and not (isinstance(value, bool) or value in ("true", "false")):
            continue
        kept[key] = value
    return kept


def recovery_message(
    location_id: str, event: Mapping[str, Any], recovery: Recovery, now: datetime
) -> tuple[str, dict[str, str]]:
    """(ingest message body, SQS attributes) in the receiver's format, marked ``trigger: reconcile``.

    The body is webhook-shaped (``type``, ``locationId``, ``appointment``) with a ``webhookId``
    derived from the dedupe id, so a record says which reconcile found it.
    """
    received_at = rfc3339(now)
    webhook_id = f"reconcile-{recovery.dedupe_id[:40]}"
    webhook = {
        "type": recovery.kind,
        "locationId": location_id,
        "appointment": snapshot(event),
        "webhookId": webhook_id,
        "timestamp": received_at,
    }
    body = json.dumps(webhook, separators=(",", ":"), ensure_ascii=False)
    message = IngestMessage(body, received_at, recovery.dedupe_id, trigger="reconcile")
    ref = WebhookRef(recovery.kind, location_id, recovery.appointment_id, webhook_id, None)
    return message.encode(), ingest_attributes(ref, "reconcile")


# ---- the swept time range ------------------------------------------------------------------

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Window:
    """An appointment start-time range in epoch milliseconds, both ends included."""

    start_ms: int
    end_ms: int

    @classmethod
    def around(cls, now_ms: int, lookback_days: float, lookahead_days: float) -> Window:
        return cls(now_ms - int(lookback_days * DAY_MS), now_ms + int(lookahead_days * DAY_MS))

    def halves(self) -> tuple[Window, Window]:
        """Split at the midpoint; both halves hold it (the upstream's boundary rule is undocumented,
        and an event listed twice is enqueued once)."""
        middle = (self.start_ms + self.end_ms) // 2
        return Window(self.start_ms, middle), Window(middle, self.end_ms)

    @property
    def span_ms(self) -> int:
        return self.end_ms - self.start_ms
