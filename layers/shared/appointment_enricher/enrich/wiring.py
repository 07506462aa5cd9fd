"""Composition root of the EnricherFunction: settings in, a ready ``EnricherService`` out.

Every AWS client and the HTTP session are made here, once per container, from boto3's default
session (a new boto3 Session re-reads botocore's data files: ~100 ms of cold start each), with the
timeouts and retry mode of ``sdk``; that includes the Secrets Manager client OAuth refreshes use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..aws.publisher import Destination, Publisher, SnsDestination, SqsDestination
from ..aws.queues import Quarantine
from ..aws.sdk import PUBLISH_CONFIG, LazyClient, dynamodb_client, sns_client, sqs_client
from ..budget.wiring import enricher_spender
from ..config import EnricherSettings
from ..config.intake import Tenancy
from ..ledger.dynamodb import DynamoLedger
from ..powerleads.client import PowerLeadsClient, RetryPolicy, pooled_session
from ..powerleads.tokens import SecretTokens
from ..powerleads.wiring import build_token_source
from .handback import HandBack
from .idempotency import Idempotency, NoIdempotency, PowertoolsIdempotency
from .service import EnricherService, Stats

if TYPE_CHECKING:
    from .related import RelatedFetcher


def build_enricher(
    settings: EnricherSettings, log: Callable[..., None] | None = None
) -> tuple[EnricherService, Stats]:
    """The service and the per-invocation tallies its HTTP client reports into."""
    sqs: Any = LazyClient(sqs_client)  # quarantine and hand-backs only: most containers never call it
    stats = Stats()
    destinations: list[Destination] = []
    if settings.OUTPUT_TOPIC_ARN:
        destinations.append(SnsDestination(sns_client(PUBLISH_CONFIG), settings.OUTPUT_TOPIC_ARN))
    if settings.OUTPUT_QUEUE_URL:  # its own client: publish calls are bounded (sdk.PUBLISH_CONFIG)
        destinations.append(SqsDestination(sqs_client(PUBLISH_CONFIG), settings.OUTPUT_QUEUE_URL))
    # Related entities: up to four more requests in flight per worker (their own pool, below).
    connections = max(settings.ENRICHER_MAX_WORKERS, 10) * (2 if settings.ENRICH_RELATED else 1)
    session = pooled_session(pool_size=connections)
    tokens = build_token_source(
        secret_id=settings.POWERLEADS_TOKEN_SECRET_ID,
        token=settings.POWERLEADS_TOKEN,
        base_url=settings.POWERLEADS_API_BASE_URL,
        session=session,
        count=stats.add,
    )
    dynamodb = dynamodb_client() if settings.IDEMPOTENCY_TABLE_NAME or settings.LEDGER_TABLE_NAME else None
    ledger = (
        DynamoLedger(
            dynamodb,
            settings.LEDGER_TABLE_NAME,
            receipt_ttl_seconds=settings.idempotency_ttl_seconds,
            receipts_table_name=settings.IDEMPOTENCY_TABLE_NAME,
        )
        if dynamodb is not None and settings.LEDGER_TABLE_NAME
        else None
    )
    # With the ledger on, its conditional writes and the receipts (kept in the idempotency table
    # when there is one) are the claims (tracking.ReceiptClaims): no Powertools records then.
    idempotency: Idempotency | None = (
        None
        if ledger is not None
        else PowertoolsIdempotency(
            settings.IDEMPOTENCY_TABLE_NAME, settings.idempotency_ttl_seconds, client=dynamodb
        )
        if settings.IDEMPOTENCY_TABLE_NAME
        else NoIdempotency()
    )
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
        budget=enricher_spender(
            settings.BUDGET_TABLE_NAME,
            dynamodb,
            containers=settings.ENRICHER_MAXIMUM_CONCURRENCY,
            related=len(settings.ENRICH_RELATED),
        ),
    )
    service = EnricherService(
        client,
        Publisher(destinations),
        Quarantine(sqs, settings.QUARANTINE_QUEUE_URL),
        idempotency,
        ledger=ledger,
        not_found_grace_seconds=settings.NOT_FOUND_GRACE_SECONDS,
        suppress_unchanged=settings.SUPPRESS_UNCHANGED_RECORDS,
        max_workers=settings.ENRICHER_MAX_WORKERS,
        deadline_margin_seconds=settings.ENRICHER_DEADLINE_MARGIN_SECONDS,
        log=log,
        related=_related(settings, client, connections) if settings.ENRICH_RELATED else None,
        handback=HandBack(
            sqs,
            settings.INGEST_QUEUE_URL,
            max_receive_count=settings.INGEST_MAX_RECEIVE_COUNT,
            log=log or _quiet,
        ),
        tenancy=Tenancy.from_env(os.environ),
        warm=tokens.prefetch if isinstance(tokens, SecretTokens) else None,
    )
    return service, stats


def _related(settings: EnricherSettings, client: PowerLeadsClient, connections: int) -> RelatedFetcher:
    """``ENRICH_RELATED``: the fetcher, on the appointment's own client (token source, gate,
    retries and budget), with its own pool. Imported here: the default build never loads it."""
    from .related import RelatedCache, RelatedFetcher  # noqa: PLC0415 - see the docstring

    return RelatedFetcher(
        client,
        settings.ENRICH_RELATED,
        settings.CONTACT_FIELDS,
        RelatedCache(settings.RELATED_CACHE_SECONDS, settings.CONTACT_CACHE_SECONDS),
        ThreadPoolExecutor(max_workers=connections // 2, thread_name_prefix="related"),
    )


def _quiet(*_args: object, **_kwargs: object) -> None:
    return None
