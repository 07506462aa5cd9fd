"""EnricherFunction: SQS batch from the ingest queue -> enriched records on SNS/SQS.

Thin by design: collaborators are built once per container and shared by every invocation;
the batch rules live in ``appointment_enricher.enricher``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from appointment_enricher.config import EnricherSettings
from appointment_enricher.enricher import EnricherService, Item, Stats
from appointment_enricher.idempotency import Idempotency, NoIdempotency, PowertoolsIdempotency
from appointment_enricher.powerleads import PowerLeadsClient, RetryPolicy, pooled_session
from appointment_enricher.publisher import Destination, Publisher, SnsDestination, SqsDestination
from appointment_enricher.queues import Quarantine, sqs_client
from appointment_enricher.tokens import SecretTokens, StaticTokens, TokenSource, powertools_secret_fetcher

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer
    from requests import Session


def _tracer() -> Tracer | None:
    """Powertools' Tracer imports the X-Ray SDK even when disabled (the largest single import of
    this cold start, see BENCHMARKS.md); build it only when tracing is on."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    from aws_lambda_powertools import Tracer  # noqa: PLC0415

    return Tracer()


logger = Logger()
metrics = Metrics()
tracer = _tracer()
settings = EnricherSettings.from_env()


def _build() -> tuple[EnricherService, Stats]:
    import boto3  # noqa: PLC0415 - one place that creates every AWS client

    sqs = sqs_client()
    destinations: list[Destination] = []
    if settings.OUTPUT_TOPIC_ARN:
        destinations.append(SnsDestination(boto3.client("sns"), settings.OUTPUT_TOPIC_ARN))
    if settings.OUTPUT_QUEUE_URL:
        destinations.append(SqsDestination(sqs, settings.OUTPUT_QUEUE_URL))
    session = pooled_session(pool_size=max(settings.ENRICHER_MAX_WORKERS, 10))
    secret_id = settings.POWERLEADS_TOKEN_SECRET_ID
    tokens = (
        SecretTokens(
            secret_id,
            powertools_secret_fetcher(client=boto3.client("secretsmanager")),
            oauth_factory=lambda: _oauth_tokens(secret_id, session),
        )
        if secret_id
        else StaticTokens(settings.POWERLEADS_TOKEN or "")
    )
    idempotency: Idempotency = (
        PowertoolsIdempotency(
            settings.IDEMPOTENCY_TABLE_NAME, settings.idempotency_ttl_seconds, client=boto3.client("dynamodb")
        )
        if settings.IDEMPOTENCY_TABLE_NAME
        else NoIdempotency()
    )
    stats = Stats()
    client = PowerLeadsClient(
        settings.POWERLEADS_API_BASE_URL,
        tokens,
        api_version=settings.POWERLEADS_API_VERSION,
        timeout=(settings.POWERLEADS_CONNECT_TIMEOUT_SECONDS, settings.POWERLEADS_READ_TIMEOUT_SECONDS),
        retry=RetryPolicy(
            base_delay=settings.POWERLEADS_RETRY_BASE_SECONDS,
            max_delay=settings.POWERLEADS_RETRY_MAX_SECONDS,
            max_attempts=settings.POWERLEADS_MAX_ATTEMPTS,
        ),
        session=session,  # one pooled Session shared by every worker thread (and OAuth refreshes)
        observe=stats.upstream,
    )
    service = EnricherService(
        client,
        Publisher(destinations),
        Quarantine(sqs, settings.DEAD_LETTER_QUEUE_URL),
        idempotency,
        max_workers=settings.ENRICHER_MAX_WORKERS,
        deadline_margin_seconds=settings.ENRICHER_DEADLINE_MARGIN_SECONDS,
        log=_log,
    )
    return service, stats


def _oauth_tokens(secret_id: str, session: Session) -> TokenSource:
    """Imported only when the secret turns out to hold an OAuth app (keeps the cold start lean)."""
    from appointment_enricher.oauth import OAuthTokens  # noqa: PLC0415

    return OAuthTokens.from_secret_id(secret_id, settings.POWERLEADS_API_BASE_URL, session=session)


def _log(level: str, message: str, **fields: Any) -> None:
    """One structured line; ``correlation_id`` (the dedupe id) goes to Powertools' own key.

    Fields never carry the PowerLeads token: errors are built from status codes and upstream
    error bodies, and the token sources hide themselves in ``repr``.
    """
    correlation_id = fields.pop("correlation_id", None)
    extra = {k: v for k, v in fields.items() if v is not None}
    if correlation_id is not None:
        extra["correlation_id"] = correlation_id
    getattr(logger, level)(message, extra=extra)


service, stats = _build()


@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context(clear_state=True)
def _handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records") or []
    items = service.process(records, context.get_remaining_time_in_millis, stats)
    for name, value in stats.drain().items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    # EMF allows 100 values per metric per document; more than that is noise, not signal.
    for latency in stats.drain_latencies()[:100]:
        metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=latency)
    if tracer is not None:
        _annotate(tracer, items)
    return {"batchItemFailures": service.failures(items)}


lambda_handler = _handle if tracer is None else tracer.capture_lambda_handler(capture_response=False)(_handle)


def _annotate(tracer: Tracer, items: list[Item]) -> None:
    """X-Ray annotations ``appointmentId``/``locationId``: on the handler segment when the batch
    is about one appointment, and on one subsegment per appointment (searchable either way)."""
    appointments = sorted(
        {(i.webhook.appointment.id, i.webhook.locationId) for i in items if i.webhook is not None}
    )
    if len(appointments) == 1:
        tracer.put_annotation("appointmentId", appointments[0][0])
        tracer.put_annotation("locationId", appointments[0][1])
    for appointment_id, location_id in appointments:
        outcomes = ",".join(sorted({i.outcome.value for i in items if i.group == appointment_id}))
        with tracer.provider.in_subsegment("## appointment") as subsegment:
            subsegment.put_annotation("appointmentId", appointment_id)
            subsegment.put_annotation("locationId", location_id)
            subsegment.put_metadata("outcomes", outcomes)
