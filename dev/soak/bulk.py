"""Bulk soak: one location's bulk action drains at the upstream limit, another's traffic flows.

    python -m dev.soak.bulk                       # make soak-bulk: 2,000 changes, 5 and 20 processes
    python -m dev.soak.bulk --changes 150 --concurrency 2   # the small version tests/integration runs

``--changes`` AppointmentUpdates of distinct appointments in location A are written to the
ingest queue within ``--send-seconds`` (what the receiver writes for an agency's bulk
reschedule), while location B gets one change every ``--other-every`` seconds until A is
drained. The sandbox PowerLeads API limits each location to 100 requests / 10 s (rejected
requests count against the window) and 200,000 a day. ``--concurrency`` enricher processes
(the template's ``EnricherMaximumConcurrency`` is 5), each a poller + EnricherFunction, share the
upstream budget through the ledger table (``BUDGET_TABLE_NAME``), as deployed.

The notes say when A's changes were all written, the tokens A leased from the shared bucket, A's
requests per 10 s window, the ingest queue's visible and in-flight messages every 10 s (a backlog
handed back to its queue places is in flight; visible messages are what stands in front of B's),
and B's delay by when each change was sent. moto runs with the local stack's SQS fixes
(``dev/stack/awslocal.py``): without them its SQS does work in proportion to the queue's depth on
every send, the 2,000 sends alone took minutes, and the soak measured moto.

Last line: ``bulk: N changes, drained in S s (P % of the limit), 429s K (Q %), dead-lettered D,
quarantined U, duplicates X, other location p99 delay T s``. P is location A's upstream requests
per second over the drain relative to the limit; Q is the share of all upstream requests
answered 429; the delay of a B record is its ``enrichedAt`` minus when it was queued. Goals
(DESIGN "End to end"): P >= 90, Q < 1, D = U = X = 0, T < 10; the exit status is non-zero when
one is missed (``--no-goals``: report only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from appointment_enricher.wire import IngestMessage, rfc3339
from dev.soak.collect import Collector
from dev.soak.plan import appointment_event
from dev.soak.processes import children, start_moto_process, start_worker_process

LOCATION_A = "BulkLocationAAAAAAAA"
LOCATION_B = "BulkLocationBBBBBBBB"
LIMIT_PER_SECOND = 100 / 10.0
PATH = "/calendars/events/appointments/"


@dataclass(frozen=True)
class BulkConfig:
    changes: int = 2000
    concurrency: int = 5
    send_seconds: float = 30.0
    other_every: float = 1.0
    timeout: float = 600.0


@dataclass
class BulkResult:
    changes: int
    drained_seconds: float
    limit_percent: float
    upstream: int
    throttled: int
    dead_lettered: int
    quarantined: int
    duplicates: int
    missing: int
    other_p99: float
    concurrency: int
    notes: list[str] = field(default_factory=list)

    @property
    def throttled_percent(self) -> float:
        return 100.0 * self.throttled / self.upstream if self.upstream else 0.0

    def line(self) -> str:
        return (
            f"bulk: {self.changes} changes, drained in {self.drained_seconds:.1f} s "
            f"({self.limit_percent:.1f} % of the limit), "
            f"429s {self.throttled} ({self.throttled_percent:.2f} %), "
            f"dead-lettered {self.dead_lettered}, quarantined {self.quarantined}, "
            f"duplicates {self.duplicates}, "
            f"other location p99 delay {self.other_p99:.1f} s"
        )

    def goals_met(self) -> bool:
        return (
            self.limit_percent >= 90
            and self.throttled_percent < 1
            and self.dead_lettered == self.quarantined == self.duplicates == self.missing == 0
            and self.other_p99 < 10
        )


def _message(appointment_id: str, location: str) -> dict[str, Any]:
    webhook_id = f"bulk-{appointment_id}-{uuid.uuid4().hex[:8]}"
    webhook = {
        "type": "AppointmentUpdate",
        "locationId": location,
        "webhookId": webhook_id,
        "appointment": {"id": appointment_id, "calendarId": "SoakCal001", "appointmentStatus": "confirmed"},
    }
    received = rfc3339(datetime.now(UTC))
    message = IngestMessage(body=json.dumps(webhook), received_at=received, dedupe_id=webhook_id)
    return {
        "Id": uuid.uuid4().hex[:20],
        "MessageBody": message.encode(),
        "MessageGroupId": appointment_id,
        "MessageDeduplicationId": webhook_id,
    }


def _send(sqs: Any, url: str, entries: list[dict[str, Any]]) -> None:
    for start in range(0, len(entries), 10):
        response = sqs.send_message_batch(QueueUrl=url, Entries=entries[start : start + 10])
        if response.get("Failed"):
            raise RuntimeError(f"ingest write failed: {response['Failed'][:1]}")


def _budget_granted(dynamodb: Any, table: str | None, location: str) -> int | None:
    """Tokens the shared budget handed out today for ``location`` (its ``used``): against the
    requests made, what leases granted and nobody spent."""
    if not table:
        return None
    item = dynamodb.get_item(TableName=table, Key={"id": {"S": f"budget#{location}"}}, ConsistentRead=True)
    return int(item.get("Item", {}).get("used", {}).get("N", "0"))


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def run_bulk(config: BulkConfig, say: Callable[[str], None] = print) -> BulkResult:
    from dev.fakes.sandbox import SandboxServer  # noqa: PLC0415
    from dev.stack.awslocal import create_resources  # noqa: PLC0415

    sandbox = SandboxServer(rate_limit_burst=100, rate_limit_interval_ms=10_000).start()
    a_ids = [f"BulkA{i:015d}" for i in range(config.changes)]
    for index, appointment_id in enumerate(a_ids):
        sandbox.put_appointment(appointment_event(appointment_id, LOCATION_A, index))
    log_dir = Path(tempfile.mkdtemp(prefix="soak-bulk-"))
    sent_b: dict[str, float] = {}
    try:
        with (
            children() as procs,
            (log_dir / "workers.log").open("w") as worker_log,
            mock.patch.dict(os.environ),
        ):
            moto, endpoint = start_moto_process()
            procs.append(moto)
            stack = create_resources(endpoint, suffix=f"bulk{uuid.uuid4().hex[:6]}")
            sqs = stack.client("sqs")
            env = stack.env(
                sandbox.url,
                output_mode="queue",
                POWERTOOLS_METRICS_DISABLED="true",
                POWERTOOLS_LOG_LEVEL="WARNING",
                POWERTOOLS_TRACE_DISABLED="true",
                SOAK_RECEIVE_LOCK=str(log_dir / "receive.lock"),
                # as if deployed with EnricherMaximumConcurrency = the processes run here
                ENRICHER_MAXIMUM_CONCURRENCY=str(config.concurrency),
            )
            collector = Collector(
                sqs,
                {
                    "records": stack.enriched_queue_url,
                    "quarantine": stack.quarantine_queue_url,
                    "dlq": stack.ingest_dlq_url,
                },
            ).start()
            workers = [
                start_worker_process(env, timeout_seconds=60, log=worker_log)
                for _ in range(config.concurrency)
            ]
            procs.extend(workers)
            time.sleep(2.0)  # cold starts
            say(
                f"bulk: {config.changes} changes in {LOCATION_A} within {config.send_seconds:g} s, "
                f"{config.concurrency} enricher processes"
            )
            stop_b = threading.Event()

            def other_location() -> None:
                n = 0
                while not stop_b.is_set():
                    appointment_id = f"BulkB{n:015d}"
                    sandbox.put_appointment(appointment_event(appointment_id, LOCATION_B, n))
                    entry = _message(appointment_id, LOCATION_B)
                    sent_b[appointment_id] = time.time()
                    _send(sqs, stack.ingest_queue_url, [entry])
                    n += 1
                    stop_b.wait(config.other_every)

            depths: list[str] = []

            def sample_depth() -> None:
                """The ingest queue every 10 s: messages visible (waiting to be received) and in
                flight (being processed, or handed back until budget returns)."""
                names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
                while not stop_b.wait(10.0):
                    got = sqs.get_queue_attributes(QueueUrl=stack.ingest_queue_url, AttributeNames=names)
                    attrs = got.get("Attributes", {})
                    depths.append("/".join(attrs.get(name, "?") for name in names))

            b_thread = threading.Thread(target=other_location, name="bulk-other", daemon=True)
            depth_thread = threading.Thread(target=sample_depth, name="bulk-depth", daemon=True)
            started = time.time()
            b_thread.start()
            depth_thread.start()
            per_slice = max(10, config.changes // max(1, int(config.send_seconds)))
            for start in range(0, len(a_ids), per_slice):
                _send(
                    sqs,
                    stack.ingest_queue_url,
                    [_message(i, LOCATION_A) for i in a_ids[start : start + per_slice]],
                )
                time.sleep(
                    max(
                        0.0,
                        started + (start + per_slice) / config.changes * config.send_seconds - time.time(),
                    )
                )
            sent_all = time.time() - started
            deadline = started + config.timeout

            def a_done() -> int:
                """Location A's changes published, each once however often it was (a duplicate
                must not end the wait while another change is still queued)."""
                with collector.data.lock:
                    records = collector.data.records
                    return len({r.get("appointmentId") for r in records if r.get("locationId") == LOCATION_A})

            while a_done() + len(collector.data.quarantine) + len(collector.data.ingest_dlq) < config.changes:
                if time.time() > deadline or any(w.poll() is not None for w in workers):
                    break
                time.sleep(0.5)
            stop_b.set()
            b_thread.join(5)
            time.sleep(3.0)  # the last B records
            collector.stop()
            granted = _budget_granted(stack.client("dynamodb"), env.get("BUDGET_TABLE_NAME"), LOCATION_A)
    finally:
        log = sandbox.requests_log()
        sandbox.stop()
    data = collector.data
    a_records = [r for r in data.records if r.get("locationId") == LOCATION_A]
    a_requests = [e for e in log if e["path"].startswith(PATH + "BulkA")]
    first = min((e["time"] for e in a_requests), default=started)
    last_record = max((datetime.fromisoformat(r["enrichedAt"]).timestamp() for r in a_records), default=first)
    drained = max(0.001, last_record - first)
    accepted_a = sum(1 for e in a_requests if e["status"] == 200)
    upstream = [e for e in log if e["path"].startswith(PATH)]
    webhook_counts = Counter(r.get("webhookId") for r in data.records)
    b_sent_and_delay = sorted(
        (
            sent_b[r["appointmentId"]] - started,
            datetime.fromisoformat(r["enrichedAt"]).timestamp() - sent_b[r["appointmentId"]],
        )
        for r in data.records
        if r.get("locationId") == LOCATION_B and r.get("appointmentId") in sent_b
    )
    delays = [delay for _, delay in b_sent_and_delay]
    windows = Counter(int((e["time"] - first) // 10) for e in a_requests if e["status"] == 200)
    per_window = [windows.get(i, 0) for i in range(int(drained // 10))]  # whole 10 s windows only
    notes = [
        f"location A's {config.changes} changes written to the ingest queue in {sent_all:.1f} s",
        f"location A: {len(a_requests)} upstream requests, {granted} tokens leased from the shared"
        " bucket (the rest: the containers' own shares, which are counted nowhere)",
        "location A requests per 10 s window: "
        + (
            f"min {min(per_window)}, median {sorted(per_window)[len(per_window) // 2]}, max {max(per_window)}"
            if per_window
            else "-"
        ),
        "ingest queue every 10 s, visible/in flight: " + ", ".join(depths),
        "location B delay by when sent (s after the start: delay): "
        + ", ".join(
            f"{at:.0f}: {delay:.1f}" for at, delay in b_sent_and_delay[:: max(1, len(b_sent_and_delay) // 12)]
        ),
    ]
    return BulkResult(
        notes=notes,
        changes=config.changes,
        drained_seconds=drained,
        limit_percent=100.0 * accepted_a / drained / LIMIT_PER_SECOND,
        upstream=len(upstream),
        throttled=sum(1 for e in upstream if e["status"] == 429),
        dead_lettered=len(data.ingest_dlq),
        quarantined=len(data.quarantine),
        duplicates=sum(n - 1 for n in webhook_counts.values() if n > 1),
        missing=config.changes - len({r["appointmentId"] for r in a_records}),
        other_p99=_p99(delays),
        concurrency=config.concurrency,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.soak.bulk", description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument(
        "--concurrency", type=int, action="append", help="enricher processes (repeatable); default 5 and 20"
    )
    parser.add_argument("--send-seconds", type=float, default=30.0)
    parser.add_argument("--other-every", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--no-goals", action="store_true", help="report only; exit 0 whatever the figures")
    args = parser.parse_args(argv)
    ok = True
    for concurrency in args.concurrency or [5, 20]:
        result = run_bulk(
            BulkConfig(args.changes, concurrency, args.send_seconds, args.other_every, args.timeout),
            say=lambda text: print(text, flush=True),
        )
        if result.missing:
            print(f"bulk: {result.missing} changes of location A never published", flush=True)
        print(f"bulk ({concurrency} processes, {result.upstream} upstream requests):", flush=True)
        for note in result.notes:
            print(f"  {note}", flush=True)
        print(result.line(), flush=True)
        ok = ok and result.goals_met()
    return 0 if ok or args.no_goals else 1


if __name__ == "__main__":
    sys.exit(main())
