"""Composition root of the ReconcilerFunction (and of ``plenrich reconcile``): settings in, a ready
``Reconciler`` out. Every client is made once per container; AWS clients come from ``sdk`` (its
timeouts and retry mode).

The HTTP session carries a response hook that hands each list response's ``X-RateLimit-*``
headers to the reconciler's ``Pacer``, so the reconciler sees how much of a location's window the
enricher is using without the HTTP client knowing about pacing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ..aws.queues import IngestQueue
from ..aws.sdk import dynamodb_client, sqs_client
from ..budget.wiring import reconciler_spender
from ..config import ReconcilerSettings
from ..config.intake import Tenancy
from ..ledger.dynamodb import DynamoLedger
from ..powerleads.client import PowerLeadsClient, RetryPolicy, pooled_session
from ..powerleads.wiring import build_token_source
from .cursors import DynamoCursorStore
from .lease import DynamoRunLease
from .run import CursorStore, IngestSink, Pacer, ReconcileOptions, Reconciler

if TYPE_CHECKING:
    import requests


def build_reconciler(
    settings: ReconcilerSettings,
    log: Callable[..., None] | None = None,
    sink: IngestSink | None = None,
    cursors: CursorStore | None = None,
) -> Reconciler:
    """The reconciler; ``sink`` and ``cursors`` replace the ingest queue and the stored cursors
    (``plenrich reconcile --dry-run`` enqueues nothing and leaves the scheduled run's cursors be)."""
    pacer = Pacer(budget=settings.RECONCILE_REQUESTS_PER_10S)
    session = pooled_session(pool_size=4)
    session.hooks["response"].append(_rate_limit_hook(pacer))
    client = PowerLeadsClient(
        settings.POWERLEADS_API_BASE_URL,
        build_token_source(
            secret_id=settings.POWERLEADS_TOKEN_SECRET_ID,
            token=settings.POWERLEADS_TOKEN,
            base_url=settings.POWERLEADS_API_BASE_URL,
            session=session,
            # The OAuth counters are the enricher's metrics; the reconciler's errors show in its summary.
            count=lambda _name: None,
        ),
        api_version=settings.POWERLEADS_API_VERSION,
        timeout=(settings.POWERLEADS_CONNECT_TIMEOUT_SECONDS, settings.POWERLEADS_READ_TIMEOUT_SECONDS),
        retry=RetryPolicy(max_attempts=settings.POWERLEADS_MAX_ATTEMPTS),
        session=session,
        budget=reconciler_spender(
            settings.BUDGET_TABLE_NAME, containers=settings.ENRICHER_MAXIMUM_CONCURRENCY
        ),
    )
    dynamodb = dynamodb_client()
    table = settings.LEDGER_TABLE_NAME
    return Reconciler(
        client,
        DynamoLedger(dynamodb, table),  # read only: entries and known locations
        cursors or DynamoCursorStore(dynamodb, table),
        sink or IngestQueue(sqs_client(), settings.INGEST_QUEUE_URL),
        pacer=pacer,
        options=ReconcileOptions(
            lookback_days=settings.RECONCILE_LOOKBACK_DAYS,
            lookahead_days=settings.RECONCILE_LOOKAHEAD_DAYS,
            max_events=settings.RECONCILE_MAX_EVENTS_PER_WINDOW,
        ),
        log=log,
        served=Tenancy.from_env(os.environ).location_ids,
    )


def build_run_lease(settings: ReconcilerSettings) -> DynamoRunLease:
    """The one-run-at-a-time lease (``lease.run_alone``), in the ledger table."""
    return DynamoRunLease(dynamodb_client(), settings.LEDGER_TABLE_NAME)


def _rate_limit_hook(pacer: Pacer) -> Callable[..., Any]:
    """A requests response hook: the location comes from the list request's ``locationId``."""

    def observe(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        location = parse_qs(urlsplit(response.request.url or "").query).get("locationId")
        if location:
            pacer.observe(location[0], response.headers)

    return observe
