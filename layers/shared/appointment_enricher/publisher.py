"""Publishing enriched records to SNS and/or SQS, in batches of ten.

Only the failed entries of a partly failed batch call are sent again; what still fails is
reported to the caller, which turns it into batch item failures.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .queues import string_attributes

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024  # SNS PublishBatch / SQS SendMessageBatch total payload
MAX_MESSAGE_BYTES = 256 * 1024


@dataclass(frozen=True)
class OutboundMessage:
    """One enriched record ready to publish. ``entry_id`` is unique within a publish call."""

    entry_id: str
    body: str
    attributes: dict[str, str]
    group_id: str
    dedupe_id: str
    size: int = field(default=0)

    @property
    def payload_bytes(self) -> int:
        """Body plus attribute names and values, as AWS counts message size."""
        return self.size or len(self.body.encode()) + sum(
            len(k) + len(v) + len("String") for k, v in self.attributes.items()
        )


class Destination(Protocol):
    name: str

    def send_batch(self, messages: Sequence[OutboundMessage]) -> dict[str, str]:
        """Send up to ten; return {entry_id: error} for the entries that failed."""
        ...


def chunks(messages: Iterable[OutboundMessage]) -> Iterator[list[OutboundMessage]]:
    """Batches of at most ten entries and 256 KiB."""
    batch: list[OutboundMessage] = []
    size = 0
    for message in messages:
        if batch and (len(batch) == MAX_BATCH_ENTRIES or size + message.payload_bytes > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += message.payload_bytes
    if batch:
        yield batch


class SnsDestination:
    def __init__(self, client: SNSClient, topic_arn: str) -> None:
        self.client = client
        self.topic_arn = topic_arn
        self.fifo = topic_arn.endswith(".fifo")
        self.name = "sns"

    def send_batch(self, messages: Sequence[OutboundMessage]) -> dict[str, str]:
        entries: list[Any] = []
        for message in messages:
            entry: dict[str, Any] = {
                "Id": message.entry_id,
                "Message": message.body,
                "MessageAttributes": string_attributes(message.attributes),
            }
            if self.fifo:
                entry["MessageGroupId"] = message.group_id
                entry["MessageDeduplicationId"] = message.dedupe_id
            entries.append(entry)
        response = self.client.publish_batch(TopicArn=self.topic_arn, PublishBatchRequestEntries=entries)
        return {f["Id"]: f"{f.get('Code', '')}: {f.get('Message', '')}" for f in response.get("Failed", [])}


class SqsDestination:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")
        self.name = "sqs"

    def send_batch(self, messages: Sequence[OutboundMessage]) -> dict[str, str]:
        entries: list[Any] = []
        for message in messages:
            entry: dict[str, Any] = {
                "Id": message.entry_id,
                "MessageBody": message.body,
                "MessageAttributes": string_attributes(message.attributes),
            }
            if self.fifo:
                entry["MessageGroupId"] = message.group_id
                entry["MessageDeduplicationId"] = message.dedupe_id
            entries.append(entry)
        response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return {f["Id"]: f"{f.get('Code', '')}: {f.get('Message', '')}" for f in response.get("Failed", [])}


class Publisher:
    """Fan a list of records out to every configured destination."""

    def __init__(self, destinations: Sequence[Destination], attempts: int = 3) -> None:
        if not destinations:
            raise ValueError("at least one destination is required")
        self.destinations = list(destinations)
        self.attempts = attempts

    def publish(self, messages: Sequence[OutboundMessage]) -> dict[str, str]:
        """Publish all; return {entry_id: reason} for those that did not reach every destination."""
        failed: dict[str, str] = {}
        for destination in self.destinations:
            pending = [m for m in messages if m.entry_id not in failed]
            for attempt in range(self.attempts):
                if not pending:
                    break
                errors: dict[str, str] = {}
                for batch in chunks(pending):
                    try:
                        errors.update(destination.send_batch(batch))
                    except Exception as exc:  # noqa: BLE001 - any client error fails that batch only
                        errors.update({m.entry_id: f"{type(exc).__name__}: {exc}"[:300] for m in batch})
                pending = [m for m in pending if m.entry_id in errors]
                if attempt == self.attempts - 1:
                    failed.update({m.entry_id: f"{destination.name} {errors[m.entry_id]}" for m in pending})
        return failed
