"""``backfill``: re-enrich appointments from a list of ids, paced under the upstream rate limit."""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appointment_enricher.config.intake import Tenancy
from appointment_enricher.wire import (
    ID_PATTERN,
    IngestMessage,
    is_valid_id,
    parse_json_object,
    read_webhook,
    webhook_dedupe_id,
)
from plenrich.context import OK, PARTIAL, Env, UsageError, aws_endpoint, required
from plenrich.failures import Failure, describe
from plenrich.output import Progress, millis_timestamp, table, truncate

UPSTREAM_RATE_LIMIT = 10.0  # 100 requests / 10 s per location


@dataclass
class BackfillLine:
    number: int
    location_id: str
    appointment_id: str


def _split(text: str, default_location: str | None) -> tuple[str, str] | str:
    """(location, appointment) of one non-blank line, or what is wrong with it."""
    parts = text.split()
    if len(parts) == 1:
        if not default_location:
            return "only an appointment id and no --location"
        return default_location, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return f"expected '<locationId> <appointmentId>', got {len(parts)} fields"


def parse_backfill(
    lines: Iterable[str], default_location: str | None
) -> tuple[list[BackfillLine], list[tuple[int, str]]]:
    """Valid entries and (line number, problem) for the rest; blank lines and ``#`` comments skip."""
    good: list[BackfillLine] = []
    bad: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        split = _split(text, default_location)
        if isinstance(split, str):
            bad.append((number, split))
            continue
        location, appointment = split
        problems = [
            f"invalid {name} {truncate(value, 40)!r}"
            for name, value in (("locationId", location), ("appointmentId", appointment))
            if not is_valid_id(value)
        ]
        if problems:
            bad.append((number, "; ".join(problems)))
        else:
            good.append(BackfillLine(number, location, appointment))
    return good, bad


def backfill_message(location_id: str, appointment_id: str, now: datetime) -> tuple[str, str]:
    """(ingest message body, dedupe id): a synthetic AppointmentUpdate marked ``trigger: backfill``,
    built with the receiver's own wire rules."""
    webhook_id = f"backfill-{uuid.uuid4()}"
    document = {
        "type": "AppointmentUpdate",
        "locationId": location_id,
        "appointment": {"id": appointment_id},
        "webhookId": webhook_id,
        "timestamp": millis_timestamp(now),
    }
    webhook = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    dedupe_id = webhook_dedupe_id(read_webhook(parse_json_object(webhook)).webhook_id, webhook)
    message = IngestMessage(
        body=webhook.decode("utf-8"),
        received_at=millis_timestamp(now),
        dedupe_id=dedupe_id,
        signatures={},
        trigger="backfill",
    )
    return message.encode(), dedupe_id


def _backfill_lines(args: argparse.Namespace, env: Env) -> list[str]:
    if not args.file or args.file == "-":
        return env.stdin.read().splitlines()
    try:
        return Path(args.file).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None


def _send_backfill(sqs: Any, ingest: str, entry: BackfillLine) -> None:
    body, dedupe = backfill_message(entry.location_id, entry.appointment_id, datetime.now(UTC))
    send: dict[str, Any] = {
        "QueueUrl": ingest,
        "MessageBody": body,
        "MessageAttributes": {
            "eventType": {"DataType": "String", "StringValue": "AppointmentUpdate"},
            "locationId": {"DataType": "String", "StringValue": entry.location_id},
        },
    }
    if ingest.endswith(".fifo"):
        send.update(MessageGroupId=entry.appointment_id, MessageDeduplicationId=dedupe)
    sqs.send_message(**send)


def _check_flags(args: argparse.Namespace) -> str | None:
    """The ingest queue URL (None on a dry run); UsageError for bad flags."""
    if not 0 < args.rate < UPSTREAM_RATE_LIMIT:
        raise UsageError(f"--rate must be above 0 and below {UPSTREAM_RATE_LIMIT:g} per second")
    if args.location and not is_valid_id(args.location):
        raise UsageError(f"--location must match {ID_PATTERN}")
    if args.dry_run:
        return None
    return required(args.ingest_queue_url, "--ingest-queue-url", "INGEST_QUEUE_URL")


@dataclass
class _Pacer:
    """At most ``rate`` sends per second on the injected clock."""

    env: Env
    interval: float
    next_at: float

    def wait(self) -> None:
        wait = self.next_at - self.env.clock()
        if wait > 0:
            self.env.sleep(wait)
        self.next_at = max(self.next_at, self.env.clock()) + self.interval


def cmd_backfill(args: argparse.Namespace, env: Env) -> int:
    ingest = _check_flags(args)
    served = Tenancy.from_env(os.environ).location_ids
    if args.location and served is not None and args.location not in served:
        raise UsageError("--location is not served by this deployment (WEBHOOK_LOCATION_IDS)")
    entries, bad = parse_backfill(_backfill_lines(args, env), args.location)
    if served is not None:  # the enricher would quarantine them (ForeignTenant): refuse them here
        bad += [
            (e.number, "locationId not served (WEBHOOK_LOCATION_IDS)")
            for e in entries
            if e.location_id not in served
        ]
        entries = [e for e in entries if e.location_id in served]
        bad.sort()
    for number, problem in bad:
        env.stderr.write(f"line {number}: {problem}\n")

    sqs = None if ingest is None else env.sqs(args)
    seen: set[tuple[str, str]] = set()
    queued = skipped = failed = 0
    stopped: Failure | None = None
    progress = Progress("backfill" + (" (dry run)" if args.dry_run else ""), len(entries), env.stderr)
    pacer = _Pacer(env, 1.0 / args.rate, env.clock())
    try:
        for position, entry in enumerate(entries, start=1):
            key = (entry.location_id, entry.appointment_id)
            if key in seen:
                skipped += 1  # one re-enrichment per appointment is enough
            elif sqs is None or ingest is None:
                seen.add(key)
                env.stdout.write(f"would queue {entry.location_id} {entry.appointment_id}\n")
                queued += 1
            else:
                seen.add(key)
                pacer.wait()
                try:
                    _send_backfill(sqs, ingest, entry)
                    queued += 1
                except Exception as exc:  # noqa: BLE001 - reported per line, counted as failed
                    failed += 1
                    failure = describe(exc, aws_endpoint(args))
                    unsent = len(entries) - position if failure.stops else 0  # would fail the same way
                    stop = f" (stopped: the {unsent} line(s) after it were not sent)" if unsent else ""
                    env.stderr.write(f"\nline {entry.number}: send failed: {failure.line}{stop}\n")
                    if failure.stops:
                        stopped = failure
                        break
            progress.advance()
    finally:
        progress.close()
    env.stdout.write(
        table(("queued", "skipped", "invalid", "failed"), [(queued, skipped, len(bad), failed)]) + "\n"
    )
    if stopped is not None:
        return stopped.code
    return PARTIAL if bad or failed else OK
