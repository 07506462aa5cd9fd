"""Cost per million webhook events at AWS list prices, from measured durations and call counts.

Prices: us-east-1 public list prices, first tier, no free tier, as published on the AWS pricing
pages and last checked by hand on ``PRICES_DATE`` (the bench machine has no internet: edit
``PRICES`` when AWS changes them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

PRICES_DATE = "2025-06-01"
PRICES: dict[str, float] = {
    # AWS Lambda, arm64 (Graviton), first 7.5 billion GB-s per month
    "lambda_gb_second": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    # API Gateway HTTP API, first 300 million requests per month (billed per 512 KB)
    "http_api_request": 1.00 / 1e6,
    # SQS per request (each 64 KiB of payload is one request)
    "sqs_fifo_request": 0.50 / 1e6,
    "sqs_standard_request": 0.40 / 1e6,
    # SNS standard topic publish, per request (each 64 KiB chunk is one request);
    # SNS -> SQS deliveries carry no SNS charge (the queue's SQS requests are billed)
    "sns_publish_request": 0.50 / 1e6,
    # DynamoDB on-demand (standard table class), per request unit (items here are < 1 KB)
    "ddb_write_request_unit": 0.625 / 1e6,
    "ddb_read_request_unit": 0.125 / 1e6,
    # Secrets Manager, per API call ($0.05 per 10,000)
    "secrets_api_call": 0.05 / 1e4,
}

DDB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
DDB_READS = ("GetItem", "Query", "BatchGetItem")


INTAKE_ENDPOINTS = ("FunctionUrl", "HttpApi")  # template.yaml IntakeEndpoint, default first


@dataclass(frozen=True)
class Settings:
    """The deployment both implementations are priced at (template.yaml defaults)."""

    receiver_memory_mb: int = 128
    enricher_memory_mb: int = 256
    batch_size: int = 10
    # What HighLevel posts to: a function URL has no per-request charge, the HTTP API does.
    intake_endpoint: str = INTAKE_ENDPOINTS[0]
    # The fleet rate budget's own DynamoDB writes on top of the measured calls. None by default:
    # the bench's enricher spends from the DynamoDB budget (the template's setting), so its lease
    # writes are among the UpdateItems counted; the naive implementation has no budget.
    budget_writes_per_event: float = 0.0


def _gb_seconds(duration_ms: float, memory_mb: int) -> float:
    return math.ceil(duration_ms) / 1000 * memory_mb / 1024  # Lambda bills per started ms


def per_million(
    *,
    receiver_ms: float,
    receiver_chunks_per_event: Mapping[str, float],
    enricher_batch_ms: float,
    enricher_chunks_per_batch: Mapping[str, float],
    settings: Settings = Settings(),
    events: int = 1_000_000,
) -> dict[str, float]:
    """Dollars per ``events`` webhook events, by line item.

    ``*_chunks_*`` map ``service:Operation`` to billed request units (64 KiB chunks for SQS/SNS)
    measured by the probes; the enricher sees full batches of ``settings.batch_size``.
    """
    p = PRICES
    if settings.intake_endpoint not in INTAKE_ENDPOINTS:
        raise ValueError(f"intake_endpoint must be one of {INTAKE_ENDPOINTS}")
    batches = events / settings.batch_size
    http_api = settings.intake_endpoint == "HttpApi"
    enricher = dict(enricher_chunks_per_batch)

    def calls(prefix: str, ops: tuple[str, ...] | None = None) -> float:
        return sum(
            n
            for name, n in enricher.items()
            if name.startswith(prefix) and (ops is None or name.split(":", 1)[1] in ops)
        )

    ingest_sends = receiver_chunks_per_event.get("sqs:SendMessage", 1.0)
    lines = {
        "HTTP API requests": events * p["http_api_request"] if http_api else 0.0,
        "Receiver Lambda requests": events * p["lambda_request"],
        "Receiver Lambda GB-s": events
        * _gb_seconds(receiver_ms, settings.receiver_memory_mb)
        * p["lambda_gb_second"],
        # SendMessage by the receiver + ReceiveMessage and DeleteMessageBatch by the event source
        # mapping, one each per full batch (empty long polls not counted)
        "SQS FIFO (ingest) requests": (events * ingest_sends + 2 * batches) * p["sqs_fifo_request"],
        "Enricher Lambda requests": batches * p["lambda_request"],
        "Enricher Lambda GB-s": batches
        * _gb_seconds(enricher_batch_ms, settings.enricher_memory_mb)
        * p["lambda_gb_second"],
        "SNS publish requests": batches * calls("sns:") * p["sns_publish_request"],
        # every record reaches EnrichedQueue through the subscription (a standard queue),
        # plus anything the enricher sends to SQS itself (output queue / quarantine)
        "SQS delivery + output requests": (events + batches * calls("sqs:")) * p["sqs_standard_request"],
        "DynamoDB writes": batches * calls("dynamodb:", DDB_WRITES) * p["ddb_write_request_unit"],
        "DynamoDB reads": batches * calls("dynamodb:", DDB_READS) * p["ddb_read_request_unit"],
        "Secrets Manager calls": batches * calls("secretsmanager:") * p["secrets_api_call"],
    }
    if settings.budget_writes_per_event:  # an assumption on top of the measured calls
        lines["DynamoDB fleet budget writes (assumed)"] = (
            events * settings.budget_writes_per_event * p["ddb_write_request_unit"]
        )
    lines["Total"] = sum(lines.values())
    return lines
