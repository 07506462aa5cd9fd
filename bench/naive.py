"""The naive enricher: the baseline the product is measured against (bench only, never ships).

What a first working version typically looks like, and exactly what differs from the product:

* serial: one record after another, one fetch per record (no thread pool);
* a new connection per call: ``requests.get`` (a throwaway session and TCP connection each time);
* no coalescing: ten updates of one appointment fetch it ten times;
* one publish per record: ``sns.publish`` (or ``sqs.send_message``) per record, no batch calls;
* eager: boto3, requests, pydantic and every client are imported/created at module import.

Everything else is the product's, so the comparison isolates those choices: the same pydantic
models, enrichment and serialisation, the same Powertools idempotency claims on DynamoDB (one
claim + one completion per record), the same token source (Powertools' cached secret read).
Failure handling is the minimum: any error makes that record a batch item failure.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import boto3
import requests

from appointment_enricher.aws.queues import string_attributes
from appointment_enricher.enrich.idempotency import Claim, Idempotency, NoIdempotency, PowertoolsIdempotency
from appointment_enricher.enrichment import build_record
from appointment_enricher.models import AppointmentWebhook, GetAppointmentResponse
from appointment_enricher.powerleads.client import DEFAULT_TIMEOUT
from appointment_enricher.powerleads.tokens import SecretTokens, StaticTokens, powertools_secret_fetcher
from appointment_enricher.wire import (
    DEFAULT_API_BASE_URL,
    DEFAULT_API_VERSION,
    DEFAULT_MAX_AGE_SECONDS,
    IngestMessage,
    parse_json_object,
)

BASE_URL = os.environ.get("POWERLEADS_API_BASE_URL", DEFAULT_API_BASE_URL).rstrip("/")
API_VERSION = os.environ.get("POWERLEADS_API_VERSION", DEFAULT_API_VERSION)
TOPIC_ARN = os.environ.get("OUTPUT_TOPIC_ARN", "")
QUEUE_URL = os.environ.get("OUTPUT_QUEUE_URL", "")
TABLE = os.environ.get("IDEMPOTENCY_TABLE_NAME", "")
SECRET_ID = os.environ.get("POWERLEADS_TOKEN_SECRET_ID", "")
TTL_SECONDS = 2 * int(os.environ.get("WEBHOOK_MAX_AGE_SECONDS", str(DEFAULT_MAX_AGE_SECONDS)))

sns = boto3.client("sns")
sqs = boto3.client("sqs")
tokens = (
    SecretTokens(SECRET_ID, powertools_secret_fetcher())
    if SECRET_ID
    else StaticTokens(os.environ.get("POWERLEADS_TOKEN", ""))
)
idempotency: Idempotency = PowertoolsIdempotency(TABLE, TTL_SECONDS) if TABLE else NoIdempotency()


def fetch(appointment_id: str, location_id: str) -> dict[str, Any] | None:
    """One GET on a brand-new connection; None on 404."""
    response = requests.get(
        f"{BASE_URL}/calendars/events/appointments/{appointment_id}",
        headers={
            "Authorization": f"Bearer {tokens.token_for(location_id)}",
            "Version": API_VERSION,
            "Accept": "application/json",
        },
        timeout=DEFAULT_TIMEOUT,
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    payload: dict[str, Any] = response.json()
    return payload


def publish(body: str, attributes: dict[str, str]) -> None:
    message_attributes: Any = string_attributes(attributes)
    if TOPIC_ARN:
        sns.publish(TopicArn=TOPIC_ARN, Message=body, MessageAttributes=message_attributes)
    if QUEUE_URL:
        sqs.send_message(QueueUrl=QUEUE_URL, MessageBody=body, MessageAttributes=message_attributes)


def handle(record: dict[str, Any], remaining_ms: int) -> None:
    ingest = IngestMessage.decode(record["body"])
    webhook = AppointmentWebhook.model_validate(parse_json_object(ingest.body))
    if idempotency.claim(ingest.dedupe_id, remaining_ms) is not Claim.NEW:
        return
    try:
        appointment = None
        if webhook.type != "AppointmentDelete":
            payload = fetch(webhook.appointment.id, webhook.locationId)
            appointment = None if payload is None else GetAppointmentResponse.model_validate(payload).event
        record_model = build_record(
            webhook,
            appointment,
            received_at=ingest.received_at,
            now=datetime.now(UTC),
            trigger=ingest.trigger,
        )
        body = record_model.model_dump_json(exclude_unset=True)
        shown = record_model.appointment
        publish(
            body,
            {
                "eventType": record_model.eventType,
                "locationId": record_model.locationId,
                "calendarId": str(shown.calendarId or ""),
                "appointmentStatus": str(shown.appointmentStatus or ""),
                "schemaVersion": record_model.schemaVersion,
            },
        )
    except Exception as exc:
        idempotency.release(ingest.dedupe_id, exc)
        raise
    idempotency.complete(ingest.dedupe_id, {"published": True, "deleted": record_model.deleted})


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event.get("Records") or []:
        try:
            handle(record, context.get_remaining_time_in_millis())
        except Exception:  # noqa: BLE001 - the baseline retries whatever failed
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
