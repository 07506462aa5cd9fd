"""Publishing enriched records to SNS and/or SQS, in batches of ten.

Only the failed entries of a partly failed batch call are sent again; what still fails is
reported to the caller, which turns it into batch item failures.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..outbound import MAX_MESSAGE_BYTES, OutboundMessage, PermanentEntryError
from .queues import string_attributes

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "MAX_MESSAGE_BYTES",
    "OutboundMessage",
    "PermanentEntryError",
    "Publisher",
    "SnsDestination",
    "SqsDestination",
]

MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024  # SNS PublishBatch / SQS SendMessageBatch total payload


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


def _entries_and_failures(
    messages: Sequence[OutboundMessage], fifo: bool, body_key: str
) -> tuple[list[Any], Callable[[Mapping[str, Any]], dict[str, str]]]:
    """Batch entries with positional ids (``m0``..``m9``: always valid, unique per call).

    Returns the entries and a function mapping the response's ``Failed`` list back to
    ``{entry_id: reason}``; sender faults come back as :class:`PermanentEntryError`.
    """
    entries: list[Any] = []
    by_position: dict[str, str] = {}
    for position, message in enumerate(messages):
        wire_id = f"m{position}"
        by_position[wire_id] = message.entry_id
        entry: dict[str, Any] = {
            "Id": wire_id,
            body_key: message.body,
            "MessageAttributes": string_attributes(message.attributes),
        }
        if fifo:
            entry["MessageGroupId"] = message.group_id
            entry["MessageDeduplicationId"] = message.dedupe_id
        entries.append(entry)

    def failures(response: Mapping[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for failure in response.get("Failed", []):
            entry_id = by_position.get(str(failure.get("Id")))
            if entry_id is None:
                continue
            reason = f"{failure.get('Code', '')}: {failure.get('Message', '')}"[:300]
            out[entry_id] = PermanentEntryError(reason) if failure.get("SenderFault") else reason
        # An entry the response names neither Successful nor Failed did not demonstrably arrive.
        succeeded = {by_position.get(str(s.get("Id"))) for s in response.get("Successful", [])}
        for entry_id in by_position.values():
            if entry_id not in succeeded and entry_id not in out:
                out[entry_id] = "missing from the batch response"
        return out

    return entries, failures


class SnsDestination:
    def __init__(self, client: SNSClient, topic_arn: str) -> None:
        self.client = client
        self.topic_arn = topic_arn
        self.fifo = topic_arn.endswith(".fifo")
        self.name = "sns"

    def send_batch(self, messages: Sequence[OutboundMessage]) -> dict[str, str]:
        entries, failures = _entries_and_failures(messages, self.fifo, "Message")
        response = self.client.publish_batch(TopicArn=self.topic_arn, PublishBatchRequestEntries=entries)
        return failures(response)


class SqsDestination:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")
        self.name = "sqs"

    def send_batch(self, messages: Sequence[OutboundMessage]) -> dict[str, str]:
        entries, failures = _entries_and_failures(messages, self.fifo, "MessageBody")
        response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return failures(response)


def _out_of_time(destination: str, error: str | None) -> str:
    after = f" (after {error})" if error else ""
    return f"{destination} DeadlineReached: too little time left for another attempt{after}"[:300]


class Publisher:
    """Fan a list of records out to every configured destination.

    Each destination gets the records in calls of at most ten entries / 256 KiB. When a call
    fails in part, only its failed entries are sent again (``attempts`` in all, with a short
    jittered pause); entries AWS rejects as the sender's fault are not resent and come back as
    ``PermanentEntryError`` (the enricher quarantines them with the reason). A record that
    failed one destination is not sent to the next, so the retry of the message redoes it whole.
    """

    def __init__(
        self,
        destinations: Sequence[Destination],
        attempts: int = 3,
        *,
        base_delay: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not destinations:
            raise ValueError("at least one destination is required")
        self.destinations = list(destinations)
        self.attempts = attempts
        self.base_delay = base_delay
        self.sleep = sleep

    def publish(
        self, messages: Sequence[OutboundMessage], *, time_left: Callable[[], bool] | None = None
    ) -> dict[str, str]:
        """Publish all; return {entry_id: reason} for those that did not reach every destination.

        ``time_left``: False once no attempt may start (the batch deadline); a retry, or the next
        destination, is then not attempted and what is pending fails (retryable) at once."""
        failed: dict[str, str] = {}
        for index, destination in enumerate(self.destinations):
            pending = [m for m in messages if m.entry_id not in failed]
            last: dict[str, str] = {}
            for attempt in range(self.attempts):
                if attempt:
                    self.sleep(random.random() * self.base_delay * (1 << attempt))  # noqa: S311 - jitter
                if (attempt or index) and pending and time_left is not None and not time_left():
                    failed.update(
                        {m.entry_id: _out_of_time(destination.name, last.get(m.entry_id)) for m in pending}
                    )
                    break
                errors: dict[str, str] = {}
                for batch in chunks(pending):
                    try:
                        errors.update(destination.send_batch(batch))
                    except Exception as exc:  # noqa: BLE001 - any client error fails that batch only
                        errors.update({m.entry_id: f"{type(exc).__name__}: {exc}"[:300] for m in batch})
                final = {k: v for k, v in errors.items() if isinstance(v, PermanentEntryError)}
                failed.update({k: PermanentEntryError(f"{destination.name} {v}") for k, v in final.items()})
                pending = [m for m in pending if m.entry_id in errors and m.entry_id not in final]
                last = errors
                if not pending:
                    break
                if attempt == self.attempts - 1:
                    failed.update({m.entry_id: f"{destination.name} {errors[m.entry_id]}" for m in pending})
        return failed
