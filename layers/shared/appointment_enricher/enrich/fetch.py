"""Step 3: fetch an appointment and say what the answer means.

An appointment (validated, the asked id, the webhook's location), ``NotFound`` (an upstream 404:
proof of deletion only once the event is older than the grace, see ``not_found_is_final``), or
a ``FetchFailure`` (retryable or permanent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from ..budget.base import BudgetThrottled
from ..errors import classify
from ..models import Appointment, GetAppointmentResponse
from ..wire import try_upstream_time
from .parse import validation_summary


class AppointmentSource(Protocol):
    def get_appointment(self, event_id: str, location_id: str, *, deadline: float) -> dict[str, Any]: ...


@dataclass(frozen=True)
class FetchFailure:
    error_type: str
    message: str
    retryable: bool
    throttled_for: float | None = None  # the upstream budget said: come back in this many seconds


@dataclass(frozen=True)
class NotFound:
    """Upstream answered 404 for this appointment."""


FetchResult = Appointment | NotFound | FetchFailure


def fetch(
    source: AppointmentSource, appointment_id: str, location_id: str, *, deadline: float
) -> FetchResult:
    try:
        payload = source.get_appointment(appointment_id, location_id, deadline=deadline)
    except Exception as exc:  # noqa: BLE001 - ours say what they are; anything else is retryable
        error_type, retryable = classify(exc)
        if error_type == "AppointmentNotFound":
            return NotFound()
        throttled_for = exc.retry_after if isinstance(exc, BudgetThrottled) else None
        return FetchFailure(error_type, str(exc)[:500] or error_type, retryable, throttled_for)
    try:
        appointment = GetAppointmentResponse.model_validate(payload).event
    except ValidationError as exc:
        return FetchFailure("InvalidAppointment", validation_summary(exc), retryable=False)
    if appointment.id != appointment_id:
        return FetchFailure("InvalidAppointment", "upstream returned another appointment id", False)
    if appointment.locationId != location_id:
        # Never publish one tenant's appointment under another's location: a misrouted or forged
        # webhook, or a token that reads more than it should. A human must look.
        return FetchFailure(
            "LocationMismatch", "the appointment belongs to another location than the webhook's", False
        )
    return appointment


def not_found_is_final(received_at: str, now: datetime, grace_seconds: float) -> bool:
    """A 404 counts as a deletion once the event is ``grace_seconds`` old (from ``receivedAt``):
    before that, the read path may simply lag the webhook. An unreadable ``receivedAt`` cannot be
    waited on: final at once."""
    received = try_upstream_time(received_at)
    return received is None or (now - received).total_seconds() >= grace_seconds
