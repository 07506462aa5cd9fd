"""EnricherFunction: SQS batch from the ingest queue -> enriched records on SNS/SQS.

Thin by design: collaborators are built once per container and shared by every invocation;
the batch rules live in ``appointment_enricher.enrich.service``.
"""

from __future__ import annotations

import gc

# Cold start: init allocates most objects this container will ever hold (modules, botocore's
# service models, pydantic's validators) and would pay a full collection for it; the collector
# stays off until init is done, then what init built is frozen out of every later collection.
gc.disable()

from appointment_enricher.powerleads.detection import skip_charset_detection

# Before anything imports requests: no character-set detector to import (JSON only; the module says why).
skip_charset_detection()

import os
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from appointment_enricher.aws.sdk import quiet_sdk_loggers
from appointment_enricher.config import EnricherSettings
from appointment_enricher.enrich.service import Item
from appointment_enricher.enrich.wiring import build_enricher

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer


def _tracer() -> Tracer | None:
    """Powertools' Tracer imports the X-Ray SDK even when disabled (the largest single import of
    this cold start, see BENCHMARKS.md); build it only when tracing is on.

    Only boto3 is patched: a patched ``requests`` records exception messages, and ``requests``
    puts the whole header (the bearer token) into some of them (``InvalidHeader``)."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    from aws_lambda_powertools import Tracer  # noqa: PLC0415

    return Tracer(patch_modules=TRACED_MODULES)


TRACED_MODULES = ("boto3",)

quiet_sdk_loggers()  # before any client exists: botocore logs secret values at DEBUG
logger = Logger()
metrics = Metrics()
tracer = _tracer()
settings = EnricherSettings.from_env()


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


service, stats = build_enricher(settings, log=_log)


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


# End of init (see the top of this file): what init built lives as long as the container.
gc.freeze()
gc.enable()
