"""Soak of the reconciler: webhooks that never arrive, then one reconcile pass recovers them.

    python -m dev.soak.webhooks --reconcile --events 2000      # make soak-reconcile
    python -m dev.soak.reconcile --events 300         # the version the test suite runs

Appointments change in the sandbox PowerLeads API (each change a newer ``dateUpdated``, some end
deleted) and a webhook is sent for every change through the local gateway -> WebhookFunction ->
IngestQueue.fifo -> EnricherFunction -> a FIFO output queue (group = appointment, so the *last*
record of each appointment is well defined). Two kinds of loss, both seeded:

* ``--drop`` (5 %): the sender never delivers the webhook (a delivery lost upstream), and for
  ``--silent`` (3 %) of the appointments it delivers none at all;
* ``--outage`` (5 % of the sends, one stretch): the intake answers 503 and the sender treats it as
  final (HighLevel documents retries for 429 only; a Lambda crash or timeout is such a 5xx).

Once the pipeline is idle, the loss is measured (appointments whose last record is missing or
stale against the sandbox's final state), one reconcile pass runs (the ReconcilerFunction handler,
sweeping every soak location), the pipeline drains again, and the check is repeated: it must find
zero missing and zero stale. The run fails when there was no loss to recover (it proved nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from dev.soak.stack import create_fifo_queue
from dev.stack.reconcile_local import recent_event
from dev.stack.sqs import QueueReader

EXIT_OK, EXIT_UNRECOVERED, EXIT_INFRA = 0, 1, 2


@dataclass
class ReconcileSoakConfig:
    events: int = 2000
    per_appointment: int = 5
    locations: int = 0  # 0: one per 10 appointments
    drop: float = 0.05
    outage: float = 0.05
    silent: float = 0.03  # appointments none of whose webhooks is ever sent
    senders: int = 4
    seed: int = 5
    timeout: float = 600.0


@dataclass
class Change:
    appointment_id: str
    location_id: str
    seq: int
    kind: str  # AppointmentCreate | AppointmentUpdate | AppointmentDelete
    dropped: bool


@dataclass
class Outcome:
    """What the sender saw: how many changes were sent, dropped, lost to the outage."""

    sent: int = 0
    accepted: int = 0
    dropped: int = 0
    outage: int = 0
    other: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def plan(config: ReconcileSoakConfig) -> list[list[Change]]:
    """Per sender lane, the changes in send order (an appointment's changes stay in order)."""
    rng = random.Random(config.seed)
    run = uuid.uuid4().hex[:6]
    n_appointments = max(1, config.events // config.per_appointment)
    n_locations = config.locations or max(1, n_appointments // 10)
    sequences: list[list[Change]] = []
    for index in range(n_appointments):
        appointment_id = f"Rsk{run}A{index:05d}"
        location_id = f"Rsk{run}L{index % n_locations:03d}"
        deleted = rng.random() < 0.1
        silent = rng.random() < config.silent
        kinds = ["AppointmentCreate"] + ["AppointmentUpdate"] * (config.per_appointment - 1)
        if deleted:
            kinds[-1] = "AppointmentDelete"
        sequences.append(
            [
                Change(appointment_id, location_id, seq, kind, silent or rng.random() < config.drop)
                for seq, kind in enumerate(kinds)
            ]
        )
    lanes: list[list[Change]] = [[] for _ in range(config.senders)]
    for lane_index in range(config.senders):
        mine = sequences[lane_index :: config.senders]
        # Round-robin over this lane's appointments: changes of many appointments interleave.
        for group in itertools.zip_longest(*mine):
            lanes[lane_index].extend(c for c in group if c is not None)
    return lanes


class Upstream:
    """Applies a change to the sandbox (the truth) and builds its webhook."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self._clock = itertools.count()
        self._base = datetime.now(UTC)
        self._lock = threading.Lock()

    def apply(self, change: Change) -> bytes:
        from dev.fakes.signing import make_webhook, webhook_snapshot  # noqa: PLC0415

        with self._lock:
            updated = self._base + timedelta(milliseconds=next(self._clock))
        index = int(change.appointment_id[-5:])
        event = recent_event(
            change.appointment_id,
            change.location_id,
            f"RskCal{index // 7 % 3}",  # up to 3 calendars per location
            start_in=timedelta(days=1 + index % 60),
            updated=updated,
            title=f"seq {change.seq}",
        )
        if change.kind == "AppointmentDelete":
            self.sandbox.delete_appointment(change.appointment_id)
            event["deleted"] = True
        else:
            self.sandbox.put_appointment(event)
        return make_webhook(change.kind, webhook_snapshot(event), change.location_id)


class OutageSwitch:
    """Wraps the webhook handler: while ``on``, the intake answers 503 (the handler never runs)."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        self.handler = handler
        self.on = False

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        if self.on:
            return {"statusCode": 503, "body": json.dumps({"error": "outage", "message": "intake down"})}
        return self.handler(event, context)


def send(
    url: str, lanes: list[list[Change]], upstream: Upstream, switch: OutageSwitch, outage: float
) -> Outcome:
    """Every change applied upstream; its webhook sent unless dropped; 5xx is final (no retry)."""
    import requests  # noqa: PLC0415

    from dev.fakes.signing import signed_headers  # noqa: PLC0415

    total = sum(len(lane) for lane in lanes)
    start = int(total * 0.4)
    stretch = range(start, start + int(total * outage))
    counter = itertools.count()
    outcome = Outcome()

    def lane_worker(lane: list[Change]) -> None:
        session = requests.Session()
        for change in lane:
            body = upstream.apply(change)
            position = next(counter)
            with outcome.lock:
                switch.on = position in stretch
            if change.dropped:
                with outcome.lock:
                    outcome.dropped += 1
                continue
            response = session.post(url, data=body, headers=signed_headers(body), timeout=15)
            with outcome.lock:
                outcome.sent += 1
                if response.status_code == 202:
                    outcome.accepted += 1
                elif response.status_code == 503:
                    outcome.outage += 1
                else:
                    outcome.other[response.status_code] = outcome.other.get(response.status_code, 0) + 1

    threads = [threading.Thread(target=lane_worker, args=(lane,), daemon=True) for lane in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    switch.on = False
    return outcome


def final_states(sandbox: Any, appointment_ids: set[str]) -> dict[str, tuple[str, bool]]:
    """(dateUpdated, deleted) of every soak appointment, as the sandbox holds it at the end."""
    with sandbox._lock:
        live = {k: v for k, v in sandbox._appointments.items() if k in appointment_ids}
        gone = {k: v for k, v in sandbox._tombstones.items() if k in appointment_ids}
    states = {k: (str(v["dateUpdated"]), False) for k, v in live.items()}
    states.update({k: (str(v["dateUpdated"]), True) for k, v in gone.items()})
    return states


def compare(
    states: Mapping[str, tuple[str, bool]], last: Mapping[str, dict[str, Any]]
) -> tuple[list[str], list[str]]:
    """(missing, stale): no record of a live appointment / a last record that is not the final state.

    A final delete is current when the last record is ``deleted``; a live appointment when the last
    record's ``appointment.dateUpdated`` is the sandbox's (the same instant).
    """
    from appointment_enricher.wire import try_upstream_time  # noqa: PLC0415

    missing, stale = [], []
    for appointment_id, (date_updated, deleted) in sorted(states.items()):
        record = last.get(appointment_id)
        if record is None:
            if not deleted:  # created and deleted unseen: nothing was published, nothing to retract
                missing.append(appointment_id)
            continue
        if deleted:
            current = bool(record.get("deleted"))
        else:
            published = try_upstream_time((record.get("appointment") or {}).get("dateUpdated"))
            current = not record.get("deleted") and published == try_upstream_time(date_updated)
        if not current:
            stale.append(appointment_id)
    return missing, stale


class LastRecords:
    """Reads the FIFO output queue in a thread (``dev.stack.sqs.QueueReader``), keeping the last record
    per appointment."""

    def __init__(self, sqs: Any, url: str) -> None:
        self.last: dict[str, dict[str, Any]] = {}
        self.count = 0
        self.reconciled = 0
        self.changed_at = time.monotonic()
        self._reader = QueueReader(sqs, url, self._keep, name="last-records")

    def start(self) -> LastRecords:
        self._reader.start()
        return self

    def stop(self) -> None:
        self._reader.stop()

    def _keep(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            record = json.loads(message["Body"])
            self.last[str(record.get("appointmentId"))] = record
            self.count += 1
            self.reconciled += record.get("trigger") == "reconcile"
        self.changed_at = time.monotonic()


def wait_idle(sqs: Any, ingest_url: str, records: LastRecords, deadline: float, quiet: float = 3.0) -> bool:
    """The ingest queue empty (visible and in flight) and no record for ``quiet`` seconds."""
    while time.monotonic() < deadline:
        attrs = sqs.get_queue_attributes(
            QueueUrl=ingest_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        depth = sum(int(v) for v in attrs.values())
        if depth == 0 and time.monotonic() - records.changed_at > quiet:
            return True
        time.sleep(0.5)
    return False


@dataclass
class ReconcileSoakResult:
    figures: dict[str, Any]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def run_reconcile_soak(
    config: ReconcileSoakConfig, say: Callable[[str], None] = print
) -> ReconcileSoakResult:
    from dev.fakes.lambda_context import make_context  # noqa: PLC0415
    from dev.fakes.lambda_loader import load_handler  # noqa: PLC0415
    from dev.fakes.sandbox import SandboxServer  # noqa: PLC0415
    from dev.stack.awslocal import create_resources, start_moto_server  # noqa: PLC0415
    from dev.stack.gateway import Gateway  # noqa: PLC0415
    from dev.stack.poller import SqsPoller  # noqa: PLC0415
    from dev.stack.reconcile_local import reconciler_env  # noqa: PLC0415

    started = time.monotonic()
    deadline = started + config.timeout
    lanes = plan(config)
    changes = [c for lane in lanes for c in lane]
    appointment_ids = {c.appointment_id for c in changes}
    locations = sorted({c.location_id for c in changes})
    problems: list[str] = []
    with contextlib.ExitStack() as stack_cleanup, mock.patch.dict(os.environ):  # restored afterwards (pytest)
        server, endpoint = start_moto_server()
        stack_cleanup.callback(server.stop)
        stack = create_resources(endpoint, suffix=f"rsk{uuid.uuid4().hex[:6]}", visibility_timeout=10)
        sqs = stack.client("sqs")
        ordered_url = create_fifo_queue(sqs, f"EnrichedLast-{stack.suffix}.fifo")
        sandbox = SandboxServer().start()
        stack_cleanup.callback(sandbox.stop)
        env = stack.env(
            sandbox.url,
            output_mode="queue",
            OUTPUT_QUEUE_URL=ordered_url,
            POWERTOOLS_METRICS_DISABLED="true",
            POWERTOOLS_LOG_LEVEL="ERROR",
        )
        env.update(reconciler_env(env, stack.ledger_table_name, *locations))
        os.environ.update(env)
        switch = OutageSwitch(load_handler("webhook"))
        gateway = Gateway(switch).start()
        stack_cleanup.callback(gateway.stop)
        poller = SqsPoller(
            load_handler("enricher"), stack.ingest_queue_url, sqs_client=sqs, wait_time_seconds=1
        )
        stack_cleanup.callback(poller.start().stop)
        records = LastRecords(sqs, ordered_url).start()
        stack_cleanup.callback(records.stop)

        say(
            f"reconcile soak: {len(changes)} changes over {len(appointment_ids)} appointments in "
            f"{len(locations)} locations; drop {config.drop:.0%}, intake outage {config.outage:.0%} of sends"
        )
        outcome = send(gateway.webhook_url, lanes, Upstream(sandbox), switch, config.outage)
        say(
            f"sent {outcome.sent} (accepted {outcome.accepted}, 503 in the outage {outcome.outage}), "
            f"never delivered {outcome.dropped}"
        )
        if not wait_idle(sqs, stack.ingest_queue_url, records, deadline):
            problems.append("the pipeline did not drain before the reconcile pass")
        states = final_states(sandbox, appointment_ids)
        missing_before, stale_before = compare(states, records.last)
        say(f"before reconcile: {len(missing_before)} appointments missing, {len(stale_before)} stale")

        sandbox.clear_log()
        t_reconcile = time.monotonic()
        summary = load_handler("reconciler")({}, make_context("ReconcilerFunction", timeout_seconds=300))
        reconcile_seconds = time.monotonic() - t_reconcile
        say(
            f"reconcile pass: enqueued {summary['enqueued']} {summary['recovered']}, "
            f"{summary['requests']} upstream requests, {summary['errors']} errors, {reconcile_seconds:.1f} s"
        )
        requests_by_location: dict[str, int] = {}
        for entry in sandbox.requests_log():  # list requests only (the enricher's fetches have no locationId)
            if "locationId=" in entry["path"]:
                location = entry["path"].split("locationId=")[1].split("&")[0]
                requests_by_location[location] = requests_by_location.get(location, 0) + 1
        if not wait_idle(sqs, stack.ingest_queue_url, records, deadline):
            problems.append("the pipeline did not drain after the reconcile pass")
        missing, stale = compare(final_states(sandbox, appointment_ids), records.last)
        # The ledger has caught up with what the pass recovered: nothing is new any more.
        second = load_handler("reconciler")({}, make_context("ReconcilerFunction", timeout_seconds=300))
        ledger_items = stack.client("dynamodb").scan(
            TableName=env["LEDGER_TABLE_NAME"],
            Select="COUNT",
            FilterExpression="begins_with(id, :p)",
            ExpressionAttributeValues={":p": {"S": "appointment#"}},
        )["Count"]

    if missing:
        problems.append(f"{len(missing)} appointments never published after reconcile: {missing[:5]}")
    if stale:
        problems.append(f"{len(stale)} appointments stale after reconcile: {stale[:5]}")
    if not (missing_before or stale_before):
        problems.append("nothing was lost before the reconcile pass: the run proved nothing")
    if second["enqueued"]:
        problems.append(f"a second reconcile pass with nothing new enqueued {second['enqueued']}")
    if summary["errors"] or summary["stoppedEarly"]:
        problems.append(f"the reconcile pass had errors or stopped early: {summary}")
    per_location = sorted(requests_by_location.values())
    figures = {
        "changes": len(changes),
        "appointments": len(appointment_ids),
        "locations": len(locations),
        "webhooksAccepted": outcome.accepted,
        "webhooksNeverDelivered": outcome.dropped,
        "webhooks503Final": outcome.outage,
        "missingBefore": len(missing_before),
        "staleBefore": len(stale_before),
        "reconcileEnqueued": summary["enqueued"],
        "reconcileRecovered": summary["recovered"],
        "reconcileRequests": summary["requests"],
        "requestsPerLocation(min/max)": f"{per_location[0]}/{per_location[-1]}" if per_location else "-",
        "reconcileSeconds": round(reconcile_seconds, 2),
        "recordsFromReconcile": records.reconciled,
        "secondPassEnqueued": second["enqueued"],
        "ledgerItems": ledger_items,
        "missingAfter": len(missing),
        "staleAfter": len(stale),
        "totalSeconds": round(time.monotonic() - started, 1),
    }
    return ReconcileSoakResult(figures, problems)


def report(result: ReconcileSoakResult, say: Callable[[str], None] = print) -> None:
    width = max(len(k) for k in result.figures)
    for key, value in result.figures.items():
        say(f"  {key:<{width}}  {value}")
    if result.ok:
        f = result.figures
        say(
            f"RECOVERED: {f['missingBefore']} missing + {f['staleBefore']} stale appointments before the "
            f"reconcile pass, 0 + 0 after (one pass, {f['reconcileRequests']} upstream requests)"
        )
    else:
        say(f"NOT RECOVERED ({len(result.problems)} problems):")
        for problem in result.problems:
            say(f"  - {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dev.soak.reconcile", description=__doc__.split("\n\n")[0]
    )
    defaults = ReconcileSoakConfig()
    parser.add_argument("--events", type=int, default=defaults.events, help="appointment changes")
    parser.add_argument("--drop", type=float, default=defaults.drop, help="share of webhooks never sent")
    parser.add_argument("--outage", type=float, default=defaults.outage, help="share of sends answered 503")
    parser.add_argument("--silent", type=float, default=defaults.silent, help="appointments with no webhook")
    parser.add_argument("--senders", type=int, default=defaults.senders)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--timeout", type=float, default=defaults.timeout)
    args = parser.parse_args(argv)
    config = ReconcileSoakConfig(
        events=args.events,
        drop=args.drop,
        outage=args.outage,
        silent=args.silent,
        senders=args.senders,
        seed=args.seed,
        timeout=args.timeout,
    )
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            result = run_reconcile_soak(config, say=lambda text: print(text, file=sys.stderr, flush=True))
    except Exception as exc:  # noqa: BLE001 - the stack could not be brought up: say so, exit 2
        print(f"reconcile soak could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INFRA
    report(result)
    return EXIT_OK if result.ok else EXIT_UNRECOVERED


if __name__ == "__main__":
    raise SystemExit(main())
