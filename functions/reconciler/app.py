"""ReconcilerFunction: on a schedule, recover every appointment change no webhook delivered.

Takes an EventBridge Scheduler / ``Scheduled Event`` (or ``{}``): sweeps ``RECONCILE_LOCATION_IDS``
plus every location the ledger knows; ``{"locationIds": [...]}`` limits the run to those. Returns
a JSON-serialisable summary and logs it as one line. One run at a time: while another holds the
lease (a run still going, or ``plenrich reconcile``) it sweeps nothing (``busy``). Thin by
design: collaborators are built once per container (``appointment_enricher.reconcile.wiring``);
the rules live in ``reconcile``.
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

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from appointment_enricher.aws.sdk import quiet_sdk_loggers
from appointment_enricher.config import ReconcilerSettings
from appointment_enricher.reconcile.lease import run_alone
from appointment_enricher.reconcile.wiring import build_reconciler, build_run_lease
from appointment_enricher.wire import is_valid_id

quiet_sdk_loggers()  # botocore at DEBUG would log secret values (LogLevel=DEBUG)
logger = Logger()
metrics = Metrics()
settings = ReconcilerSettings.from_env()


def _log(level: str, message: str, **fields: Any) -> None:
    """Ids, counts and error class names only: never a token or a listed event."""
    getattr(logger, level)(message, extra={k: v for k, v in fields.items() if v is not None})


reconciler = build_reconciler(settings, log=_log)
lease = build_run_lease(settings)  # one run at a time, `plenrich reconcile` included


def requested_locations(event: Any) -> list[str] | str:
    """The event's ``locationIds`` (possibly empty), or the reason they are unusable."""
    if not isinstance(event, dict) or event.get("locationIds") is None:
        return []
    ids = event["locationIds"]
    if not isinstance(ids, list) or not all(is_valid_id(i) for i in ids):
        return "locationIds must be a list of ids matching [A-Za-z0-9_-]{1,128}"
    return list(ids)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    requested = requested_locations(event)
    if isinstance(requested, str):
        logger.error("reconcile refused", extra={"reason": requested})
        metrics.add_metric(name="ReconcileErrors", unit=MetricUnit.Count, value=1)
        return {"error": "invalid_event", "message": requested, "errors": 1, "enqueued": 0}
    # The run stops in time to store its cursors; the margin covers those writes and the return.
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000
    deadline -= settings.RECONCILE_DEADLINE_MARGIN_SECONDS
    locations, errors = reconciler.locations(requested, settings.RECONCILE_LOCATION_IDS)
    summary = run_alone(reconciler, lease, locations, deadline)
    summary["errors"] += errors
    if summary.get("busy"):
        metrics.add_metric(name="ReconcileSkippedBusy", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ReconcileEnqueued", unit=MetricUnit.Count, value=summary["enqueued"])
    metrics.add_metric(name="ReconcileErrors", unit=MetricUnit.Count, value=summary["errors"])
    metrics.add_metric(name="ReconcileRequests", unit=MetricUnit.Count, value=summary["requests"])
    metrics.add_metric(name="ReconcileDuration", unit=MetricUnit.Milliseconds, value=summary["durationMs"])
    if summary["stoppedEarly"]:
        metrics.add_metric(name="ReconcileStoppedEarly", unit=MetricUnit.Count, value=1)
    per_location = summary.pop("perLocation")
    logger.info(
        "reconcile run", extra={**summary, "locationsSwept": [p["location_id"] for p in per_location]}
    )
    summary["perLocation"] = per_location
    return summary


# End of init (see the top of this file): what init built lives as long as the container.
gc.freeze()
gc.enable()
