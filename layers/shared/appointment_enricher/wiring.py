"""Composition root of the EnricherFunction: settings in, a ready ``EnricherService`` out.

Every AWS client and the HTTP session are made here, once per container, from boto3's default
session (a new boto3 Session re-reads botocore's data files: ~100 ms of cold start each), with the
timeouts and retry mode of ``sdk``; that includes the Secrets Manager client OAuth refreshes use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .config import EnricherSettings
from .dynamo_ledger import DynamoLedger
from .enricher import EnricherService, Stats
from .idempotency import Idempotency, NoIdempotency, PowertoolsIdempotency
from .powerleads import PowerLeadsClient, RetryPolicy, pooled_session
from .publisher import Destination, Publisher, SnsDestination, SqsDestination
from .queues import Quarantine
from .sdk import dynamodb_client, secretsmanager_client, sns_client, sqs_client
from .tokens import SecretTokens, StaticTokens, TokenSource, powertools_secret_fetcher

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from requests import Session


def build_enricher(
    settings: EnricherSettings, log: Callable[..., None] | None = None
) -> tuple[EnricherService, Stats]:
    """The service and the per-invocation tallies its HTTP client reports into."""
    sqs = sqs_client()
    stats = Stats()
    destinations: list[Destination] = []
    if settings.OUTPUT_TOPIC_ARN:
        destinations.append(SnsDestination(sns_client(), settings.OUTPUT_TOPIC_ARN))
    if settings.OUTPUT_QUEUE_URL:
        destinations.append(SqsDestination(sqs, settings.OUTPUT_QUEUE_URL))
    session = pooled_session(pool_size=max(settings.ENRICHER_MAX_WORKERS, 10))
    secret_id = settings.POWERLEADS_TOKEN_SECRET_ID
    tokens: TokenSource
    if secret_id:
        secrets = secretsmanager_client()
        tokens = SecretTokens(
            secret_id,
            powertools_secret_fetcher(client=secrets),
            oauth_factory=lambda: _oauth_tokens(
                secret_id,
                settings.POWERLEADS_API_BASE_URL,
                secrets_client=secrets,
                session=session,
                count=stats.add,
            ),
        )
    else:
        tokens = StaticTokens(settings.POWERLEADS_TOKEN or "")
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
    )
    return service, stats


def _oauth_tokens(
    secret_id: str,
    base_url: str,
    *,
    secrets_client: SecretsManagerClient,
    session: Session,
    count: Callable[[str], None],
) -> TokenSource:
    """Imported only when the secret turns out to hold an OAuth app (keeps the cold start lean)."""
    from .oauth import OAuthTokens  # noqa: PLC0415

    return OAuthTokens(secret_id, secrets_client, session, base_url, count=count)
