"""Step 1: an SQS record -> a parsed item, or a quarantined one.

The wire rules are ``wire``'s (the receiver uses the same ones), so whatever intake accepted
parses here; the webhook model is lenient beyond the routing fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..models import AppointmentWebhook
from ..wire import IngestMessage, WireError, parse_json_object, read_webhook
from .items import Item, Outcome, Parsed, Unparsed

INVALID = WireError.error_type


def validation_summary(exc: ValidationError) -> str:
    """Field paths and messages only: never the input values (they may hold personal data)."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors(include_input=False)[:5]
    )[:500]


def parse_record(record: Mapping[str, Any]) -> Item:
    message_id = str(record.get("messageId", ""))
    raw = record.get("body")
    if not isinstance(raw, str):
        item = Item(message_id, "", message_id, Unparsed())
        item.fail(Outcome.QUARANTINED, INVALID, "SQS record has no string body")
        return item
    try:
        ingest = IngestMessage.decode(raw)
        document = parse_json_object(ingest.body)
        ref = read_webhook(document)
        webhook = AppointmentWebhook.model_validate(document)
    except WireError as exc:
        item = Item(message_id, raw, message_id, Unparsed())
        item.fail(Outcome.QUARANTINED, INVALID, f"{exc.error}: {exc}")
        return item
    except ValidationError as exc:  # read_webhook checked what the model requires: a safety net
        item = Item(message_id, raw, message_id, Unparsed())
        item.fail(Outcome.QUARANTINED, INVALID, validation_summary(exc))
        return item
    attributes = record.get("attributes") or {}
    group = str(attributes.get("MessageGroupId") or ref.appointment_id)
    item = Item(message_id, raw, group, Parsed(ingest, ref, webhook))
    item.receipt = record.get("receiptHandle") if isinstance(record.get("receiptHandle"), str) else None
    receives = str(attributes.get("ApproximateReceiveCount") or "1")
    item.receives = int(receives) if receives.isdigit() else 1
    return item
