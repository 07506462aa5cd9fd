"""Step 5: publish in rounds. Round n publishes the n-th ready record of every group still in
good standing (ten per call), so a failed publish never lets a later record of the same
appointment overtake it: the failed one and the rest of its group return to the queue.

With ``suppress_unchanged``, a record whose change is ``unchanged`` is not published: it is
settled as SUPPRESSED (counted and logged), in its place in the round; so is a ``Covered``
reconcile message, as COVERED (no record), so an earlier failure of its group retries it too.
An entry SNS or SQS rejects as the sender's fault (``SenderFault``) is quarantined with the
reason, not retried. No
round, and no retry inside one (``aws.publisher.Publisher``), starts once the batch deadline is
near: what is left retries, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..outbound import OutboundMessage, PermanentEntryError
from .items import Covered, Item, Outcome, Ready, retry_rest


class RecordPublisher(Protocol):
    def publish(
        self, messages: Sequence[OutboundMessage], *, time_left: Callable[[], bool] | None = None
    ) -> dict[str, str]: ...


def _suppressed(ready: Ready, suppress_unchanged: bool) -> bool:
    return suppress_unchanged and ready.change is not None and ready.change.kind == "unchanged"


def _in_round(item: Item) -> bool:
    return item.ready is not None or isinstance(item.stage, Covered)


def _failed(item: Item, reason: str) -> None:
    if isinstance(reason, PermanentEntryError):  # SenderFault: resending cannot help
        item.fail(Outcome.QUARANTINED, "PublishRejected", reason)
    else:
        item.fail(Outcome.RETRY, "PublishFailed", reason)


def _out_of_time(queues: list[list[Item]], time_left: Callable[[], bool] | None) -> bool:
    """True (and what is left retries) when records are waiting and no round may start."""
    if time_left is None or not any(queues) or time_left():
        return False
    for queue in queues:
        retry_rest(queue, "DeadlineReached", "too little time left to publish before the timeout")
    return True


def _outgoing(heads: list[Item], suppress_unchanged: bool) -> list[OutboundMessage]:
    outgoing: list[OutboundMessage] = []
    for item in heads:
        if isinstance(item.stage, Covered):  # its state is out (or goes out earlier in this round order)
            item.outcome = Outcome.COVERED
            continue
        ready = item.ready
        if ready is None:  # filtered above; a stage never goes back
            continue
        if _suppressed(ready, suppress_unchanged):
            item.outcome = Outcome.SUPPRESSED
        else:
            outgoing.append(ready.outbound)
    return outgoing


def publish_in_rounds(
    publisher: RecordPublisher,
    groups: Sequence[Sequence[Item]],
    *,
    suppress_unchanged: bool = False,
    time_left: Callable[[], bool] | None = None,
) -> None:
    """``time_left``: False once a round may no longer start (the batch deadline: announcing,
    receipts and quarantine must still fit before the Lambda timeout); the rest retry."""
    queues = [[i for i in group if i.outcome is Outcome.PENDING and _in_round(i)] for group in groups]
    while True:
        if _out_of_time(queues, time_left):
            return
        heads = [(queue, queue.pop(0)) for queue in queues if queue]
        if not heads:
            return
        outgoing = _outgoing([item for _, item in heads], suppress_unchanged)
        if not outgoing:
            continue
        try:
            failed = publisher.publish(outgoing, time_left=time_left)
        except Exception as exc:  # noqa: BLE001 - nothing known to be out: all of them again
            failed = {m.entry_id: f"{type(exc).__name__}: {exc}"[:300] for m in outgoing}
        for queue, item in heads:
            if item.outcome is not Outcome.PENDING:
                continue
            if item.message_id in failed:
                _failed(item, failed[item.message_id])
                retry_rest(queue, "EarlierRecordFailed", "an earlier record of this appointment failed")
                queue.clear()
            else:
                item.outcome = Outcome.PUBLISHED
