"""``inspect`` and ``redrive``: the quarantine queue, read without consuming or moved back to ingest."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appointment_enricher.wire import IngestMessage, WireError, parse_json_object, read_webhook
from plenrich.context import OK, PARTIAL, Env, aws_endpoint, required
from plenrich.failures import Failure, describe
from plenrich.output import Progress, table, truncate
from plenrich.sqs import held_messages, progress_total, release

MAX_DEDUPE_ID = 128
ERROR_TEXT_WIDTH = 60
QUARANTINE = ("--quarantine-url (or --dlq-url)", "QUARANTINE_QUEUE_URL (or DEAD_LETTER_QUEUE_URL)")
INGEST = ("--ingest-queue-url", "INGEST_QUEUE_URL")


def _attr(message: Mapping[str, Any], name: str) -> str | None:
    value = (message.get("MessageAttributes") or {}).get(name) or {}
    text = value.get("StringValue")
    return text if isinstance(text, str) and text else None


def _ingest_fields(body: str) -> dict[str, str]:
    """``dedupeId``, ``appointmentId``, ``locationId``, ``eventType`` of an ingest message, read
    with the wire rules: a field the enricher could not have used (an invalid id) is left out,
    so a redrive never sends an unvalidated id anywhere."""
    try:
        message = IngestMessage.decode(body)
    except WireError:
        return {}
    found = {"dedupeId": message.dedupe_id}
    try:
        ref = read_webhook(parse_json_object(message.body))
    except WireError:
        return found
    return {
        **found,
        "locationId": ref.location_id,
        "eventType": ref.type,
        "appointmentId": ref.appointment_id,
    }


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class DeadLetter:
    message_id: str
    receipt: str
    body: str
    error_type: str
    error_message: str
    failed_at: str
    appointment_id: str | None
    location_id: str | None
    event_type: str | None
    dedupe_id: str | None
    group_id: str | None

    @classmethod
    def from_sqs(cls, message: Mapping[str, Any]) -> DeadLetter:
        body = str(message.get("Body", ""))
        parsed = _ingest_fields(body)
        system = message.get("Attributes") or {}

        def pick(name: str) -> str | None:
            return _attr(message, name) or parsed.get(name)

        return cls(
            message_id=str(message["MessageId"]),
            receipt=str(message["ReceiptHandle"]),
            body=body,
            # Messages SQS itself moved (IngestDLQ after maxReceiveCount) carry no reason.
            error_type=_attr(message, "errorType") or "MaxReceivesExceeded",
            error_message=_attr(message, "errorMessage") or "",
            failed_at=_attr(message, "failedAt") or "",
            appointment_id=pick("appointmentId"),
            location_id=pick("locationId"),
            event_type=pick("eventType"),
            dedupe_id=pick("dedupeId"),
            group_id=system.get("MessageGroupId"),
        )

    def redriven_body(self, dedupe_id: str) -> str:
        """The ingest message with ``dedupeId`` replaced: the enricher completed the original's
        idempotency claim when it quarantined it (so late duplicates are not quarantined twice),
        and the redriven copy must be claimable afresh. The raw webhook inside is untouched; a
        body that is no ingest message goes back as it was (the enricher quarantines it again)."""
        try:
            message = IngestMessage.decode(self.body)
        except WireError:
            return self.body
        return dataclasses.replace(message, dedupe_id=dedupe_id).encode()

    def redrive_ids(self) -> tuple[str, str]:
        """(MessageGroupId, MessageDeduplicationId) for the ingest queue.

        The dedupe id gets a suffix derived from this dead-letter message's id, so FIFO's
        five-minute deduplication does not swallow it as a copy of the original delivery, while
        re-running an interrupted redrive within five minutes still cannot queue it twice.
        """
        group = self.appointment_id or self.group_id or "redrive-" + _sha(self.body)[:32]
        base = self.dedupe_id or _sha(self.body)
        dedupe = f"{base}.redrive-{_sha(self.message_id)[:12]}"
        if len(dedupe) > MAX_DEDUPE_ID:
            dedupe = _sha(dedupe)
        return group, dedupe


# ----- inspect ------------------------------------------------------------------------------------


def _json_record(letter: DeadLetter) -> dict[str, str | None]:
    return {
        "messageId": letter.message_id,
        "errorType": letter.error_type,
        "errorMessage": letter.error_message,
        "failedAt": letter.failed_at,
        "appointmentId": letter.appointment_id,
        "locationId": letter.location_id,
        "eventType": letter.event_type,
    }


def cmd_inspect(args: argparse.Namespace, env: Env) -> int:
    url = required(args.quarantine_url, *QUARANTINE)
    sqs = env.sqs(args)
    letters: list[DeadLetter] = []
    held: dict[str, str] = {}
    try:
        for message in held_messages(sqs, url, args.visibility_timeout, args.wait, held):
            letter = DeadLetter.from_sqs(message)
            if args.error_type and letter.error_type not in args.error_type:
                continue
            letters.append(letter)
            if args.max and len(letters) >= args.max:
                break
    finally:
        release(sqs, url, list(held.values()))  # nothing is consumed
    if args.json:  # one JSON array, one message per line; `[]` when nothing is quarantined
        lines = ",\n".join(json.dumps(_json_record(letter)) for letter in letters)
        env.stdout.write(f"[\n{lines}\n]\n" if letters else "[]\n")
        return OK
    rows = [
        (
            m.message_id,
            m.error_type,
            truncate(m.error_message, ERROR_TEXT_WIDTH),
            m.failed_at,
            m.appointment_id,
            m.location_id,
        )
        for m in letters
    ]
    headers = ("messageId", "errorType", "errorMessage", "failedAt", "appointmentId", "locationId")
    env.stdout.write(table(headers, rows) + "\n")
    env.stdout.write(f"{len(letters)} message(s)\n")
    return OK


# ----- redrive ------------------------------------------------------------------------------------


@dataclass
class _Redrive:
    """One redrive run: where from, where to, what happened so far."""

    sqs: Any
    quarantine: str
    ingest: str
    env: Env
    endpoint: str | None = None
    held: dict[str, str] = dataclasses.field(default_factory=dict)  # received, not deleted
    moved: int = 0
    failed: int = 0
    skipped: int = 0
    sent: set[str] = dataclasses.field(default_factory=set)  # ingest message ids of this run's sends
    returned: int = 0  # copies of those, quarantined again while this run went on: left for the next
    stopped: Failure | None = None  # a failure every later message would meet too
    rows: list[tuple[str, ...]] = dataclasses.field(default_factory=list)

    def move(self, letter: DeadLetter, group: str, dedupe: str) -> None:
        """Send to ingest, then delete from the quarantine (only once the send succeeded)."""
        send: dict[str, Any] = {
            "QueueUrl": self.ingest,
            "MessageBody": letter.redriven_body(dedupe),
            "MessageAttributes": {
                name: {"DataType": "String", "StringValue": value}
                for name, value in (("eventType", letter.event_type), ("locationId", letter.location_id))
                if value
            },
        }
        if self.ingest.endswith(".fifo"):
            send.update(MessageGroupId=group, MessageDeduplicationId=dedupe)
        try:
            self.sent.add(str(self.sqs.send_message(**send).get("MessageId") or ""))
        except Exception as exc:  # noqa: BLE001 - reported; the message stays in the quarantine
            self.failed += 1
            self._failed(f"send failed for {letter.message_id}", describe(exc, self.endpoint))
            return
        try:
            self.sqs.delete_message(QueueUrl=self.quarantine, ReceiptHandle=self.held[letter.message_id])
            self.held.pop(letter.message_id)
        except Exception as exc:  # noqa: BLE001 - queued twice at worst; idempotency catches it
            self.failed += 1
            self._failed(f"sent but not deleted {letter.message_id}", describe(exc, self.endpoint))
        self.moved += 1
        self.rows.append((letter.message_id, letter.error_type, letter.appointment_id or "", group))

    def _failed(self, what: str, failure: Failure) -> None:
        """One line; a failure every later message would meet too stops the run (``stopped``)."""
        stop = " (stopped: the rest stay quarantined)" if failure.stops else ""
        self.env.stderr.write(f"\n{what}: {failure.line}{stop}\n")
        self.stopped = failure if failure.stops else None

    def returned_copy(self, message: Mapping[str, Any]) -> bool:
        """A message this run redrove, quarantined again (the enricher names its ingest message in
        ``sourceMessageId``; SQS keeps the id when it dead-letters one): moving it again and again
        while it keeps failing would never end."""
        return bool({message.get("MessageId"), _attr(message, "sourceMessageId")} & self.sent - {""})

    def dry(self, letter: DeadLetter, group: str) -> None:
        self.moved += 1
        self.rows.append((letter.message_id, letter.error_type, letter.appointment_id or "", group))


def _redrive_total(sqs: Any, url: str, most: int) -> int | None:
    depth = progress_total(sqs, url)
    return min(depth, most) if depth is not None and most else depth


def cmd_redrive(args: argparse.Namespace, env: Env) -> int:
    quarantine = required(args.quarantine_url, *QUARANTINE)
    ingest = required(args.ingest_queue_url, *INGEST)
    sqs = env.sqs(args)
    run = _Redrive(sqs, quarantine, ingest, env, aws_endpoint(args))
    total = _redrive_total(sqs, quarantine, args.max)
    progress = Progress("redrive" + (" (dry run)" if args.dry_run else ""), total, env.stderr)
    try:
        for message in held_messages(sqs, quarantine, args.visibility_timeout, args.wait, run.held):
            if run.returned_copy(message):
                run.returned += 1
                continue
            letter = DeadLetter.from_sqs(message)
            if args.error_type and letter.error_type not in args.error_type:
                run.skipped += 1
                progress.advance()
                continue
            if args.max and run.moved + run.failed >= args.max:
                break
            group, dedupe = letter.redrive_ids()
            if args.dry_run:
                run.dry(letter, group)
            else:
                run.move(letter, group, dedupe)
            progress.advance()
            if run.stopped is not None:
                break  # the rest stay in the quarantine, released below
    finally:
        release(sqs, quarantine, list(run.held.values()))
        progress.close()
    verb = "would move" if args.dry_run else "moved"
    if run.rows:
        env.stdout.write(table(("messageId", "errorType", "appointmentId", "groupId"), run.rows) + "\n")
    env.stdout.write(f"{verb} {run.moved}, skipped {run.skipped} (filtered), failed {run.failed}\n")
    if run.returned:
        env.stdout.write(f"left {run.returned} that failed again during this run (for the next one)\n")
    if run.stopped is not None:
        return run.stopped.code
    return PARTIAL if run.failed else OK
