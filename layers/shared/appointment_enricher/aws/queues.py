"""SQS adapters: the ingest queue the receiver writes and the quarantine the enricher writes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..wire import rfc3339

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

MAX_ATTRIBUTE_TEXT = 1024
# Characters SQS/SNS refuse in message bodies and attribute values: the complement of XML 1.0's
# #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF], surrogates included.
# Spelled as the (small) refused set: the negated class over the astral planes costs the cold
# start milliseconds to compile (BENCHMARKS.md).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def sqs_client() -> SQSClient:
    """One client per container; honours ``AWS_ENDPOINT_URL`` (moto server locally)."""
    from .sdk import sqs_client as configured  # noqa: PLC0415 - timeouts and retries live there

    return configured()


def string_attributes(values: Mapping[str, str | None]) -> dict[str, Any]:
    """SQS/SNS message attributes from plain strings; empty values are left out (AWS rejects them).

    Characters AWS refuses are replaced, so an odd upstream error text cannot fail the send.
    """
    return {
        name: {"DataType": "String", "StringValue": _NOT_XML.sub("\ufffd", value[:MAX_ATTRIBUTE_TEXT])}
        for name, value in values.items()
        if value
    }


class IngestQueue:
    """The FIFO queue between the receiver and the enricher."""

    def __init__(self, client: SQSClient, url: str) -> None:
        self.client = client
        self.url = url

    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str:
        """Durably queue one webhook; raises on failure (the receiver then answers 429)."""
        response = self.client.send_message(
            QueueUrl=self.url,
            MessageBody=body,
            MessageGroupId=group_id,
            MessageDeduplicationId=dedupe_id,
            MessageAttributes=string_attributes(attributes),
        )
        return response["MessageId"]


class Quarantine:
    """Where permanent failures go, with their reason, so nothing accepted is dropped silently.

    The message body is the original ingest message, unchanged, so it can be redriven; the reason
    travels in the attributes ``errorType``, ``errorMessage``, ``failedAt`` (plus the source
    message id and, when known, dedupe/appointment/location ids and the event type).
    A FIFO quarantine queue gets a group (the appointment) and a deduplication id.
    """

    def __init__(self, client: SQSClient, url: str) -> None:
        self.client = client
        self.url = url
        self.fifo = url.endswith(".fifo")

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
        body = original_body or "(empty message body)"
        fifo: dict[str, str] = {}
        if self.fifo:
            group = (extra or {}).get("appointmentId") or "quarantine"
            digest = hashlib.sha256(f"{source_message_id}:{error_type}".encode()).hexdigest()
            fifo = {"MessageGroupId": group, "MessageDeduplicationId": digest}
        self.client.send_message(
            QueueUrl=self.url,
            MessageBody=_NOT_XML.sub("\ufffd", body),
            MessageAttributes=string_attributes(attributes),
            **fifo,  # type: ignore[arg-type]
        )
