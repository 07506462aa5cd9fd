"""SQS adapters: the ingest queue the receiver writes and the quarantine the enricher writes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .formats import rfc3339

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

MAX_ATTRIBUTE_TEXT = 1024


def sqs_client() -> SQSClient:
    """One client per container; honours ``AWS_ENDPOINT_URL`` (moto server locally)."""
    import boto3  # noqa: PLC0415 - imported where used so domain imports stay cheap

    return boto3.client("sqs")


def string_attributes(values: Mapping[str, str | None]) -> dict[str, Any]:
    """SQS/SNS message attributes from plain strings; empty values are left out (AWS rejects them)."""
    return {
        name: {"DataType": "String", "StringValue": value[:MAX_ATTRIBUTE_TEXT]}
        for name, value in values.items()
        if value
    }


class IngestQueue:
    """The FIFO queue between the receiver and the enricher."""

    def __init__(self, client: SQSClient, url: str) -> None:
        self.client = client
        self.url = url

    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str:
        """Durably queue one webhook; raises on failure (the receiver then answers 503)."""
        response = self.client.send_message(
            QueueUrl=self.url,
            MessageBody=body,
            MessageGroupId=group_id,
            MessageDeduplicationId=dedupe_id,
            MessageAttributes=string_attributes(attributes),
        )
        return response["MessageId"]


class Quarantine:
    """Where permanent failures go, with their reason, so nothing accepted is dropped silently."""

    def __init__(self, client: SQSClient, url: str) -> None:
        self.client = client
        self.url = url

    def send(
        self,
        original_body: str,
        *,
        error_type: str,
        error_message: str,
        source_message_id: str,
        extra: Mapping[str, str | None] | None = None,
        now: datetime | None = None,
    ) -> None:
        attributes = {
            "errorType": error_type,
            "errorMessage": error_message or error_type,
            "failedAt": rfc3339(now or datetime.now(UTC)),
            "sourceMessageId": source_message_id,
            **(extra or {}),
        }
        self.client.send_message(
            QueueUrl=self.url,
            MessageBody=original_body,
            MessageAttributes=string_attributes(attributes),
        )
