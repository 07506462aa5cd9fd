"""An enriched record as it goes out: body, message attributes, FIFO ids, and its size.

Core, not adapter: the enricher builds and measures each message once (the size check and the
publish share it); ``aws/publisher.py`` only sends what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Final

from .models import EnrichedRecord

MAX_MESSAGE_BYTES: Final = 256 * 1024  # SNS and SQS, body plus attributes


@dataclass(frozen=True)
class OutboundMessage:
    """One enriched record ready to publish. ``entry_id`` is unique within a publish call."""

    entry_id: str
    body: str
    attributes: dict[str, str]
    group_id: str
    dedupe_id: str

    @cached_property
    def payload_bytes(self) -> int:
        """Body plus attribute names and values, as AWS counts message size (computed once)."""
        return len(self.body.encode()) + sum(
            len(k) + len(v) + len("String") for k, v in self.attributes.items()
        )


def outbound_message(record: EnrichedRecord, entry_id: str, dedupe_id: str) -> OutboundMessage:
    """The record's JSON body and the attributes subscribers filter on (``changeKind`` when the
    record says what changed)."""
    appointment = record.appointment
    status = appointment.appointmentStatus
    calendar = appointment.calendarId
    attributes = {
        "eventType": record.eventType,
        "locationId": record.locationId,
        "calendarId": calendar if isinstance(calendar, str) else "",
        "appointmentStatus": status if isinstance(status, str) else "",
        "schemaVersion": record.schemaVersion,
    }
    if record.change is not None:
        attributes["changeKind"] = record.change.kind
    return OutboundMessage(
        entry_id=entry_id,
        body=record.model_dump_json(exclude_unset=True),
        attributes=attributes,
        group_id=record.appointmentId,
        dedupe_id=dedupe_id,
    )


class PermanentEntryError(str):
    """A publish entry error AWS blames on the request (``SenderFault``): resending it cannot help,
    so the enricher quarantines the message with this reason instead of retrying it."""

    __slots__ = ()
