"""WebhookFunction: ``POST /webhooks/appointments`` -> verify, check the tenant, enqueue, 202.

Thin by design: configuration and collaborators are built once per container (a bad key or
variable fails the cold start, naming the variable; the template alarms on that); the intake
rules live in ``appointment_enricher.intake.receiver``. Imports only what intake needs (no pydantic,
no requests, no enricher) so the cold start stays near ``import boto3``.

Answers within ``ANSWER_BUDGET_SECONDS`` whatever the queue does, and never with a 5xx: a slow
or failing queue write, and anything unexpected anywhere in here, is a 429 with ``Retry-After``,
the one status HighLevel retries under every policy it has published.

Logging: one line per delivery with status, outcome, error code and which signature verified;
the correlation id is the dedupe id. Never the body, a signature or a token.
"""

from __future__ import annotations

import gc

# Cold start: init allocates most objects this container will ever hold (modules, botocore's
# service models, pydantic's validators) and would pay a full collection for it; the collector
# stays off until init is done, then what init built is frozen out of every later collection.
gc.disable()

import base64
import binascii
import contextlib
import json
import os
import re
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from appointment_enricher.aws.queues import IngestQueue
from appointment_enricher.aws.sdk import INTAKE_CONFIG, quiet_sdk_loggers
from appointment_enricher.config import ReceiverConfig
from appointment_enricher.intake.receiver import (
    DEFAULT_SEND_BUDGET_SECONDS,
    MAX_BODY_BYTES,
    RETRY_AFTER_SECONDS,
    Reply,
    WebhookReceiver,
    failure_cause,
    transient,
)
from appointment_enricher.intake.signatures import SignatureVerifier

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

DEFAULT_METRICS_NAMESPACE = "PowerLeadsEnricher"
# The sender gets an answer within this long (template: the function timeout has a margin above it).
ANSWER_BUDGET_SECONDS = 3.0
SEND_BUDGET_SECONDS = DEFAULT_SEND_BUDGET_SECONDS
# Kept free before the Lambda deadline for the answer, the log line and the metrics flush.
DEADLINE_MARGIN_SECONDS = 0.5
# Base64 of MAX_BODY_BYTES (plus slack for padding): anything longer is too large once decoded.
_MAX_BASE64_CHARS = 4 * (MAX_BODY_BYTES // 3 + 1) + 4
_SQS_HOST_REGION = re.compile(r"^https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com", re.IGNORECASE)
# Short timeouts, two attempts in all (sdk.INTAKE_CONFIG): the receiver's deadline is the hard
# bound (a trickling response resets botocore's per-read timeout); these only keep a write that
# outlives the answer from lingering in the background.
_SQS_CONFIG = INTAKE_CONFIG
_LAST_RESORT_BODY = '{"error":"internal_error","message":"unexpected error; retry"}'


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
    tenancy=config.tenancy,
)
logger.info("webhook receiver ready", extra={"keySpkiSha256": verifier.fingerprints()})
if not config.signature_required:
    logger.warning("WEBHOOK_SIGNATURE_REQUIRED=false: unsigned webhooks are accepted")
if config.tenancy.app_ids is None:
    logger.warning("WEBHOOK_APP_IDS unset: verified events of any marketplace app are accepted")
if config.tenancy.location_ids is None:
    logger.warning("WEBHOOK_LOCATION_IDS unset: verified events of any location are accepted")

_METRIC_BY_OUTCOME = {
    "accepted": "WebhookAccepted",
    "ignored": "WebhookIgnored",
    "foreign": "WebhookForeignTenant",
    "rejected": "WebhookRejected",
    "deferred": "WebhookQueueFailed",
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
        "headers": {"content-type": "application/json", **reply.headers},
        "body": json.dumps(reply.body, separators=(",", ":")),
    }


def _deadline(context: LambdaContext, started: float) -> float:
    """When the queue write must have returned: the send budget, and never later than the
    Lambda's own deadline less a margin (a timeout would be a 5xx from API Gateway)."""
    deadline = started + SEND_BUDGET_SECONDS
    with contextlib.suppress(Exception):  # a context without a clock: the budget alone
        remaining = context.get_remaining_time_in_millis() / 1000
        deadline = min(deadline, time.monotonic() + remaining - DEADLINE_MARGIN_SECONDS)
    return deadline


def _record(reply: Reply) -> None:
    """One log line and one metric per delivery (never the body, a signature or a token)."""
    # Always set (None removes it): Powertools' clear_state does not drop a previous correlation id.
    logger.set_correlation_id(reply.dedupe_id)
    name = _METRIC_BY_OUTCOME.get(reply.outcome, "WebhookRejected")
    if reply.body.get("error") == "internal_error":
        name = "WebhookInternalError"
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if reply.outcome == "accepted" and reply.verdict == "missing":  # unsigned mode: count every one
        metrics.add_metric(name="WebhookUnsignedAccepted", unit=MetricUnit.Count, value=1)
    details = {
        "status": reply.status,
        "outcome": reply.outcome,
        "error": reply.body.get("error"),
        "signature": reply.verdict,
    }
    if reply.notes:
        details["notes"] = list(reply.notes)
    if reply.status == 429:
        logger.error("webhook not queued; sender asked to retry", extra={**details, "cause": reply.cause})
    elif reply.outcome == "foreign":
        logger.warning("webhook for another tenant ignored", extra={**details, "reason": reply.cause})
    else:
        logger.info("webhook answered", extra=details)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True, log_event=False)
def _handle(event: dict[str, Any], context: LambdaContext, started: float) -> dict[str, Any]:
    try:
        raw = _raw_body(event)
        if isinstance(raw, Reply):
            reply = raw
        else:
            reply = receiver.receive(raw, event.get("headers") or {}, deadline=_deadline(context, started))
    except Exception as exc:  # noqa: BLE001 - a bug must not become a final answer: the sender retries
        reply = transient("internal_error", "unexpected error; retry", failure_cause(exc))
    with contextlib.suppress(Exception):  # logging or metrics must not change the answer
        _record(reply)
    return _respond(reply)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Never raises: whatever fails in here (even the instrumentation) is answered 429."""
    started = time.monotonic()
    try:
        answer: dict[str, Any] = _handle(event, context, started)
        return answer
    except Exception as exc:  # noqa: BLE001 - the last line of defence against a 5xx
        with contextlib.suppress(Exception):
            logger.error("webhook handler failed; sender asked to retry", extra={"cause": failure_cause(exc)})
        # Literals only: nothing that could fail again is involved in producing this answer.
        return {
            "statusCode": 429,
            "headers": {"content-type": "application/json", "retry-after": str(RETRY_AFTER_SECONDS)},
            "body": _LAST_RESORT_BODY,
        }


# End of init (see the top of this file): what init built lives as long as the container.
gc.freeze()
gc.enable()
