"""Soak: N signed webhooks with faults through the whole local stack, then prove the counts balance.

    python -m dev.soak.webhooks --events 10000          # make soak
    python -m dev.soak.webhooks --events 500 --quick    # the version `make test` runs (tests/integration)
    python -m dev.soak.webhooks --reconcile --events 2000   # lost webhooks (dev/soak/reconcile.py)

Path: sender threads -> local gateway (real HTTP) -> WebhookFunction -> IngestQueue.fifo (moto
server, its own process) -> SqsPoller + EnricherFunction in ``--workers`` processes (one Lambda
container each, FIFO group semantics from the queue) -> sandbox PowerLeads API -> EnrichedTopic
(SNS) -> EnrichedQueue (standard SQS, raw delivery) and QuarantineQueue.

Traffic and faults (all seeded, so a run can be repeated):
* every appointment gets a sequence of webhooks (Create, Updates, for some a final Delete); the
  sequence number is in the ``webhookId`` (``soak-<appointment>-<seq>-<nonce>``), which every
  record and every quarantined message carries;
* ``--duplicates`` (10 %) of the webhooks are delivered twice with the same bytes: half promptly
  (FIFO deduplication at intake, or the enricher's in-flight claim), half after the original
  settled (moto forgets a FIFO deduplication id once the message is deleted, like AWS after its
  5 minute window: the DynamoDB idempotency table must catch these);
* bursts of upstream 429 (``Retry-After`` 0.2 s) and 500, hung (slow) responses, dropped
  connections and changing latency;
* ``--invalid`` (1 %) of the appointments are permanently invalid: half are served without
  required fields (``InvalidAppointment``), half answer 422 (``UpstreamRejected``).

With ``--intake-faults`` the webhook handler's SQS endpoint sits behind ``dev/fakes/faultproxy.py``,
which now and then fails a queue write (500, 503, throttling), hangs it, trickles its answer, or
lets it land and answers 500; the receiver must answer those 429 within its budget. With
``--sender highlevel`` each delivery follows HighLevel's documented retry policy: only 429 is
retried (up to 6 attempts, honouring ``Retry-After``, its 10-minute spacing compressed to
``--retry-unit`` seconds); every other status is final. A webhook still refused after its last
attempt is counted as given up by the sender (zero when the faults are transient).
``--foreign N`` adds N verified deliveries for another marketplace app (the handler serves
only the dev app id): each must be answered 200 ignored and produce no outcome.

Checks, each a non-zero exit with the reason when it fails:
* every webhook was accepted (202) by the receiver;
* every accepted webhook produced exactly one record on EnrichedQueue, or exactly one quarantine
  message with the expected ``errorType`` (never both, never neither); nothing reached
  IngestDLQ; no record or quarantine message for a webhook that was never sent;
* every record validates against ``schemas/enriched-record-v1.json``;
* per-appointment order. EnrichedQueue is a standard queue fed by a standard topic: AWS gives no
  order there, so order is checked where the enricher *publishes*: the enricher also writes
  every record to a FIFO mirror queue (``OUTPUT_QUEUE_URL``, group = appointment id), and the
  sequence numbers of each appointment read back from it must be strictly increasing. The order
  seen on EnrichedQueue is printed for information only.

Its moto server runs in its own process (``python -m dev.stack.awslocal --bare``). Internal sub-command:
``python -m dev.soak.webhooks worker`` (an SqsPoller + EnricherFunction on ``INGEST_QUEUE_URL`` from the
environment; prints one JSON line per invocation start, used by the crash-safety test).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any
from unittest import mock

from dev.stack.poller import SqsPoller
from dev.stack.sqs import QueueReader, queue_depth, string_attributes

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "schemas" / "enriched-record-v1.json"

EXIT_OK = 0
EXIT_UNBALANCED = 1
EXIT_INFRA = 2


# ---- sub-processes ---------------------------------------------------------------------------


def _webhook_ids(event: dict[str, Any]) -> list[str | None]:
    """The webhookId of each record of an SQS event, for the worker log (None if unreadable)."""
    out: list[str | None] = []
    for record in event.get("Records", []):
        try:
            out.append(json.loads(json.loads(record["body"])["body"]).get("webhookId"))
        except (KeyError, TypeError, ValueError):
            out.append(None)
    return out


def worker_main(argv: list[str]) -> int:
    """One enricher "container": SqsPoller + EnricherFunction until SIGTERM (or SIGKILL)."""
    parser = argparse.ArgumentParser(prog="python -m dev.soak.webhooks worker")
    parser.add_argument("--timeout-seconds", type=float, default=10.0, help="Lambda timeout")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--wait-seconds", type=int, default=1)
    parser.add_argument(
        "--pause-after-invoke", type=float, default=0.0, help="sleep after each invocation, before the delete"
    )
    args = parser.parse_args(argv)

    from dev.fakes.lambda_loader import load_handler  # noqa: PLC0415

    handler = load_handler("enricher")
    invocations = 0

    def traced(event: dict[str, Any], context: Any) -> Any:
        nonlocal invocations
        invocations += 1
        ids = [r["messageId"] for r in event.get("Records", [])]
        print(
            json.dumps(
                {"event": "invoke", "n": invocations, "messageIds": ids, "webhooks": _webhook_ids(event)}
            ),
            flush=True,
        )
        result = handler(event, context)
        print(json.dumps({"event": "done", "n": invocations, "result": result}), flush=True)
        if args.pause_after_invoke:  # crash tests: a window between the handler's return and the ack
            time.sleep(args.pause_after_invoke)
        return result

    lock_path = os.environ.get("SOAK_RECEIVE_LOCK")
    poller_class = SerialReceivePoller if lock_path else SqsPoller
    poller = poller_class(
        traced,
        os.environ["INGEST_QUEUE_URL"],
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        batch_size=args.batch_size,
        wait_time_seconds=0 if lock_path else args.wait_seconds,
        timeout_seconds=args.timeout_seconds,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    poller.start()
    print(json.dumps({"event": "ready", "pid": os.getpid()}), flush=True)
    parent = os.getppid()
    while not stopped.wait(1.0):
        if os.getppid() != parent:  # the soak died without stopping us: do not linger
            break
    poller.stop()
    print(
        json.dumps(
            {
                "event": "stopped",
                "invocations": poller.invocations,
                "failedInvocations": poller.failed_invocations,
                "received": poller.messages_received,
                "deleted": poller.messages_deleted,
                "failed": poller.messages_failed,
            }
        ),
        flush=True,
    )
    return 0


class SerialReceivePoller(SqsPoller):
    """An SqsPoller whose ReceiveMessage calls are serialised across processes by a file lock.

    Why: moto's ReceiveMessage is not atomic. Two consumers receiving at once (or one long poll
    working from the in-flight groups it saw when it started) can both be handed messages of
    the same FIFO message group, which real SQS never does. Lambda's event source mapping does
    not do that either. Serialising the receive (short polls, under ``flock``) restores the
    guarantee; the batches themselves are still processed in parallel by several processes.
    """

    def receive(self) -> list[dict[str, Any]]:
        import fcntl  # noqa: PLC0415 - POSIX only, like the rest of the dev stack

        with open(os.environ["SOAK_RECEIVE_LOCK"], "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                messages = super().receive()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        if not messages:
            time.sleep(0.1)  # short polls: do not spin on an empty queue
        return messages


def start_moto_process() -> tuple[subprocess.Popen[str], str]:
    """``python -m dev.stack.awslocal --bare`` as a child; returns it and the endpoint URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dev.stack.awslocal", "--bare"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("http://127.0.0.1:"):
        stop_process(proc)
        raise RuntimeError(f"moto server did not start (said {line!r})")
    return proc, line


def start_worker_process(
    env: dict[str, str],
    *,
    timeout_seconds: float,
    log: IO[str] | int | None = None,
    pause_after_invoke: float = 0.0,
) -> subprocess.Popen[str]:
    """``python -m dev.soak.webhooks worker`` with ``env`` (the runtime contract) on top of ours."""
    command = [sys.executable, "-m", "dev.soak.webhooks", "worker", "--timeout-seconds", str(timeout_seconds)]
    if pause_after_invoke:
        command += ["--pause-after-invoke", str(pause_after_invoke)]
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        command,
        cwd=REPO_ROOT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=log if log is not None else subprocess.PIPE,
        stderr=subprocess.STDOUT if log is not None else None,
        text=True,
    )


def stop_process(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """SIGTERM this child, then SIGKILL it if it lingers (never anything but this pid)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


# ---- the plan --------------------------------------------------------------------------------


@dataclass
class Webhook:
    webhook_id: str
    appointment_id: str
    location_id: str
    seq: int
    type: str
    body: bytes
    headers: dict[str, str]
    expect: str  # "record" | "quarantine"
    expect_error: str | None = None


@dataclass
class Plan:
    webhooks: list[Webhook]
    by_id: dict[str, Webhook]
    appointments: dict[str, dict[str, Any] | None]  # id -> served event (None: served as 422)
    invalid_missing: set[str]
    invalid_422: set[str]
    prompt_duplicates: list[Webhook]
    late_duplicates: list[Webhook]
    sender_lanes: list[list[Webhook]]  # each lane keeps its appointments' webhook order


def appointment_event(appointment_id: str, location_id: str, index: int) -> dict[str, Any]:
    """A Get Appointment ``event`` the sandbox serves (every documented required field)."""
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC) + timedelta(minutes=30 * index)

    def ts(moment: datetime) -> str:
        # The upstream's time shapes: offset, Z, and the bare "YYYY-MM-DD HH:MM:SS".
        style = index % 4
        if style == 0:
            return moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
        if style == 1:
            return moment.astimezone(timezone(timedelta(hours=-4))).isoformat()
        if style == 2:
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        return moment.strftime("%Y-%m-%d %H:%M:%S")

    return {
        "id": appointment_id,
        "title": f"Soak appointment {index}",
        "calendarId": f"SoakCal{index % 17:03d}",
        "locationId": location_id,
        "contactId": f"SoakContact{index:06d}",
        "groupId": "SoakGroup001",
        "appointmentStatus": ("confirmed", "new", "showed", "cancelled")[index % 4],
        "assignedUserId": "SoakUser001",
        "users": ["SoakUser001"],
        "notes": "soak test",
        "isRecurring": "true" if index % 5 == 0 else False,
        "startTime": ts(start),
        "endTime": ts(start + timedelta(minutes=30)),
        "dateAdded": "2026-01-05T10:00:00.000Z",
        "dateUpdated": "2026-01-06T11:00:00.000Z",
        "soakExtraField": {"kept": True},
    }


def _interleave(sequences: list[list[Webhook]], senders: int, rng: random.Random) -> list[list[Webhook]]:
    """Appointments interleaved at random per sender lane, each appointment's own order kept."""
    lanes: list[list[Webhook]] = [[] for _ in range(max(1, senders))]
    for lane_index, lane in enumerate(lanes):
        cursors = [list(s) for i, s in enumerate(sequences) if i % len(lanes) == lane_index and s]
        while cursors:
            pick = rng.randrange(len(cursors))
            lane.append(cursors[pick].pop(0))
            if not cursors[pick]:
                cursors.pop(pick)
    return lanes


def build_plan(
    events: int,
    *,
    seed: int,
    duplicate_ratio: float,
    invalid_ratio: float,
    senders: int,
    per_appointment: int = 5,
) -> Plan:
    """Deterministic traffic for ``seed``: appointments, their webhook sequences, duplicates."""
    from dev.fakes.signing import make_webhook, signed_headers, webhook_snapshot  # noqa: PLC0415

    rng = random.Random(seed)
    n_appointments = max(1, events // per_appointment)
    n_locations = max(1, n_appointments // 10)  # ~50 fetches per location: far below 100 / 10 s
    run = uuid.uuid4().hex[:6]
    ids = [f"Soak{run}A{i:06d}" for i in range(n_appointments)]
    locations = {a: f"Soak{run}L{i % n_locations:05d}" for i, a in enumerate(ids)}
    # Events per appointment: every appointment gets one, the rest land at random.
    counts = Counter(ids)
    for _ in range(events - n_appointments):
        counts[rng.choice(ids)] += 1
    n_invalid = round(n_appointments * invalid_ratio) if invalid_ratio > 0 else 0
    if invalid_ratio > 0:
        n_invalid = max(1, n_invalid)
    invalid = rng.sample(ids, n_invalid)
    invalid_missing = set(invalid[::2])
    invalid_422 = set(invalid[1::2])
    deletes = {a for a in ids if counts[a] > 1 and rng.random() < 0.03}

    appointments: dict[str, dict[str, Any] | None] = {}
    sequences: dict[str, list[Webhook]] = {}
    for index, appointment_id in enumerate(ids):
        event = appointment_event(appointment_id, locations[appointment_id], index)
        if appointment_id in invalid_missing:
            served: dict[str, Any] | None = {
                k: v for k, v in event.items() if k not in ("calendarId", "startTime")
            }
        elif appointment_id in invalid_422:
            served = None
        else:
            served = event
        appointments[appointment_id] = served
        sequence: list[Webhook] = []
        for seq in range(counts[appointment_id]):
            last = seq == counts[appointment_id] - 1
            kind = (
                "AppointmentCreate"
                if seq == 0
                else "AppointmentDelete"
                if last and appointment_id in deletes
                else "AppointmentUpdate"
            )
            webhook_id = f"soak-{index:06d}-{seq:04d}-{rng.getrandbits(32):08x}"
            snapshot = webhook_snapshot(event, title=f"seq {seq}")
            body = make_webhook(kind, snapshot, locations[appointment_id], webhook_id=webhook_id)
            expect, error = "record", None
            if kind != "AppointmentDelete" and appointment_id in invalid_missing:
                expect, error = "quarantine", "InvalidAppointment"
            elif kind != "AppointmentDelete" and appointment_id in invalid_422:
                expect, error = "quarantine", "UpstreamRejected"
            sequence.append(
                Webhook(
                    webhook_id,
                    appointment_id,
                    locations[appointment_id],
                    seq,
                    kind,
                    body,
                    signed_headers(body, "ed25519" if seq % 7 else "rsa"),
                    expect,
                    error,
                )
            )
        sequences[appointment_id] = sequence

    lanes = _interleave([sequences[a] for a in ids], senders, rng)
    all_webhooks = [w for a in ids for w in sequences[a]]
    n_dupes = round(len(all_webhooks) * duplicate_ratio)
    duplicated = rng.sample(all_webhooks, n_dupes)
    prompt = duplicated[: n_dupes // 2]
    late = duplicated[n_dupes // 2 :]
    # A prompt duplicate goes out a few positions after its original in the same lane.
    lane_of = {w.webhook_id: i for i, lane in enumerate(lanes) for w in lane}
    for webhook in prompt:
        lane = lanes[lane_of[webhook.webhook_id]]
        position = next(i for i, w in enumerate(lane) if w is webhook)
        lane.insert(min(len(lane), position + 1 + rng.randrange(20)), webhook)
    return Plan(
        webhooks=all_webhooks,
        by_id={w.webhook_id: w for w in all_webhooks},
        appointments=appointments,
        invalid_missing=invalid_missing,
        invalid_422=invalid_422,
        prompt_duplicates=prompt,
        late_duplicates=late,
        sender_lanes=lanes,
    )


# ---- the run ---------------------------------------------------------------------------------


@dataclass
class Collected:
    """Everything drained from the output queues, kept in arrival order."""

    records: list[dict[str, Any]] = field(default_factory=list)  # EnrichedQueue bodies
    ordered: list[dict[str, Any]] = field(default_factory=list)  # FIFO mirror bodies
    quarantine: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)
    ingest_dlq: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def outcomes(self) -> int:
        with self.lock:
            return len(self.records) + len(self.quarantine) + len(self.ingest_dlq)


class Collector:
    """Drains EnrichedQueue, the FIFO mirror, QuarantineQueue and IngestDLQ while the run goes."""

    def __init__(self, sqs: Any, queues: dict[str, str]) -> None:
        self.data = Collected()
        self.readers = [
            QueueReader(sqs, url, functools.partial(self._keep, name), name=f"collect-{name}")
            for name, url in queues.items()
        ]

    @property
    def errors(self) -> list[str]:
        return [error for reader in self.readers for error in reader.errors]

    def start(self) -> Collector:
        for reader in self.readers:
            reader.start()
        return self

    def stop(self) -> None:
        for reader in self.readers:
            reader.stop()

    def _keep(self, name: str, messages: list[dict[str, Any]]) -> None:
        with self.data.lock:
            for message in messages:
                if name == "records":
                    self.data.records.append(json.loads(message["Body"]))
                elif name == "ordered":
                    self.data.ordered.append(json.loads(message["Body"]))
                elif name == "quarantine":
                    self.data.quarantine.append((json.loads(message["Body"]), string_attributes(message)))
                else:
                    self.data.ingest_dlq.append(message["Body"])


@dataclass
class SendStats:
    deliveries: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    accepted: set[str] = field(default_factory=set)
    not_accepted: dict[str, int] = field(default_factory=dict)
    given_up: set[str] = field(default_factory=set)  # still 429 after the sender's last attempt
    ignored: set[str] = field(default_factory=set)  # answered 200 ignored
    lock: threading.Lock = field(default_factory=threading.Lock)


HIGHLEVEL_RETRY_SPACING_SECONDS = 600  # documented: every 10 minutes (plus jitter)
HIGHLEVEL_MAX_ATTEMPTS = 6


def highlevel_retry_delay(retry_after: str | None, unit: float, rng: random.Random) -> float:
    """Seconds to wait before the next attempt: HighLevel's 10 minutes, or a longer Retry-After,
    compressed so that 10 minutes last ``unit`` seconds, with up to 20 % jitter."""
    try:
        asked = float(retry_after) if retry_after is not None else 0.0
    except ValueError:
        asked = 0.0
    spacing = max(HIGHLEVEL_RETRY_SPACING_SECONDS, asked)
    return unit * spacing / HIGHLEVEL_RETRY_SPACING_SECONDS * (1 + 0.2 * rng.random())


@dataclass
class SenderPolicy:
    """When a sender retries a delivery, and after how long (``None``: the answer is final).

    ``highlevel``: HighLevel's documented policy, only 429 retried, 6 attempts, Retry-After
    honoured, 10 minutes compressed to ``unit`` seconds. Otherwise an eager sender that retries
    any answer but 2xx, 400, 401 and 413 a few times, briefly (the soak's default)."""

    highlevel: bool = False
    unit: float = 1.0
    rng: random.Random = field(default_factory=random.Random)

    @property
    def attempts(self) -> int:
        return HIGHLEVEL_MAX_ATTEMPTS if self.highlevel else 5

    def delay(self, status: int, attempt: int, retry_after: str | None) -> float | None:
        if attempt >= self.attempts - 1:
            return None
        if self.highlevel:
            return highlevel_retry_delay(retry_after, self.unit, self.rng) if status == 429 else None
        if 200 <= status < 300 or status in (400, 401, 413):
            return None
        return 0.2 * (attempt + 1)


def send_lane(
    url: str,
    lane: list[Webhook],
    stats: SendStats,
    stop: threading.Event,
    *,
    policy: SenderPolicy | None = None,
    backlog: Callable[[], int] | None = None,
    max_backlog: int = 0,
) -> None:
    """POST each webhook in order, retrying as ``policy`` says (a connection error is status 0).

    With ``max_backlog``, wait while more than that many accepted webhooks have no outcome yet:
    moto's SQS gets slower with every queued message, and an unbounded backlog would measure moto
    rather than the pipeline.
    """
    import requests  # noqa: PLC0415

    policy = policy or SenderPolicy()
    session = requests.Session()
    for webhook in lane:
        while backlog is not None and max_backlog and backlog() > max_backlog and not stop.is_set():
            stop.wait(0.05)
        if stop.is_set():
            return
        status, ignored = 0, False
        for attempt in range(policy.attempts):
            retry_after = None
            try:
                response = session.post(url, data=webhook.body, headers=webhook.headers, timeout=30)
                status, retry_after = response.status_code, response.headers.get("retry-after")
                ignored = status == 200 and response.json().get("status") == "ignored"
            except requests.RequestException:
                status = 0
            with stats.lock:
                stats.deliveries += 1
                stats.statuses[status] += 1
                stats.retries += 1 if attempt else 0
            delay = policy.delay(status, attempt, retry_after)
            if delay is None:
                break
            stop.wait(delay)
        _tally(stats, webhook.webhook_id, status, ignored)
    session.close()


def _tally(stats: SendStats, webhook_id: str, status: int, ignored: bool) -> None:
    with stats.lock:
        if status == 202:
            stats.accepted.add(webhook_id)
        elif ignored:
            stats.ignored.add(webhook_id)
        else:
            stats.not_accepted[webhook_id] = status
            if status == 429:
                stats.given_up.add(webhook_id)  # the sender's last attempt was still a 429


@dataclass
class IntakeFaultStats:
    queued: Counter[str] = field(default_factory=Counter)


def inject_intake_faults(
    proxy: Any, rng: random.Random, stop: threading.Event, stats: IntakeFaultStats
) -> None:
    """Every ~0.7 s (when the last ones were used up), the next one or two queue writes fail:
    mostly fast (500, 503, throttling, landed then 500); every 8th time slow (hang, trickle),
    which costs the receiver its whole budget. Faults never pile up into a long outage: the
    point is transient failures, which a sender retrying only 429 must ride out."""
    from dev.fakes.faultproxy import Fault  # noqa: PLC0415

    fast = [Fault.error(500), Fault.error(503), Fault.throttle(), Fault.landed_then_error(500)]
    slow = [Fault.hang(5.0), Fault.trickle(4.0)]
    slow_due = False
    for round_ in itertools.count(1):
        if stop.wait(0.7):
            return
        slow_due = slow_due or round_ % 8 == 0  # kept until it can be queued
        if proxy.pending():
            continue
        faults = [rng.choice(fast) for _ in range(rng.randint(1, 2))]
        if slow_due:
            faults, slow_due = [rng.choice(slow)], False
        proxy.queue(faults)
        for fault in faults:
            stats.queued[fault.kind] += 1


def foreign_webhooks(count: int, seed: int) -> list[Webhook]:
    """Verified deliveries for another marketplace app: ignored by a receiver serving the dev app."""
    from dev.fakes.signing import make_webhook, signed_headers  # noqa: PLC0415

    rng = random.Random(seed)
    out = []
    for index in range(count):
        webhook_id = f"foreign-{index:05d}-{rng.getrandbits(32):08x}"
        body = json.loads(
            make_webhook("AppointmentUpdate", {"id": f"Foreign{index:05d}"}, "ForeignLoc1", webhook_id)
        )
        body["appId"] = "someone-elses-app"
        raw = json.dumps(body, separators=(",", ":")).encode()
        out.append(
            Webhook(
                webhook_id,
                f"Foreign{index:05d}",
                "ForeignLoc1",
                0,
                "AppointmentUpdate",
                raw,
                signed_headers(raw),
                "ignored",
            )
        )
    return out


@dataclass
class FaultStats:
    bursts_429: int = 0
    bursts_500: int = 0
    hangs: int = 0
    drops: int = 0
    latency_changes: int = 0


def inject_faults(sandbox: Any, rng: random.Random, stop: threading.Event, stats: FaultStats) -> None:
    """Every ~1.5 s while webhooks are being sent: a burst of 429s or 500s, sometimes a hang or a
    dropped connection, and a new base latency. Unscoped faults hit whichever appointment asks next."""
    from dev.fakes.sandbox import Fault  # noqa: PLC0415

    while not stop.wait(1.5):
        roll = rng.random()
        if roll < 0.45:
            sandbox.queue_faults([Fault.error(429, headers={"Retry-After": "0.2"})] * rng.randint(3, 8))
            stats.bursts_429 += 1
        elif roll < 0.85:
            sandbox.queue_faults([Fault.error(500)] * rng.randint(2, 5))
            stats.bursts_500 += 1
        if rng.random() < 0.3:
            sandbox.queue_faults([Fault.hang(rng.choice((0.3, 0.8)))])
            stats.hangs += 1
        if rng.random() < 0.15:
            sandbox.queue_faults([Fault.drop()])
            stats.drops += 1
        sandbox.set_latency(rng.choice((0, 5, 20, 60)))
        stats.latency_changes += 1


def serve_plan(sandbox: Any, plan: Plan) -> None:
    """The sandbox serves every valid appointment and answers 422 for the 422-invalid ones."""
    from dev.fakes.sandbox import Fault  # noqa: PLC0415

    for appointment_id, event in plan.appointments.items():
        if event is not None:
            sandbox.put_appointment(event)
        else:
            count = sum(1 for w in plan.webhooks if w.appointment_id == appointment_id)
            sandbox.queue_faults([Fault.error(422)] * (count + 2), event_id=appointment_id)


def send_late_duplicates(
    send: Callable[[list[Webhook], SendStats, threading.Event], None], plan: Plan, sent: SendStats
) -> None:
    """Late duplicates: the originals are settled and deleted, so intake lets them through."""
    late = SendStats()
    send(plan.late_duplicates, late, threading.Event())
    sent.deliveries += late.deliveries
    sent.statuses.update(late.statuses)
    for webhook_id, status in late.not_accepted.items():
        sent.not_accepted[f"{webhook_id}(late duplicate)"] = status


def wait_for_threads(
    threads: list[threading.Thread],
    deadline: float,
    *,
    stop_early: Callable[[], bool],
    progress: Callable[[], None],
    every: float = 15.0,
) -> None:
    """Until the threads end, ``deadline`` (monotonic) or ``stop_early()``; ``progress()`` every so often."""
    next_progress = time.monotonic() + every
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        time.sleep(0.5)
        if stop_early():
            return
        if time.monotonic() >= next_progress:
            next_progress += every
            progress()


def wait_until(condition: Callable[[], bool], deadline: float, step: float = 0.5) -> bool:
    """Poll ``condition`` until true or ``deadline`` (monotonic): a bounded loop."""
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


# ---- the checks ------------------------------------------------------------------------------


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def none(self, found: set[str], what: str) -> None:
        """Fail with ``what`` and a few examples unless ``found`` is empty."""
        if found:
            self.fail(f"{len(found)} {what}: {_examples(found)}")


def _examples(items: Any, limit: int = 5) -> str:
    values = sorted(items)[:limit]
    return ", ".join(map(str, values)) + (" ..." if len(items) > limit else "")


def _quarantine_index(data: Collected, verdict: Verdict) -> tuple[Counter[str], dict[str, set[str]]]:
    """Quarantine messages per webhook id, and their errorTypes."""
    counts: Counter[str] = Counter()
    errors: dict[str, set[str]] = defaultdict(set)
    unparsed = 0
    for body, attributes in data.quarantine:
        try:
            webhook_id = str(json.loads(body["body"])["webhookId"])
        except (KeyError, TypeError, ValueError):
            unparsed += 1
            continue
        counts[webhook_id] += 1
        errors[webhook_id].add(attributes.get("errorType", ""))
        if not attributes.get("errorMessage") or not attributes.get("failedAt"):
            verdict.fail(f"quarantine message for {webhook_id} lacks errorMessage/failedAt")
    if unparsed:
        verdict.fail(f"{unparsed} quarantine messages whose body is not an ingest message")
    return counts, errors


def _check_records(plan: Plan, data: Collected, verdict: Verdict) -> None:
    """Every record schema-valid, ``deleted`` exactly for deletes."""
    # No type stubs for jsonschema in the dev requirements: used untyped on purpose.
    jsonschema: Any = importlib.import_module("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    invalid_records = sum(1 for record in data.records if not validator.is_valid(record))
    if invalid_records:
        verdict.fail(f"{invalid_records} records do not validate against {SCHEMA_PATH.name}")
    for record in data.records:
        webhook = plan.by_id.get(str(record.get("webhookId")))
        if webhook is not None and record.get("deleted") != (webhook.type == "AppointmentDelete"):
            verdict.fail(f"record {webhook.webhook_id} has deleted={record.get('deleted')}")


def _sequences(plan: Plan, records: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Per appointment, the sequence numbers of its records in the order read."""
    per_appointment: dict[str, list[int]] = defaultdict(list)
    for record in records:
        webhook = plan.by_id.get(str(record.get("webhookId")))
        if webhook is not None:
            per_appointment[webhook.appointment_id].append(webhook.seq)
    return per_appointment


def _check_order(plan: Plan, data: Collected, verdict: Verdict) -> dict[str, Any]:
    """Order at publish time (the FIFO mirror), per appointment; EnrichedQueue's order for information."""
    per_appointment = _sequences(plan, data.ordered)
    out_of_order = {a for a, seqs in per_appointment.items() if any(x >= y for x, y in pairs(seqs))}
    if out_of_order:
        verdict.fail(
            f"{len(out_of_order)} appointments published out of order: "
            + "; ".join(f"{a}: {per_appointment[a]}" for a in sorted(out_of_order)[:3])
        )
    mirrored = {str(r.get("webhookId")) for r in data.ordered}
    published = {str(r.get("webhookId")) for r in data.records}
    if mirrored != published:
        verdict.fail(
            f"FIFO mirror and EnrichedQueue disagree: {len(mirrored ^ published)} webhook ids differ"
        )
    standard = _sequences(plan, data.records)
    return {
        "orderedAppointmentsChecked": len(per_appointment),
        "standardQueueOrderInversions(info)": sum(
            1 for seqs in standard.values() for x, y in pairs(seqs) if x >= y
        ),
    }


def check(plan: Plan, sent: SendStats, data: Collected) -> Verdict:
    """Exactly one outcome per accepted webhook, the right one, in order, schema-valid."""
    verdict = Verdict()
    # A webhook the sender gave up on (still 429 after its last attempt) is accounted for: the
    # sender knows it failed. Any other refusal is an event lost without anyone knowing.
    refused = {w: s for w, s in sent.not_accepted.items() if w not in sent.given_up}
    if refused:
        verdict.fail(
            f"{len(refused)} webhooks not accepted (status: "
            f"{dict(Counter(refused.values()))}): {_examples(refused)}"
        )
    accepted = sent.accepted & set(plan.by_id)
    records = Counter(str(r.get("webhookId")) for r in data.records)
    quarantined, reasons = _quarantine_index(data, verdict)

    def expect(webhook_id: str) -> Webhook:
        return plan.by_id[webhook_id]

    verdict.none((set(records) | set(quarantined)) - set(plan.by_id), "outcomes for webhooks never sent")
    verdict.none({w for w, n in records.items() if n > 1}, "webhooks published more than once")
    verdict.none({w for w, n in quarantined.items() if n > 1}, "webhooks quarantined more than once")
    verdict.none(set(records) & set(quarantined), "webhooks both published and quarantined")
    verdict.none(
        {w for w in accepted if w not in records and w not in quarantined},
        "accepted webhooks with no record and no quarantine",
    )
    wrong_kind = {
        w
        for w in accepted
        if (expect(w).expect == "record" and w in quarantined)
        or (expect(w).expect == "quarantine" and w in records)
    }
    verdict.none(
        {f"{w}:{sorted(reasons.get(w, {'record'}))}" for w in wrong_kind}, "webhooks with the wrong outcome"
    )
    verdict.none(
        {
            w
            for w in accepted
            if expect(w).expect == "quarantine"
            and w in quarantined
            and reasons[w] != {expect(w).expect_error}
        },
        "quarantined with an unexpected errorType",
    )
    if data.ingest_dlq:
        verdict.fail(f"{len(data.ingest_dlq)} messages reached IngestDLQ (retries exhausted)")
    _check_records(plan, data, verdict)
    order = _check_order(plan, data, verdict)

    verdict.figures.update(
        {
            "webhooks": len(plan.webhooks),
            "appointments": len(plan.appointments),
            "accepted": len(accepted),
            "expectedRecords": sum(1 for w in plan.webhooks if w.expect == "record"),
            "expectedQuarantine": sum(1 for w in plan.webhooks if w.expect == "quarantine"),
            "records": sum(records.values()),
            "uniqueRecords": len(records),
            "quarantined": sum(quarantined.values()),
            "quarantineReasons": dict(Counter(a.get("errorType", "") for _, a in data.quarantine)),
            "ingestDlq": len(data.ingest_dlq),
            "deletedRecords": sum(1 for r in data.records if r.get("deleted")),
            **order,
            # With the ledger on (the local stack's default) every record says what changed.
            "changeKinds": dict(Counter(str((r.get("change") or {}).get("kind")) for r in data.records)),
            "firstChangePerAppointment": dict(Counter(_first_kinds(data.ordered, plan))),
        }
    )
    return verdict


def _first_kinds(ordered: list[dict[str, Any]], plan: Plan) -> Iterator[str]:
    """The change kind of each appointment's first published record (FIFO mirror order)."""
    seen: set[str] = set()
    for record in ordered:
        webhook = plan.by_id.get(str(record.get("webhookId")))
        if webhook is not None and webhook.appointment_id not in seen:
            seen.add(webhook.appointment_id)
            yield str((record.get("change") or {}).get("kind"))


def pairs(values: list[int]) -> Iterator[tuple[int, int]]:
    return itertools.pairwise(values)


# ---- orchestration ---------------------------------------------------------------------------


@dataclass
class SoakConfig:
    events: int = 10_000
    workers: int = 3
    senders: int = 4
    seed: int = 7
    duplicates: float = 0.10
    invalid: float = 0.01
    timeout: float = 1800.0
    visibility_timeout: int = 8
    function_timeout: float = 7.0
    max_receive_count: int = 5
    faults: bool = True
    verbose: bool = True
    max_backlog: int = 200
    intake_faults: bool = False  # queue-write faults through dev/fakes/faultproxy.py
    sender: str = "retry-all"  # or "highlevel": only 429 retried, 6 attempts
    retry_unit: float = 1.0  # seconds that stand for HighLevel's 10-minute retry spacing
    foreign: int = 0  # verified deliveries for another app, to be ignored


class WorkerDied(RuntimeError):
    """An enricher process exited during the run (e.g. the product failed to import)."""


@dataclass
class SoakResult:
    verdict: Verdict
    elapsed: float
    log_path: Path

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.verdict.ok else EXIT_UNBALANCED


@contextmanager
def _children() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            stop_process(proc)


def _intake_environment(config: SoakConfig, endpoint: str) -> Any:
    """The webhook handler's environment for this run (``os.environ``, read at its cold start):
    its SQS endpoint behind a fault proxy with ``intake_faults`` (returned, started), and with
    ``foreign`` deliveries planned, it serves the dev marketplace app only."""
    if config.foreign:
        from dev.fakes.signing import DEV_APP_ID  # noqa: PLC0415

        os.environ["WEBHOOK_APP_IDS"] = DEV_APP_ID
    if not config.intake_faults:
        return None
    from dev.fakes.faultproxy import FaultProxy  # noqa: PLC0415

    proxy = FaultProxy(endpoint).start()
    os.environ["AWS_ENDPOINT_URL"] = proxy.url
    return proxy


def start_fault_injection(
    config: SoakConfig,
    sandbox: Any,
    *,
    proxy: Any,
    rng: random.Random,
    stop: threading.Event,
    faults: FaultStats,
    intake_faults: IntakeFaultStats,
) -> None:
    """Upstream faults in the sandbox (``--faults``) and queue faults at intake (``--intake-faults``)."""
    if config.faults:
        threading.Thread(target=inject_faults, args=(sandbox, rng, stop, faults), daemon=True).start()
    if proxy is not None:
        threading.Thread(
            target=inject_intake_faults,
            args=(proxy, random.Random(config.seed + 1), stop, intake_faults),
            daemon=True,
        ).start()


def make_sender(config: SoakConfig, url: str) -> Callable[..., None]:
    """The sender the soak plays: the plain one, or one that follows HighLevel's retry policy."""

    def send(lane: list[Webhook], stats: SendStats, stop: threading.Event, **kw: Any) -> None:
        policy = SenderPolicy(
            highlevel=config.sender == "highlevel",
            unit=config.retry_unit,
            rng=random.Random(config.seed + len(lane)),
        )
        send_lane(url, lane, stats, stop, policy=policy, **kw)

    return send


def check_foreign_ignored(verdict: Verdict, sent: SendStats, foreign: list[Webhook]) -> set[str]:
    """Every delivery for another app was answered ``ignored``; returns those that were."""
    ignored = sent.ignored & {w.webhook_id for w in foreign}
    if len(ignored) != len(foreign):
        verdict.fail(f"{len(foreign) - len(ignored)} deliveries for another app were not ignored")
    return ignored


def run_soak(config: SoakConfig, say: Callable[[str], None] | None = None) -> SoakResult:
    say = say or functools.partial(print, file=sys.stdout, flush=True)
    from dev.fakes.lambda_loader import load_handler  # noqa: PLC0415
    from dev.fakes.sandbox import SandboxServer  # noqa: PLC0415
    from dev.stack.awslocal import create_resources  # noqa: PLC0415
    from dev.stack.gateway import Gateway  # noqa: PLC0415

    started = time.monotonic()
    deadline = started + config.timeout
    rng = random.Random(config.seed)
    plan = build_plan(
        config.events,
        seed=config.seed,
        duplicate_ratio=config.duplicates,
        invalid_ratio=config.invalid,
        senders=config.senders,
    )
    say(
        f"soak: {len(plan.webhooks)} webhooks over {len(plan.appointments)} appointments, "
        f"{len(plan.prompt_duplicates) + len(plan.late_duplicates)} duplicate deliveries, "
        f"{len(plan.invalid_missing) + len(plan.invalid_422)} invalid appointments, "
        f"{config.workers} enricher processes"
    )
    log_dir = Path(tempfile.mkdtemp(prefix="soak-"))
    log_path = log_dir / "workers.log"
    sandbox = SandboxServer(rate_limit_burst=100, rate_limit_interval_ms=10_000).start()
    sent = SendStats()
    faults = FaultStats()
    intake_faults = IntakeFaultStats()
    foreign = foreign_webhooks(config.foreign, config.seed)
    stop_faults = threading.Event()
    stop_senders = threading.Event()
    verdict = Verdict()
    with (
        _children() as procs,
        log_path.open("w") as worker_log,
        mock.patch.dict(os.environ),  # restored afterwards: the soak also runs inside pytest
        open(os.devnull, "w") as devnull,
        redirect_stdout(devnull),  # the in-process webhook handler's EMF lines; `say` keeps its own
    ):
        moto, endpoint = start_moto_process()
        procs.append(moto)
        stack = create_resources(
            endpoint,
            suffix=f"soak{uuid.uuid4().hex[:6]}",
            visibility_timeout=config.visibility_timeout,
            max_receive_count=config.max_receive_count,
        )
        sqs = stack.client("sqs")
        mirror_url = sqs.create_queue(
            QueueName=f"EnrichedOrder-{stack.suffix}.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
        )["QueueUrl"]
        serve_plan(sandbox, plan)
        env = stack.env(
            sandbox.url,
            output_mode="both",
            OUTPUT_QUEUE_URL=mirror_url,
            POWERTOOLS_METRICS_DISABLED="true",
            POWERTOOLS_LOG_LEVEL="WARNING",
            POWERTOOLS_TRACE_DISABLED="true",
            POWERTOOLS_IDEMPOTENCY_DISABLED="false",
            ENRICHER_MAX_WORKERS="4",
            POWERLEADS_READ_TIMEOUT_SECONDS="3",
            SOAK_RECEIVE_LOCK=str(log_dir / "receive.lock"),
        )
        os.environ.update(env)  # the webhook handler reads its cold-start config from here
        collector = Collector(
            sqs,
            {
                "records": stack.enriched_queue_url,
                "ordered": mirror_url,
                "quarantine": stack.quarantine_queue_url,
                "dlq": stack.ingest_dlq_url,
            },
        ).start()
        workers = [
            start_worker_process(env, timeout_seconds=config.function_timeout, log=worker_log)
            for _ in range(config.workers)
        ]
        procs.extend(workers)

        def dead_workers() -> list[int | None]:
            return [w.returncode for w in workers if w.poll() is not None]

        proxy = _intake_environment(config, endpoint)  # after the workers: the handler only
        gateway = Gateway(load_handler("webhook")).start()
        start_fault_injection(
            config,
            sandbox,
            proxy=proxy,
            rng=rng,
            stop=stop_faults,
            faults=faults,
            intake_faults=intake_faults,
        )
        send = make_sender(config, gateway.webhook_url)

        try:
            t_send = time.monotonic()

            def backlog() -> int:
                with sent.lock:
                    accepted = len(sent.accepted)
                return accepted - collector.data.outcomes()

            senders = [
                threading.Thread(
                    target=send,
                    args=(lane, sent, stop_senders),
                    kwargs={"backlog": backlog, "max_backlog": config.max_backlog},
                    daemon=True,
                )
                for lane in [*plan.sender_lanes, foreign]
                if lane
            ]
            for thread in senders:
                thread.start()
            wait_for_threads(
                senders,
                deadline,
                stop_early=lambda: bool(dead_workers()),
                progress=lambda: say(
                    f"  ... {len(sent.accepted)} accepted, {collector.data.outcomes()} outcomes, "
                    f"{time.monotonic() - t_send:.0f} s"
                ),
            )
            stop_senders.set()
            # No new faults once nothing new is sent: bursts every 1.5 s would otherwise all land
            # on the last few messages still retrying, and starve them into the DLQ.
            stop_faults.set()
            send_seconds = time.monotonic() - t_send
            say(
                f"sent {sent.deliveries} deliveries in {send_seconds:.1f} s "
                f"({sent.deliveries / max(send_seconds, 1e-9):.0f}/s), statuses {dict(sent.statuses)}"
            )
            settled_originals = wait_until(
                lambda: (
                    bool(dead_workers()) or collector.data.outcomes() >= len(sent.accepted & set(plan.by_id))
                ),
                deadline,
            )
            if dead_workers():
                stop_senders.set()
                raise WorkerDied(f"enricher process(es) exited with {dead_workers()}; see {log_path}")
            t_first_settled = time.monotonic()
            if not settled_originals:
                verdict.fail(
                    f"timed out after {config.timeout:.0f} s waiting for outcomes "
                    f"({collector.data.outcomes()} of {len(sent.accepted)})"
                )
            stop_faults.set()
            if proxy is not None:
                proxy.set_fault(None)  # and drop one-off faults not yet used
            send_late_duplicates(send, plan, sent)
            # Settle: the ingest queue empty and no new outcome for a while (bounded by deadline).
            last = [collector.data.outcomes(), time.monotonic()]

            def quiet() -> bool:
                now_outcomes = collector.data.outcomes()
                if now_outcomes != last[0]:
                    last[:] = [now_outcomes, time.monotonic()]
                    return False
                return (
                    queue_depth(sqs, stack.ingest_queue_url, in_flight=True) == 0
                    and time.monotonic() - last[1] > 3
                )

            if not wait_until(quiet, max(deadline, time.monotonic() + 30), step=0.5):
                verdict.fail(
                    "ingest queue did not drain: "
                    f"{queue_depth(sqs, stack.ingest_queue_url, in_flight=True)} messages left"
                )
            elapsed_pipeline = t_first_settled - t_send
        finally:
            stop_senders.set()
            stop_faults.set()
            gateway.stop()
            if proxy is not None:
                proxy.stop()
            collector.stop()
            sandbox.stop()
    verdict_checks = check(plan, sent, collector.data)
    verdict.problems.extend(verdict_checks.problems)
    verdict.figures.update(verdict_checks.figures)
    if collector.errors:
        verdict.fail(f"collector errors: {collector.errors[:3]}")
    ignored_foreign = check_foreign_ignored(verdict, sent, foreign)
    accepted = verdict.figures.get("accepted", 0)
    verdict.figures.update(
        {
            "deliveries": sent.deliveries,
            "deliveryStatuses": dict(sent.statuses),
            "senderRetries": sent.retries,
            "duplicateDeliveries": len(plan.prompt_duplicates) + len(plan.late_duplicates),
            "upstreamRequests": sandbox.count("/calendars/events/appointments/"),
            "upstreamStatuses": dict(Counter(r["status"] for r in sandbox.requests_log())),
            "faults": vars(faults),
            "sender": config.sender,
            "senderGivenUp": len(sent.given_up),
            "foreignIgnored": len(ignored_foreign),
            "intakeFaultsQueued": dict(intake_faults.queued),
            "intakeFaultsHit": dict(proxy.stats.faulted if proxy is not None else {}),
            "pipelineSeconds": round(elapsed_pipeline, 1),
            "throughputWebhooksPerSecond": round(accepted / max(elapsed_pipeline, 1e-9), 1),
            "totalSeconds": round(time.monotonic() - started, 1),
        }
    )
    return SoakResult(verdict, time.monotonic() - started, log_path)


def report(result: SoakResult, say: Callable[[str], None] = print) -> None:
    figures = result.verdict.figures
    width = max(len(k) for k in figures) if figures else 0
    for key, value in figures.items():
        say(f"  {key:<{width}}  {value}")
    if result.verdict.ok:
        say(
            f"BALANCED: {figures.get('accepted')} accepted = {figures.get('uniqueRecords')} records "
            f"+ {figures.get('quarantined')} quarantined; no duplicates, order kept "
            f"({figures.get('throughputWebhooksPerSecond')} webhooks/s)"
        )
    else:
        say(f"NOT BALANCED ({len(result.verdict.problems)} problems; worker log {result.log_path}):")
        for problem in result.verdict.problems:
            say(f"  - {problem}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        return worker_main(argv[1:])
    if "--reconcile" in argv:  # lost webhooks recovered by one reconcile pass: dev/soak/reconcile.py
        from dev.soak.reconcile import main as reconcile_soak_main  # noqa: PLC0415

        return reconcile_soak_main([a for a in argv if a != "--reconcile"])
    parser = argparse.ArgumentParser(
        prog="python -m dev.soak.webhooks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = SoakConfig()
    parser.add_argument("--events", type=int, default=defaults.events, help="distinct webhooks to send")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="enricher processes")
    parser.add_argument("--senders", type=int, default=defaults.senders, help="sender threads")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--duplicates", type=float, default=defaults.duplicates)
    parser.add_argument("--invalid", type=float, default=defaults.invalid)
    parser.add_argument("--timeout", type=float, default=defaults.timeout, help="give up after (s)")
    parser.add_argument("--no-faults", action="store_true", help="no upstream 429/500/hang/drop bursts")
    parser.add_argument("--intake-faults", action="store_true", help="queue-write faults at intake")
    parser.add_argument("--sender", choices=["retry-all", "highlevel"], default=defaults.sender)
    parser.add_argument("--retry-unit", type=float, default=defaults.retry_unit, help="seconds per 10 min")
    parser.add_argument("--foreign", type=int, default=defaults.foreign, help="deliveries for another app")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    config = SoakConfig(
        events=args.events,
        workers=args.workers,
        senders=args.senders,
        seed=args.seed,
        duplicates=args.duplicates,
        invalid=args.invalid,
        timeout=args.timeout,
        faults=not args.no_faults,
        intake_faults=args.intake_faults,
        sender=args.sender,
        retry_unit=args.retry_unit,
        foreign=args.foreign,
    )
    # SIGTERM unwinds like Ctrl-C, so the child processes are stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run_soak(config)
    except Exception as exc:  # noqa: BLE001 - the stack could not be brought up: say so and exit 2
        print(f"soak could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INFRA
    report(result)
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
