"""Soak of the publish path: an output outage past ``maxReceiveCount``, a DLQ redrive, and a
consumer that checks every change was announced once, with the right kind, in ``sequence`` order.

    python -m dev.soak.publish_outage --appointments 200      # in `make soak`
    python -m dev.soak.publish_outage --appointments 20       # the version the test suite runs

The stack is the template's on moto server with ``OutputFifo=true`` (EnrichedTopic.fifo ->
EnrichedQueue.fifo) and the sandbox PowerLeads API; the EnricherFunction handler is driven one
batch at a time on real ReceiveMessage output (failed messages come back at once, so a message
reaches ``maxReceiveCount`` in a few batches). Phases, each appointment changed in the sandbox
and announced by a webhook (queued as the receiver queues it):

1. healthy: every appointment is created;
2. outage: every appointment is rescheduled while every publish fails (the topic is unreachable),
   until each message has moved to IngestDLQ;
3. healthy: half the appointments are reassigned (a newer webhook before the redrive);
4. the DLQ is redriven (the same bodies back on the ingest queue);
5. healthy: every appointment is cancelled.

The consumer reads EnrichedQueue and, per appointment, keeps a record only when its ``sequence``
is above the last it kept (what a consumer of an unordered queue does). Then, for every
appointment: the first kept record is ``created``; each kept record's ``change`` is what
``changes.diff`` says between the previous kept record's appointment and its own (so no change
is lost, announced twice, or reported against a state no consumer saw); the last kept record
equals the sandbox's final state. No record may arrive twice (same ``sequence``) or after a
newer one of its appointment: a redrive of an appointment that moved on meanwhile is diffed
against what was announced since and takes a new ``sequence`` (``unchanged``), so nothing is
ever dropped as older.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

EXIT_OK, EXIT_FAILED, EXIT_INFRA = 0, 1, 2
LOCATION = "SoakOutageLoc01"
T_BASE = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@dataclass
class OutageSoakConfig:
    appointments: int = 200
    max_receive_count: int = 3
    timeout: float = 600.0


@dataclass
class OutageSoakResult:
    figures: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Pipeline:
    """The enricher handler on the stack, one batch at a time (failures visible again at once)."""

    def __init__(self, handler: Callable[..., Any], stack: Any) -> None:
        from dev.stack.poller import SqsPoller  # noqa: PLC0415

        self.stack = stack
        self.sqs = stack.client("sqs")
        self.poller = SqsPoller(handler, stack.ingest_queue_url, sqs_client=self.sqs, wait_time_seconds=0)
        self.batches = 0

    def send(self, event_id: str, kind: str, snapshot: dict[str, Any]) -> str:
        from appointment_enricher.wire import IngestMessage  # noqa: PLC0415

        webhook_id = "wh-" + uuid.uuid4().hex
        body = json.dumps(
            {"type": kind, "locationId": LOCATION, "webhookId": webhook_id, "appointment": snapshot}
        )
        self.sqs.send_message(
            QueueUrl=self.stack.ingest_queue_url,
            MessageBody=IngestMessage(body, _iso(datetime.now(UTC)), webhook_id).encode(),
            MessageGroupId=event_id,
            MessageDeduplicationId=webhook_id,
        )
        return webhook_id

    def drain(self, deadline: float) -> None:
        """Process until the ingest queue is empty (failed messages retried at once)."""
        while time.monotonic() < deadline:
            messages = self.poller.receive()
            if not messages:
                return
            self.batches += 1
            kept = self.poller.process(messages)
            for message in messages:
                if message["MessageId"] in kept:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.stack.ingest_queue_url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=0,
                    )
        raise TimeoutError("the ingest queue did not drain in time")

    def redrive(self) -> int:
        """What a DLQ redrive does: every dead-lettered body back on the ingest queue."""
        moved = 0
        for message in self.stack.drain(self.stack.ingest_dlq_url, wait_seconds=0):
            group = message["Attributes"]["MessageGroupId"]
            self.sqs.send_message(
                QueueUrl=self.stack.ingest_queue_url,
                MessageBody=message["Body"],
                MessageGroupId=group,
                MessageDeduplicationId="redrive-" + message["MessageId"],
            )
            moved += 1
        return moved


class Consumer:
    """Reads EnrichedQueue.fifo; keeps, per appointment, each record newer (by sequence) than the last."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.kept: dict[str, list[dict[str, Any]]] = {}
        self.received = 0
        self.older = 0
        self.duplicates = 0

    def read(self) -> None:
        for message in self.stack.drain(self.stack.enriched_queue_url, wait_seconds=0):
            record = json.loads(message["Body"])
            self.received += 1
            mine = self.kept.setdefault(record["appointmentId"], [])
            sequence, last = record.get("sequence", 0), mine[-1].get("sequence", 0) if mine else 0
            if mine and sequence and sequence == last:
                self.duplicates += 1  # the same record again (a republish): same sequence
            elif mine and sequence < last:
                self.older += 1  # an older record after a newer one: dropped
            else:
                mine.append(record)


def check(consumer: Consumer, final: dict[str, dict[str, Any]]) -> list[str]:
    """Problems found in what the consumer kept (empty: every change announced once, in order)."""
    from appointment_enricher.changes import diff  # noqa: PLC0415

    problems: list[str] = []
    for event_id, truth in final.items():
        records = consumer.kept.get(event_id, [])
        if not records:
            problems.append(f"{event_id}: no record")
            continue
        if records[0]["change"]["kind"] != "created":
            problems.append(f"{event_id}: first record is {records[0]['change']['kind']}")
        for before, after in itertools.pairwise(records):
            expected = diff(before["appointment"], after["appointment"]).kind
            if after["change"]["kind"] != expected:
                problems.append(
                    f"{event_id}: sequence {after.get('sequence')} says {after['change']['kind']}, "
                    f"the consumer saw {expected}"
                )
        last = records[-1]["appointment"]
        for name in ("startTime", "assignedUserId", "appointmentStatus", "dateUpdated"):
            if last.get(name) != truth.get(name):
                problems.append(f"{event_id}: last record's {name} is not the final state")
    return problems


def _phase(
    pipeline: Pipeline,
    sandbox: Any,
    states: dict[str, dict[str, Any]],
    ids: list[str],
    *,
    step: int,
    change: Callable[[dict[str, Any]], None],
) -> None:
    for event_id in ids:
        event = states[event_id]
        change(event)
        event["dateUpdated"] = _iso(T_BASE + timedelta(minutes=step))
        sandbox.put_appointment(event)
        pipeline.send(event_id, "AppointmentUpdate", {"id": event_id, "dateUpdated": event["dateUpdated"]})


def run_outage_soak(config: OutageSoakConfig, say: Callable[[str], None] = print) -> OutageSoakResult:
    from dev.fakes.lambda_loader import load_function_module  # noqa: PLC0415
    from dev.fakes.sandbox import SandboxServer  # noqa: PLC0415
    from dev.stack.awslocal import create_resources, start_moto_server  # noqa: PLC0415
    from dev.stack.reconcile_local import recent_event  # noqa: PLC0415

    deadline = time.monotonic() + config.timeout
    result = OutageSoakResult()
    ids = [f"SoakOut{n:05d}{uuid.uuid4().hex[:6]}" for n in range(config.appointments)]
    with contextlib.ExitStack() as cleanup, mock.patch.dict(os.environ):
        server, endpoint = start_moto_server()
        cleanup.callback(server.stop)
        stack = create_resources(
            endpoint,
            suffix=f"pos{uuid.uuid4().hex[:6]}",
            max_receive_count=config.max_receive_count,
            parameters={"OutputFifo": "true"},
        )
        sandbox = SandboxServer().start()
        cleanup.callback(sandbox.stop)
        os.environ.update(
            stack.env(sandbox.url, POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="CRITICAL")
        )
        enricher = load_function_module("enricher")
        enricher.service.publisher.sleep = lambda _: None
        pipeline, consumer = Pipeline(enricher.lambda_handler, stack), Consumer(stack)
        say(f"publish-outage soak: {len(ids)} appointments, maxReceiveCount {config.max_receive_count}")

        states: dict[str, dict[str, Any]] = {}  # the upstream truth, as put in the sandbox
        for event_id in ids:  # 1. created
            event = recent_event(event_id, LOCATION, "SoakOutageCal1", updated=T_BASE)
            states[event_id] = event
            sandbox.put_appointment(event)
            pipeline.send(event_id, "AppointmentCreate", {"id": event_id})
        pipeline.drain(deadline)
        consumer.read()

        destination = enricher.service.publisher.destinations[0]  # 2. every publish fails
        real_topic = destination.topic_arn
        destination.topic_arn = real_topic + "-unreachable"
        try:
            _phase(pipeline, sandbox, states, ids, step=1, change=_reschedule)
            pipeline.drain(deadline)
        finally:
            destination.topic_arn = real_topic
        consumer.read()
        published_in_outage = consumer.received - len(ids)

        moved_on = ids[::2]  # 3. a newer webhook before the redrive
        _phase(pipeline, sandbox, states, moved_on, step=2, change=_reassign)
        pipeline.drain(deadline)
        consumer.read()

        redriven = pipeline.redrive()  # 4.
        pipeline.drain(deadline)
        consumer.read()

        _phase(pipeline, sandbox, states, ids, step=3, change=_cancel)  # 5.
        pipeline.drain(deadline)
        consumer.read()

        result.problems = check(consumer, states)
        if redriven != len(ids):
            result.problems.append(f"{redriven} messages dead-lettered, expected {len(ids)}")
        if published_in_outage:
            result.problems.append(f"{published_in_outage} records published during the outage")
        if consumer.duplicates:
            result.problems.append(f"{consumer.duplicates} records arrived twice (same sequence)")
        if consumer.older:
            result.problems.append(f"{consumer.older} records arrived after a newer one of their appointment")
        kinds: dict[str, int] = {}
        for records in consumer.kept.values():
            for record in records:
                kinds[record["change"]["kind"]] = kinds.get(record["change"]["kind"], 0) + 1
        result.figures = {
            "appointments": len(ids),
            "batches": pipeline.batches,
            "deadLettered": redriven,
            "recordsReceived": consumer.received,
            "recordsKept": sum(len(r) for r in consumer.kept.values()),
            "olderDropped": consumer.older,
            "duplicates": consumer.duplicates,
            **{f"kind.{k}": v for k, v in sorted(kinds.items())},
        }
    return result


def _reschedule(event: dict[str, Any]) -> None:
    for name in ("startTime", "endTime"):
        moved = datetime.fromisoformat(event[name].replace("Z", "+00:00")) + timedelta(hours=2)
        event[name] = _iso(moved)


def _reassign(event: dict[str, Any]) -> None:
    event["assignedUserId"] = "SoakOutageUser2"


def _cancel(event: dict[str, Any]) -> None:
    event["appointmentStatus"] = "cancelled"


def report(result: OutageSoakResult, say: Callable[[str], None] = print) -> None:
    say(json.dumps(result.figures, sort_keys=True))
    for problem in result.problems[:20]:
        say(f"PROBLEM {problem}")
    say("publish-outage soak: " + ("OK" if result.ok else f"FAILED ({len(result.problems)} problems)"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dev.soak.publish_outage", description=__doc__.split("\n\n")[0]
    )
    defaults = OutageSoakConfig()
    parser.add_argument("--appointments", type=int, default=defaults.appointments)
    parser.add_argument("--max-receive-count", type=int, default=defaults.max_receive_count)
    parser.add_argument("--timeout", type=float, default=defaults.timeout)
    args = parser.parse_args(argv)
    config = OutageSoakConfig(args.appointments, args.max_receive_count, args.timeout)
    say: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    warnings.filterwarnings("ignore", message="No application metrics to publish")  # Powertools, per batch
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # metric lines
            result = run_outage_soak(config, say=say)
    except Exception as exc:  # noqa: BLE001 - the stack could not be brought up or drained: say so
        print(f"publish-outage soak could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INFRA
    report(result, say=say)
    return EXIT_OK if result.ok else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
