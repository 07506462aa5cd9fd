"""Feed the enricher the way Lambda's SQS event source mapping does (dev only).

Long-polls the ingest queue, turns each ReceiveMessage batch into a real SQS event, invokes
the handler with a fresh context, then deletes every message not listed in
``batchItemFailures`` (ReportBatchItemFailures). Failed messages are left alone: they stay
invisible until the visibility timeout, come back with a higher ApproximateReceiveCount, and
the queue's redrive policy moves them to the DLQ after maxReceiveCount receives. If the
handler raises, runs past its timeout or answers with a malformed failure list, nothing is
deleted (Lambda treats the whole batch as failed).
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Mapping
from typing import Any

import boto3

from dev.fakes.lambda_context import make_context
from dev.fakes.lambda_loader import Handler

LOG = logging.getLogger("dev.stack.poller")

_ATTRIBUTE_KEYS = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)


def _lambda_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """SQS API attribute shape -> Lambda event shape (lower camel case, binary as base64)."""
    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        raw = value["BinaryValue"]
        out["binaryValue"] = base64.b64encode(raw).decode("ascii") if isinstance(raw, bytes) else raw
    out["stringListValues"] = list(value.get("StringListValues", []))
    out["binaryListValues"] = [
        base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v
        for v in value.get("BinaryListValues", [])
    ]
    out["dataType"] = value.get("DataType", "String")
    return out


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One ``Records[]`` entry of a Lambda SQS event from a ReceiveMessage ``Messages[]`` entry."""
    attrs = message.get("Attributes", {})
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {k: attrs[k] for k in _ATTRIBUTE_KEYS if k in attrs},
        "messageAttributes": {
            name: _lambda_message_attribute(value)
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region})
    return record


def failed_ids(result: Any, message_ids: set[str]) -> set[str] | None:
    """Message ids to keep from a handler result; ``None`` means the whole batch failed.

    As Lambda: no result / no ``batchItemFailures`` / an empty list = all succeeded; an entry
    whose ``itemIdentifier`` is missing, empty or not in the batch fails the whole batch.
    """
    if result is None:
        return set()
    if not isinstance(result, Mapping):
        return None
    failures = result.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    keep: set[str] = set()
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(ident, str) or ident not in message_ids:
            return None
        keep.add(ident)
    return keep


class SqsPoller:
    """``SqsPoller(handler, queue_url, ...).start()`` polls in a thread until ``stop()``."""

    def __init__(
        self,
        handler: Handler,
        queue_url: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        batch_size: int = 10,
        wait_time_seconds: int = 1,
        function_name: str = "EnricherFunction",
        timeout_seconds: float = 30.0,
        sqs_client: Any = None,
    ) -> None:
        self.handler = handler
        self.queue_url = queue_url
        self.region = region
        self.batch_size = batch_size
        self.wait_time_seconds = wait_time_seconds
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self.sqs: Any = sqs_client or boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)
        self.queue_arn: str = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.batches = 0  # ReceiveMessage calls that returned messages
        self.invocations = 0
        self.failed_invocations = 0  # raised, timed out, or malformed response
        self.messages_received = 0
        self.messages_deleted = 0
        self.messages_failed = 0  # listed in batchItemFailures or in a failed invocation
        self.last_error: BaseException | None = None
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> SqsPoller:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sqs-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the current poll/invocation (at most ``wait_time_seconds`` + handler time)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout if timeout is not None else self.wait_time_seconds + 35)

    def __enter__(self) -> SqsPoller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once a poll returned no messages after this call (the visible queue drained)."""
        self._idle.clear()
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.poll_once():
                    self._idle.set()
            except Exception as exc:
                self.last_error = exc
                LOG.exception("poller: receive/delete failed; retrying")
                self._stop.wait(1.0)

    # ---- one poll -----------------------------------------------------------------------

    def receive(self) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_time_seconds,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def poll_once(self) -> int:
        """Receive one batch and process it; returns the number of messages received."""
        messages = self.receive()
        if not messages:
            return 0
        self.batches += 1
        self.messages_received += len(messages)
        self.process(messages)
        return len(messages)

    def process(self, messages: list[dict[str, Any]]) -> set[str]:
        """Invoke the handler on ``messages`` and delete the successes; returns the kept ids."""
        event = {"Records": [sqs_record(m, self.queue_arn, self.region) for m in messages]}
        ids = {m["MessageId"] for m in messages}
        context = make_context(self.function_name, timeout_seconds=self.timeout_seconds)
        self.invocations += 1
        try:
            result = self.handler(event, context)
        except Exception:
            LOG.exception("%s raised; the whole batch will be retried", self.function_name)
            keep: set[str] | None = None
        else:
            if context.timed_out:
                LOG.error(
                    "%s ran past its %.0f s timeout; batch retried", self.function_name, self.timeout_seconds
                )
                keep = None
            else:
                keep = failed_ids(result, ids)
                if keep is None:
                    LOG.error("%s returned a malformed batchItemFailures: %r", self.function_name, result)
        if keep is None:
            self.failed_invocations += 1
            keep = ids
        self.messages_failed += len(keep)
        self.delete([m for m in messages if m["MessageId"] not in keep])
        return keep

    def delete(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        response = self.sqs.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        self.messages_deleted += len(response.get("Successful", []))
        for failure in response.get("Failed", []):
            LOG.error("poller: delete failed: %s", failure)
