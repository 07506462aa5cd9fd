"""Step 7: hand throttled items back to the ingest queue at once, visible when budget returns.

An item the upstream budget stopped (``Item.throttled_for``) is not a failure, yet Lambda's SQS
event source can only return it as a batch item failure, and every receive counts toward the
queue's ``maxReceiveCount``. So:

* normally its visibility is set (``ChangeMessageVisibility``) to when budget returns (its place
  in the location's queue, ``budget/spend.py``), and it is reported as a batch item failure: it
  comes back when the fleet can serve it, not after the queue's 360 s, and until then the
  messages behind it, other locations' included, are received;
* when one more receive would reach ``maxReceiveCount``, it is sent again as a new message (same
  group and body, a fresh deduplication id, so a fresh receive count) and the old one is
  acknowledged: rate limiting alone never moves a message to the DLQ. Only the group's items
  already handed back are sent again, in batch order.

SQS caps a visibility at 12 hours: a message parked for the daily reset comes back at most then
and is parked again (one receive more). Without a queue URL (tests, tools) items are plain batch
item failures.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from typing import Any

from .items import Item, Outcome, Stats

MAX_VISIBILITY_SECONDS = 43_200 - 60


class HandBack:
    def __init__(
        self, sqs: Any, queue_url: str | None, *, max_receive_count: int, log: Callable[..., None]
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.max_receive_count = max_receive_count
        self.log = log

    def hand_back(self, items: Iterable[Item], stats: Stats) -> None:
        groups: dict[str, list[Item]] = {}
        for item in items:
            if item.outcome is Outcome.RETRY and item.throttled_for is not None:
                groups.setdefault(item.group, []).append(item)
                daily = item.error_type == "DailyBudgetExhausted"
                stats.add("DailyBudgetParked" if daily else "ThrottledHandedBack")
        if not self.queue_url:
            return
        for group in groups.values():
            # One item re-sent means all of the group's: they keep their order behind it.
            resend = any(i.receives + 1 >= self.max_receive_count for i in group)
            for item in group:
                try:
                    if resend:
                        self._send_again(item)
                        item.outcome = Outcome.RESENT
                        stats.add("ThrottledResent")
                    elif item.receipt is not None:
                        self._delay(item, item.throttled_for or 1.0)
                except Exception as exc:  # noqa: BLE001 - a batch item failure still comes back
                    self.log(
                        "warning", "hand back failed", error=type(exc).__name__, messageId=item.message_id
                    )
                    if resend:
                        break  # the rest stay failures, in order behind this one

    def _delay(self, item: Item, seconds: float) -> None:
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url,
            ReceiptHandle=item.receipt,
            VisibilityTimeout=max(1, min(MAX_VISIBILITY_SECONDS, math.ceil(seconds))),
        )

    def _send_again(self, item: Item) -> None:
        digest = hashlib.sha256(f"{item.message_id}:{item.receives}".encode()).hexdigest()[:40]
        self.sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=item.raw,
            MessageGroupId=item.group,
            MessageDeduplicationId=f"handback-{digest}",
        )
