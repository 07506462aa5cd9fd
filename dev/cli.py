"""``plenrich``: operate the enricher against AWS or the local stack (``python -m dev.cli``).

    plenrich inspect  [--dlq-url URL] [--error-type T ...] [--max N] [--json]
    plenrich redrive  [--dlq-url URL] [--ingest-queue-url URL] [--error-type T ...] [--max N] [--dry-run]
    plenrich backfill [--ingest-queue-url URL] [--file F | stdin] [--location LOC] [--rate 8] [--dry-run]
    plenrich replay   [--url URL] [--keep-ids] [--scheme ed25519|rsa|both] [FILE ...]
    plenrich show     APPOINTMENT_ID [--ledger-table NAME] [--json]
    plenrich reconcile [--location LOC ...] [--dry-run] [--max-seconds 600]

AWS access is plain boto3, so ``AWS_ENDPOINT_URL`` (the local stack), ``AWS_PROFILE`` and
``AWS_REGION`` work as usual; queue URLs come from the flags or from the functions' variables
``INGEST_QUEUE_URL`` and ``DEAD_LETTER_QUEUE_URL`` (and ``LEDGER_TABLE_NAME`` for ``show``).
Progress goes to stderr, results to stdout.
Exit codes: 0 ok, 1 partial failure (some items failed or were invalid), 2 usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from appointment_enricher.wire import (
    ID_PATTERN,
    IngestMessage,
    WireError,
    is_valid_id,
    parse_json_object,
    read_webhook,
    webhook_dedupe_id,
)
from dev.signing import EVENTS_DIR, compact, ingest_message, iso_timestamp, restamp, signed_headers
from dev.sqs import queue_depth

OK, PARTIAL, USAGE = 0, 1, 2
DEFAULT_REPLAY_URL = "http://127.0.0.1:3000/webhooks/appointments"
UPSTREAM_RATE_LIMIT = 10.0  # 100 requests / 10 s per location
MAX_DEDUPE_ID = 128
ERROR_TEXT_WIDTH = 60


class UsageError(Exception):
    """Bad flags or configuration: exit 2."""


@dataclass
class Env:
    """What a command may touch; tests inject fakes for time and I/O."""

    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    sqs_factory: Callable[[argparse.Namespace], Any] | None = None
    http_post: Callable[..., Any] | None = None

    def sqs(self, args: argparse.Namespace) -> Any:
        if self.sqs_factory is not None:
            return self.sqs_factory(args)
        return _client("sqs", args)

    def dynamodb(self, args: argparse.Namespace) -> Any:
        return _client("dynamodb", args)


def _client(service: str, args: argparse.Namespace) -> Any:
    import boto3  # noqa: PLC0415 - keeps `--help` fast

    from dev.lambda_loader import add_code_paths  # noqa: PLC0415

    add_code_paths()  # the layer package: timeouts and retry mode live in appointment_enricher.sdk
    from appointment_enricher.sdk import OPERATOR_CONFIG  # noqa: PLC0415

    options = {k: v for k, v in (("endpoint_url", args.endpoint_url), ("region_name", args.region)) if v}
    return boto3.client(service, config=OPERATOR_CONFIG, **options)  # type: ignore[call-overload]


# ----- output helpers ----------------------------------------------------------------------------


class Progress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, else one line per ~10%."""

    def __init__(self, label: str, total: int | None, stream: IO[str], width: int = 24) -> None:
        self.label, self.total, self.stream, self.width = label, total, stream, width
        self.done = 0
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last: tuple[int, str] | None = None  # (decile, text) last written
        self._draw()

    def advance(self, count: int = 1) -> None:
        self.done += count
        self._draw()

    def close(self) -> None:
        self._draw(final=True)

    def render(self) -> tuple[int, str]:
        total = self.total or 0
        if total and self.done <= total:
            filled = self.width * self.done // total
            bar = "#" * filled + "-" * (self.width - filled)
            return (
                10 * self.done // total,
                f"{self.label} [{bar}] {self.done}/{total} {100 * self.done // total}%",
            )
        return self.done, f"{self.label}: {self.done} done"

    def _draw(self, *, final: bool = False) -> None:
        decile, text = self.render()
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        elif self._last is None or decile != self._last[0] or (final and text != self._last[1]):
            self.stream.write(text + "\n")
            self._last = (decile, text)
        self.stream.flush()


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _truncate(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


# ----- SQS helpers -------------------------------------------------------------------------------


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


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _receive(
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


def _release(sqs: Any, url: str, receipts: Sequence[str]) -> None:
    """Make held messages visible again at once."""
    for start in range(0, len(receipts), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0}
            for i, r in enumerate(receipts[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def _progress_total(sqs: Any, url: str) -> int | None:
    try:
        return queue_depth(sqs, url)
    except Exception:  # noqa: BLE001 - only for the progress total
        return None


def _required(value: str | None, flag: str, variable: str) -> str:
    if not value:
        raise UsageError(f"{flag} or {variable} is required")
    return value


# ----- commands ---------------------------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace, env: Env) -> int:
    url = _required(args.dlq_url, "--dlq-url", "DEAD_LETTER_QUEUE_URL")
    sqs = env.sqs(args)
    letters: list[DeadLetter] = []
    held: dict[str, str] = {}
    try:
        for message in _receive(sqs, url, args.visibility_timeout, args.wait, held):
            letter = DeadLetter.from_sqs(message)
            if args.error_type and letter.error_type not in args.error_type:
                continue
            letters.append(letter)
            if args.max and len(letters) >= args.max:
                break
    finally:
        _release(sqs, url, list(held.values()))  # nothing is consumed
    if args.json:
        for letter in letters:
            record = {
                "messageId": letter.message_id,
                "errorType": letter.error_type,
                "errorMessage": letter.error_message,
                "failedAt": letter.failed_at,
                "appointmentId": letter.appointment_id,
                "locationId": letter.location_id,
                "eventType": letter.event_type,
            }
            env.stdout.write(json.dumps(record) + "\n")
        return OK
    rows = [
        (
            m.message_id,
            m.error_type,
            _truncate(m.error_message, ERROR_TEXT_WIDTH),
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


def cmd_redrive(args: argparse.Namespace, env: Env) -> int:
    dlq = _required(args.dlq_url, "--dlq-url", "DEAD_LETTER_QUEUE_URL")
    ingest = _required(args.ingest_queue_url, "--ingest-queue-url", "INGEST_QUEUE_URL")
    sqs = env.sqs(args)
    fifo = ingest.endswith(".fifo")
    depth = _progress_total(sqs, dlq)
    total = min(depth, args.max) if depth is not None and args.max else depth
    progress = Progress("redrive" + (" (dry run)" if args.dry_run else ""), total, env.stderr)
    held: dict[str, str] = {}  # received, not deleted: released at the end
    moved = failed = skipped = 0
    rows: list[tuple[str, ...]] = []
    try:
        for message in _receive(sqs, dlq, args.visibility_timeout, args.wait, held):
            letter = DeadLetter.from_sqs(message)
            if args.error_type and letter.error_type not in args.error_type:
                skipped += 1
                progress.advance()
                continue
            if args.max and moved + failed >= args.max:
                break
            group, dedupe = letter.redrive_ids()
            if args.dry_run:
                moved += 1
                rows.append((letter.message_id, letter.error_type, letter.appointment_id or "", group))
                progress.advance()
                continue
            send: dict[str, Any] = {
                "QueueUrl": ingest,
                "MessageBody": letter.redriven_body(dedupe),
                "MessageAttributes": {
                    name: {"DataType": "String", "StringValue": value}
                    for name, value in (("eventType", letter.event_type), ("locationId", letter.location_id))
                    if value
                },
            }
            if fifo:
                send.update(MessageGroupId=group, MessageDeduplicationId=dedupe)
            try:
                sqs.send_message(**send)
            except Exception as exc:  # noqa: BLE001 - reported; the message stays in the DLQ
                failed += 1
                env.stderr.write(f"\nsend failed for {letter.message_id}: {type(exc).__name__}: {exc}\n")
                progress.advance()
                continue
            try:
                sqs.delete_message(QueueUrl=dlq, ReceiptHandle=held[letter.message_id])
                held.pop(letter.message_id)
            except Exception as exc:  # noqa: BLE001 - queued twice at worst; idempotency catches it
                failed += 1
                env.stderr.write(f"\nsent but not deleted {letter.message_id}: {type(exc).__name__}\n")
            moved += 1
            rows.append((letter.message_id, letter.error_type, letter.appointment_id or "", group))
            progress.advance()
    finally:
        _release(sqs, dlq, list(held.values()))
        progress.close()
    verb = "would move" if args.dry_run else "moved"
    if rows:
        env.stdout.write(table(("messageId", "errorType", "appointmentId", "groupId"), rows) + "\n")
    env.stdout.write(f"{verb} {moved}, skipped {skipped} (filtered), failed {failed}\n")
    return PARTIAL if failed else OK


@dataclass
class BackfillLine:
    number: int
    location_id: str
    appointment_id: str


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
        parts = text.split()
        if len(parts) == 1:
            if not default_location:
                bad.append((number, "only an appointment id and no --location"))
                continue
            location, appointment = default_location, parts[0]
        elif len(parts) == 2:
            location, appointment = parts
        else:
            bad.append((number, f"expected '<locationId> <appointmentId>', got {len(parts)} fields"))
            continue
        problems = [
            f"invalid {name} {_truncate(value, 40)!r}"
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
    webhook = compact(
        {
            "type": "AppointmentUpdate",
            "locationId": location_id,
            "appointment": {"id": appointment_id},
            "webhookId": webhook_id,
            "timestamp": iso_timestamp(now),
        }
    )
    dedupe_id = webhook_dedupe_id(read_webhook(parse_json_object(webhook)).webhook_id, webhook)
    return ingest_message(webhook, iso_timestamp(now), dedupe_id, trigger="backfill"), dedupe_id


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


def cmd_backfill(args: argparse.Namespace, env: Env) -> int:
    if not 0 < args.rate < UPSTREAM_RATE_LIMIT:
        raise UsageError(f"--rate must be above 0 and below {UPSTREAM_RATE_LIMIT:g} per second")
    if args.location and not is_valid_id(args.location):
        raise UsageError(f"--location must match {ID_PATTERN}")
    ingest = (
        None if args.dry_run else _required(args.ingest_queue_url, "--ingest-queue-url", "INGEST_QUEUE_URL")
    )
    entries, bad = parse_backfill(_backfill_lines(args, env), args.location)
    for number, problem in bad:
        env.stderr.write(f"line {number}: {problem}\n")

    sqs = None if args.dry_run else env.sqs(args)
    seen: set[tuple[str, str]] = set()
    queued = skipped = failed = 0
    interval = 1.0 / args.rate
    progress = Progress("backfill" + (" (dry run)" if args.dry_run else ""), len(entries), env.stderr)
    next_at = env.clock()
    try:
        for entry in entries:
            key = (entry.location_id, entry.appointment_id)
            if key in seen:
                skipped += 1  # one re-enrichment per appointment is enough
                progress.advance()
                continue
            seen.add(key)
            if args.dry_run:
                env.stdout.write(f"would queue {entry.location_id} {entry.appointment_id}\n")
                queued += 1
                progress.advance()
                continue
            wait = next_at - env.clock()
            if wait > 0:
                env.sleep(wait)
            next_at = max(next_at, env.clock()) + interval
            try:
                assert sqs is not None and ingest is not None
                _send_backfill(sqs, ingest, entry)
                queued += 1
            except Exception as exc:  # noqa: BLE001 - reported per line, counted as failed
                failed += 1
                env.stderr.write(f"\nline {entry.number}: send failed: {type(exc).__name__}\n")
            progress.advance()
    finally:
        progress.close()
    env.stdout.write(
        table(
            ("queued", "skipped", "invalid", "failed"),
            [(queued, skipped, len(bad), failed)],
        )
        + "\n"
    )
    return PARTIAL if bad or failed else OK


def cmd_replay(args: argparse.Namespace, env: Env) -> int:
    paths = [Path(p) for p in args.files] or sorted((EVENTS_DIR / "webhooks").glob("*.json"))
    if not paths:
        raise UsageError("no webhook files to replay")
    post = env.http_post
    if post is None:
        import requests  # noqa: PLC0415 - keeps `--help` fast

        post = requests.post
    failures = 0
    progress = Progress("replay", len(paths), env.stderr)
    for path in paths:
        try:
            original = path.read_bytes()
            webhook_id = json.loads(original).get("webhookId") if args.keep_ids else None
            body = restamp(original, webhook_id=webhook_id)
        except (OSError, ValueError, AttributeError) as exc:
            failures += 1
            env.stdout.write(f"{path.name}: unreadable ({type(exc).__name__})\n")
            progress.advance()
            continue
        try:
            response = post(
                args.url, data=body, headers=signed_headers(body, args.scheme), timeout=args.timeout
            )
            status, text = response.status_code, response.text
        except Exception as exc:  # noqa: BLE001 - network errors are reported per file
            failures += 1
            env.stdout.write(f"{path.name}: error {type(exc).__name__}\n")
            progress.advance()
            continue
        if not 200 <= status < 300:
            failures += 1
        env.stdout.write(f"{path.name}: {status} {_truncate(text, 120)}\n")
        progress.advance()
    progress.close()
    return PARTIAL if failures else OK


@dataclass
class _Recorded:
    """``--dry-run``: what would be enqueued, and cursors neither read nor written."""

    sent: list[tuple[str, str]] = field(default_factory=list)  # (group id, event type)

    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str:
        self.sent.append((group_id, attributes.get("eventType", "")))
        return f"dry-run-{len(self.sent)}"

    def load(self, location_ids: Sequence[str]) -> dict[str, Any]:
        return {}

    def save(self, location_id: str, cursor: Any) -> None:
        """A dry run leaves the scheduled run's cursors alone."""


def cmd_reconcile(args: argparse.Namespace, env: Env) -> int:
    """Run the reconciler here, with the function's variables (INGEST_QUEUE_URL, LEDGER_TABLE_NAME,
    POWERLEADS_*, RECONCILE_*): sweep, compare with the ledger, enqueue what the webhooks missed."""
    bad = [loc for loc in args.location if not is_valid_id(loc)]
    if bad:
        raise UsageError(f"--location must match [A-Za-z0-9_-]{{1,128}}: {_truncate(bad[0], 40)!r}")
    from dev.lambda_loader import add_code_paths  # noqa: PLC0415 - the layer's package, as in Lambda

    add_code_paths()
    from appointment_enricher.config import ConfigError, ReconcilerSettings  # noqa: PLC0415
    from appointment_enricher.reconcile_wiring import build_reconciler  # noqa: PLC0415

    variables = dict(os.environ)
    for name, value in (("AWS_ENDPOINT_URL", args.endpoint_url), ("AWS_DEFAULT_REGION", args.region)):
        if value:
            os.environ[name] = value  # boto3 inside the reconciler reads these
    if args.ingest_queue_url:
        variables["INGEST_QUEUE_URL"] = args.ingest_queue_url
    if args.dry_run:
        variables.setdefault("INGEST_QUEUE_URL", "dry-run (nothing is sent)")
    try:
        settings = ReconcilerSettings.from_env(variables)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    recorded = _Recorded()
    reconciler = build_reconciler(
        settings, sink=recorded if args.dry_run else None, cursors=recorded if args.dry_run else None
    )
    locations, errors = reconciler.locations(args.location, settings.RECONCILE_LOCATION_IDS)
    if not locations:
        raise UsageError("no locations: pass --location, set RECONCILE_LOCATION_IDS, or fill the ledger")
    progress = Progress("reconcile" + (" (dry run)" if args.dry_run else ""), len(locations), env.stderr)
    finished: set[str] = set()

    def on_step(tally: Any) -> None:
        if tally.complete and tally.location_id not in finished:
            finished.add(tally.location_id)
            progress.advance()

    try:
        summary = reconciler.run(locations, time.monotonic() + args.max_seconds, on_step=on_step)
    finally:
        progress.close()
    summary["errors"] += errors
    rows = [
        (
            t["location_id"],
            t["calendars"],
            t["requests"],
            t["listed"],
            t["recovered"].get("AppointmentUpdate", 0),
            t["recovered"].get("AppointmentDelete", 0),
            t["skipped"],
            t["errors"],
            "yes" if t["complete"] else "no (resumes next run)",
        )
        for t in summary["perLocation"]
    ]
    headers = (
        "locationId",
        "calendars",
        "requests",
        "listed",
        "updates",
        "deletes",
        "current",
        "errors",
        "complete",
    )
    env.stdout.write(table(headers, rows) + "\n")
    verb = "would enqueue" if args.dry_run else "enqueued"
    env.stdout.write(
        f"{verb} {summary['enqueued']} change(s) no webhook delivered; {summary['errors']} error(s); "
        f"{summary['requests']} upstream request(s) in {summary['durationMs'] / 1000:.1f} s"
        f"{'; stopped early' if summary['stoppedEarly'] else ''}\n"
    )
    for group_id, kind in recorded.sent:
        env.stdout.write(f"would enqueue {kind} {group_id}\n")
    return PARTIAL if summary["errors"] or summary["stoppedEarly"] else OK


# ----- entry point --------------------------------------------------------------------------------


# ----- show: what the ledger holds for one appointment -----------------------------------------

SHOWN_FIELDS = ("appointmentStatus", "startTime", "endTime", "assignedUserId", "calendarId", "title")


def ledger_view(item: Mapping[str, Any]) -> dict[str, Any]:
    """The ledger item (layout in appointment_enricher/ledger.py) as plain JSON."""
    expiration = int(item.get("expiration", {}).get("N", "0"))
    return {
        "appointmentId": item["id"]["S"].removeprefix("appointment#"),
        "locationId": item.get("locationId", {}).get("S"),
        "dateUpdated": item.get("dateUpdated", {}).get("S"),
        "deleted": item.get("deleted", {}).get("BOOL", False),
        "revision": int(item.get("revision", {}).get("N", "0")),
        "expiresAt": iso_timestamp(datetime.fromtimestamp(expiration, tz=UTC)) if expiration else None,
        "appointment": json.loads(zlib.decompress(item["appointment"]["B"])) if "appointment" in item else {},
        "recent": [
            {"dedupeId": dedupe, "change": change}
            for dedupe, change in json.loads(item.get("recent", {}).get("S", "[]"))
        ],
    }


def cmd_show(args: argparse.Namespace, env: Env) -> int:
    table_name = _required(args.ledger_table, "--ledger-table", "LEDGER_TABLE_NAME")
    if not is_valid_id(args.appointment_id):
        raise UsageError(f"APPOINTMENT_ID must match {ID_PATTERN}")
    response = env.dynamodb(args).get_item(
        TableName=table_name, Key={"id": {"S": f"appointment#{args.appointment_id}"}}, ConsistentRead=True
    )
    if "Item" not in response:
        env.stderr.write(f"appointment {args.appointment_id} is not in the ledger\n")
        return PARTIAL
    view = ledger_view(response["Item"])
    if args.json:
        env.stdout.write(json.dumps(view) + "\n")
        return OK
    rows = [
        (name, view[name]) for name in ("appointmentId", "locationId", "dateUpdated", "deleted", "revision")
    ]
    rows += [(name, view["appointment"].get(name)) for name in SHOWN_FIELDS if name in view["appointment"]]
    rows.append(("expiresAt", view["expiresAt"]))
    env.stdout.write(table(("field", "value"), rows) + "\n")
    recent = [
        (r["dedupeId"], r["change"]["kind"], ",".join(r["change"]["changedFields"])) for r in view["recent"]
    ]
    env.stdout.write(
        "\nrecent deliveries (oldest first)\n" + table(("dedupeId", "change", "fields"), recent) + "\n"
    )
    return OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plenrich", description="Operate the PowerLeads appointment enricher (AWS or the local stack)."
    )
    parser.add_argument("--endpoint-url", default=None, help="AWS endpoint (default: AWS_ENDPOINT_URL / AWS)")
    parser.add_argument("--region", default=None, help="AWS region (default: the usual boto3 lookup)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def dlq_flags(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--dlq-url", default=os.environ.get("DEAD_LETTER_QUEUE_URL"), help="quarantine queue"
        )
        sub.add_argument("--error-type", action="append", default=[], help="only this errorType (repeatable)")
        sub.add_argument("--max", type=_positive_int, default=0, help="at most N messages")
        sub.add_argument("--visibility-timeout", type=_positive_int, default=120, help=argparse.SUPPRESS)
        sub.add_argument("--wait", type=int, default=1, help=argparse.SUPPRESS)

    inspect = commands.add_parser("inspect", help="show quarantined messages and why, consuming none")
    dlq_flags(inspect)
    inspect.add_argument("--json", action="store_true", help="one JSON object per line")
    inspect.set_defaults(run=cmd_inspect)

    redrive = commands.add_parser("redrive", help="move quarantined messages back to the ingest queue")
    dlq_flags(redrive)
    redrive.add_argument("--ingest-queue-url", default=os.environ.get("INGEST_QUEUE_URL"))
    redrive.add_argument("--dry-run", action="store_true", help="list what would move; move nothing")
    redrive.set_defaults(run=cmd_redrive)

    backfill = commands.add_parser("backfill", help="re-enrich appointments from a list of ids")
    backfill.add_argument("--file", help="'<locationId> <appointmentId>' per line (default: stdin)")
    backfill.add_argument("--location", help="location for lines that hold only an appointment id")
    backfill.add_argument("--rate", type=float, default=8.0, help="messages per second (< 10; default 8)")
    backfill.add_argument("--ingest-queue-url", default=os.environ.get("INGEST_QUEUE_URL"))
    backfill.add_argument("--dry-run", action="store_true", help="validate and list; queue nothing")
    backfill.set_defaults(run=cmd_backfill)

    replay = commands.add_parser("replay", help="POST the signed sample webhooks to a URL")
    replay.add_argument("files", nargs="*", help="webhook bodies (default: events/webhooks/*.json)")
    replay.add_argument("--url", default=DEFAULT_REPLAY_URL)
    replay.add_argument("--keep-ids", action="store_true", help="keep each file's webhookId")
    replay.add_argument("--scheme", choices=("ed25519", "rsa", "both", "none"), default="ed25519")
    replay.add_argument("--timeout", type=float, default=10.0)
    replay.set_defaults(run=cmd_replay)

    show = commands.add_parser("show", help="what the ledger holds for one appointment")
    show.add_argument("appointment_id", metavar="APPOINTMENT_ID")
    show.add_argument("--ledger-table", default=os.environ.get("LEDGER_TABLE_NAME"))
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(run=cmd_show)

    reconcile = commands.add_parser("reconcile", help="recover appointment changes no webhook delivered")
    reconcile.add_argument(
        "--location", action="append", default=[], help="sweep this location (repeatable; default: all)"
    )
    reconcile.add_argument("--ingest-queue-url", default=None, help="default: INGEST_QUEUE_URL")
    reconcile.add_argument(
        "--dry-run", action="store_true", help="list what would be enqueued; enqueue nothing"
    )
    reconcile.add_argument("--max-seconds", type=float, default=600.0, help="stop (and keep cursors) after")
    reconcile.set_defaults(run=cmd_reconcile)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def main(argv: Sequence[str] | None = None, env: Env | None = None) -> int:
    env = env or Env()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        code: int = args.run(args, env)
    except UsageError as exc:
        env.stderr.write(f"plenrich {args.command}: error: {exc}\n")
        return USAGE
    except KeyboardInterrupt:
        env.stderr.write("\ninterrupted\n")
        return PARTIAL
    return code


if __name__ == "__main__":
    raise SystemExit(main())
