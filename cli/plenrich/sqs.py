"""Reading a queue without consuming it: every visible message once, held invisible until deleted or
released; the queue's depth for a progress total."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


def queue_depth(sqs: Any, url: str) -> int:
    """Messages visible on ``url``."""
    name = "ApproximateNumberOfMessages"
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"]
    return int(attributes.get(name, 0))


def held_messages(
    sqs: Any, url: str, visibility: int, wait: int, held: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """Every message currently visible, once each. Each received message stays invisible for
    ``visibility`` seconds and is recorded in ``held`` (message id -> receipt handle) until the
    caller deletes it (and pops it); whatever is left in ``held`` is the caller's to release,
    including messages of a batch it stopped reading early."""
    seen: set[str] = set()
    while True:
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait,
            VisibilityTimeout=visibility,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        for message in messages:
            held[message["MessageId"]] = message["ReceiptHandle"]  # the newest receipt counts
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return
        for message in fresh:
            seen.add(message["MessageId"])
            yield message


def release(sqs: Any, url: str, receipts: Sequence[str]) -> None:
    """Make held messages visible again at once."""
    for start in range(0, len(receipts), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0}
            for i, r in enumerate(receipts[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def progress_total(sqs: Any, url: str) -> int | None:
    try:
        return queue_depth(sqs, url)
    except Exception:  # noqa: BLE001 - only for the progress total
        return None
