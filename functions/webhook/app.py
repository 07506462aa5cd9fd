"""WebhookFunction: ``POST /webhooks/appointments`` -> verify, validate, enqueue, 202.

Thin by design: configuration and collaborators are built once per container; the intake rules
live in ``appointment_enricher.receiver``. Imports only what intake needs (no pydantic models,
no requests, no enricher) so the cold start stays near ``import boto3``.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from appointment_enricher.config import ReceiverSettings
from appointment_enricher.queues import IngestQueue, sqs_client
from appointment_enricher.receiver import Reply, WebhookReceiver
from appointment_enricher.signatures import SignatureVerifier

logger = Logger()
metrics = Metrics()
settings = ReceiverSettings.from_env()
receiver = WebhookReceiver(
    verifier=SignatureVerifier.from_pem(settings.WEBHOOK_ED25519_PUBLIC_KEY, settings.WEBHOOK_RSA_PUBLIC_KEY),
    sink=IngestQueue(sqs_client(), settings.INGEST_QUEUE_URL),
    signature_required=settings.WEBHOOK_SIGNATURE_REQUIRED,
    max_age=timedelta(seconds=settings.WEBHOOK_MAX_AGE_SECONDS),
)
if not settings.WEBHOOK_SIGNATURE_REQUIRED:
    logger.warning("WEBHOOK_SIGNATURE_REQUIRED=false: unsigned webhooks are accepted")

_METRIC_BY_OUTCOME = {
    "accepted": "WebhookAccepted",
    "ignored": "WebhookIgnored",
    "rejected": "WebhookRejected",
    "failed": "WebhookQueueFailed",
}


def _raw_body(event: dict[str, Any]) -> bytes | None:
    """The body exactly as sent: API Gateway base64-encodes bodies it cannot pass as text."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return None
    return body.encode("utf-8", errors="surrogatepass")


def _respond(reply: Reply) -> dict[str, Any]:
    return {
        "statusCode": reply.status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(reply.body, separators=(",", ":")),
    }


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    raw = _raw_body(event)
    if raw is None:
        reply = Reply(400, {"error": "invalid_encoding", "message": "body is not valid base64"})
    else:
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        reply = receiver.receive(raw, headers)
    if reply.dedupe_id:
        logger.set_correlation_id(reply.dedupe_id)
    metrics.add_metric(name=_METRIC_BY_OUTCOME[reply.outcome], unit=MetricUnit.Count, value=1)
    log = logger.error if reply.status >= 500 else logger.info
    log(
        "webhook answered",
        extra={"status": reply.status, "outcome": reply.outcome, "error": reply.body.get("error")},
    )
    return _respond(reply)
