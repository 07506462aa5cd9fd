"""SQS helpers shared by the dev tools, the soak and the tests (dev only; stdlib imports only):
queue depth, draining once, draining continuously in a thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from plenrich.sqs import release  # one way to make held messages visible again

LOG = logging.getLogger("dev.stack.sqs")

Messages = list[dict[str, Any]]

# A peek that has to look past the first ten messages hides each batch this long (then releases
# them at once), so that the next receive returns the next ones.
PEEK_HOLD_SECONDS = 5


def queue_depth(sqs: Any, url: str, *, in_flight: bool = False) -> int:
    """Messages visible on ``url``; with ``in_flight``, plus those received and not yet deleted."""
    names = ["ApproximateNumberOfMessages"] + (["ApproximateNumberOfMessagesNotVisible"] if in_flight else [])
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def receive(sqs: Any, url: str, wait_seconds: int = 0, visibility: int | None = None) -> Messages:
    """One ReceiveMessage of up to 10 messages with every attribute (``visibility`` 0: a peek,
    the messages stay visible)."""
    options = {} if visibility is None else {"VisibilityTimeout": visibility}
    messages: Messages = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
        **options,
    ).get("Messages", [])
    return messages


def delete(sqs: Any, url: str, messages: Messages) -> None:
    if messages:
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )


def drain(sqs: Any, url: str, wait_seconds: int = 1) -> Messages:
    """Receive and delete everything currently visible on ``url`` (raw SQS messages, in order).

    ``wait_seconds`` is the first receive's long poll; the following ones do not wait.
    """
    out: Messages = []
    while messages := receive(sqs, url, wait_seconds):
        out.extend(messages)
        delete(sqs, url, messages)
        wait_seconds = 0
    return out


def peek_all(sqs: Any, url: str) -> Messages:
    """Every visible message once, none consumed: each batch held ``PEEK_HOLD_SECONDS`` so the
    next receive gets the next ones (a receive with visibility 0 returns the same first ten over
    and over on moto), then all released."""
    found: dict[str, dict[str, Any]] = {}
    receipts: dict[str, str] = {}  # the newest receipt of each: the one SQS accepts
    try:
        while True:
            batch = receive(sqs, url, visibility=PEEK_HOLD_SECONDS)
            receipts.update((m["MessageId"], m["ReceiptHandle"]) for m in batch)
            new = [m for m in batch if m["MessageId"] not in found]
            if not new:
                return list(found.values())
            found.update((m["MessageId"], m) for m in new)
    finally:
        release(sqs, url, list(receipts.values()))


def string_attributes(message: dict[str, Any]) -> dict[str, str]:
    """A received message's MessageAttributes as plain strings."""
    return {
        name: str(value.get("StringValue", value.get("BinaryValue", "")))
        for name, value in (message.get("MessageAttributes") or {}).items()
    }


class QueueReader:
    """Drains ``url`` in a thread until :meth:`stop`: each batch goes to ``on_messages``, then is
    deleted. Errors are logged, kept in ``errors`` and retried after a pause.

    ``consume=False`` only peeks (visibility timeout 0, nothing deleted): each message goes to
    ``on_messages`` once and stays on the queue for the operator (``plenrich inspect``). Past ten
    visible messages, a change in their number is followed by one look at all of them
    (``peek_all``), which hides them for a moment; a stable queue is only peeked at."""

    def __init__(
        self,
        sqs: Any,
        url: str,
        on_messages: Callable[[Messages], None],
        name: str = "reader",
        *,
        consume: bool = True,
    ) -> None:
        self.sqs, self.url, self.on_messages, self.name = sqs, url, on_messages, name
        self.consume = consume
        self._seen: set[str] = set()
        self._looked_at_depth = 0  # visible messages when peek_all last ran
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> QueueReader:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.consume:
                    self._peek()
                    continue
                messages = receive(self.sqs, self.url, wait_seconds=1)
                if messages:
                    self.on_messages(messages)
                    delete(self.sqs, self.url, messages)
            except Exception as exc:  # noqa: BLE001 - reported in errors; the loop goes on
                if self._stop.is_set():
                    return
                LOG.warning("%s: %s: %s", self.name, type(exc).__name__, exc)
                self.errors.append(f"{self.name}: {type(exc).__name__}: {exc}")
                self._stop.wait(0.5)

    def _peek(self) -> None:
        messages = receive(self.sqs, self.url, visibility=0)
        if len(messages) == 10:  # maybe more behind them
            depth = queue_depth(self.sqs, self.url)
            if depth > 10 and depth != self._looked_at_depth:
                self._looked_at_depth = depth
                messages = peek_all(self.sqs, self.url)
        fresh = [m for m in messages if m["MessageId"] not in self._seen]
        self._seen.update(m["MessageId"] for m in fresh)
        if fresh:
            self.on_messages(fresh)
        else:
            self._stop.wait(1.0)
