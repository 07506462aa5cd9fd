"""WebhookFunction: ``POST /webhooks/appointments`` -> verify, validate, enqueue, 202.

Thin by design: configuration and collaborators are built once per container (a bad key or
variable fails the cold start, naming the variable); the intake rules live in
``appointment_enricher.receiver``. Imports only what intake needs (no pydantic, no requests,
no enricher) so the cold start stays near ``import boto3``.

Logging: one INFO line per delivery with status, outcome, error code and which signature
verified; the correlation id is the dedupe id. Never the body, a signature or a token.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from appointment_enricher.queues import IngestQueue
from appointment_enricher.receiver import MAX_BODY_BYTES, ReceiverConfig, Reply, WebhookReceiver
from appointment_enricher.sdk import INTAKE_CONFIG, quiet_sdk_loggers
from appointment_enricher.signatures import SignatureVerifier

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

DEFAULT_METRICS_NAMESPACE = "PowerLeadsEnricher"
# Base64 of MAX_BODY_BYTES (plus slack for padding): anything longer is too large once decoded.
_MAX_BASE64_CHARS = 4 * (MAX_BODY_BYTES // 3 + 1) + 4
_SQS_HOST_REGION = re.compile(r"^https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com", re.IGNORECASE)
_SQS_CONFIG = INTAKE_CONFIG  # fail fast: the sender waits on us (and retries)


def _sqs_client(queue_url: str) -> SQSClient:
    """Honours ``AWS_ENDPOINT_URL``; the region falls back to the queue URL's, then us-east-1."""
    session = boto3.session.Session()
    match = _SQS_HOST_REGION.match(queue_url)
    region = session.region_name or (match.group(1) if match else "us-east-1")
    return session.client("sqs", region_name=region, config=_SQS_CONFIG)


quiet_sdk_loggers()  # the root logger may be at DEBUG; botocore would log request bodies
logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE)
config = ReceiverConfig.from_env(os.environ)
verifier = SignatureVerifier.from_pem(config.ed25519_public_key, config.rsa_public_key)
receiver = WebhookReceiver(
    verifier=verifier,
    sink=IngestQueue(_sqs_client(config.ingest_queue_url), config.ingest_queue_url),
    signature_required=config.signature_required,
    max_age=timedelta(seconds=config.max_age_seconds),
)
logger.info("webhook receiver ready", extra={"keySpkiSha256": verifier.fingerprints()})
if not config.signature_required:
    logger.warning("WEBHOOK_SIGNATURE_REQUIRED=false: unsigned webhooks are accepted")

_METRIC_BY_OUTCOME = {
    "accepted": "WebhookAccepted",
    "ignored": "WebhookIgnored",
    "rejected": "WebhookRejected",
    "failed": "WebhookQueueFailed",
}


def _raw_body(event: dict[str, Any]) -> bytes | Reply:
    """The body exactly as sent (API Gateway base64-encodes bodies it cannot pass as text)."""
    body = event.get("body") or ""
    if not isinstance(body, str):
        return Reply(400, {"error": "invalid_body", "message": "body must be a string"})
    if event.get("isBase64Encoded"):
        if len(body) > _MAX_BASE64_CHARS:
            return Reply(
                413, {"error": "payload_too_large", "message": f"body exceeds {MAX_BODY_BYTES} bytes"}
            )
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return Reply(400, {"error": "invalid_encoding", "message": "body is not valid base64"})
    return body.encode("utf-8", errors="surrogatepass")


def _respond(reply: Reply) -> dict[str, Any]:
    return {
        "statusCode": reply.status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(reply.body, separators=(",", ":")),
    }


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True, log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    raw = _raw_body(event)
    reply = raw if isinstance(raw, Reply) else receiver.receive(raw, event.get("headers") or {})
    # Always set (None removes it): Powertools' clear_state does not drop a previous correlation id.
    logger.set_correlation_id(reply.dedupe_id)
    metrics.add_metric(name=_METRIC_BY_OUTCOME[reply.outcome], unit=MetricUnit.Count, value=1)
    if reply.outcome == "accepted" and reply.verdict == "missing":  # unsigned mode: count every one
        metrics.add_metric(name="WebhookUnsignedAccepted", unit=MetricUnit.Count, value=1)
    details = {
        "status": reply.status,
        "outcome": reply.outcome,
        "error": reply.body.get("error"),
        "signature": reply.verdict,
    }
    if reply.status >= 500:
        logger.error("webhook not queued", extra={**details, "cause": reply.cause})
    else:
        logger.info("webhook answered", extra=details)
    return _respond(reply)
