"""Soak of related-entity enrichment (ENRICH_RELATED = all four): upstream requests per record.

    python -m dev.soak.related                  # the last step of make soak: 50 locations
    python -m dev.soak.related --containers 4   # the same stream over four containers' caches
    python -m dev.soak.related --events 400 --locations 2 --calendars 4 --users 4 --contacts 40  # the test's

A realistic mix: ``--locations`` locations with ``--calendars`` calendars and ``--users`` users
each, ``--contacts`` contacts spread over them, and 1.5 appointments per contact, each with a
calendar, an assigned user and a contact of its location; the sandbox seeds every entity. Webhooks
(updates, a few deletes) for uniformly drawn appointments go onto the local IngestQueue.fifo
ten at a time and are processed by the EnricherFunction handler as they arrive (one batch per
ten, so batches hold different appointments and coalescing does not flatter the figure), by
``--containers`` cold-started handlers in turn, each with its own in-memory cache.

Measured: upstream requests (appointment + related) per record over the whole run and after the
warm-up (``--warmup``, a share of the events); entities fetched; every record carries all four
entities with no ``relatedErrors``. Exit 1 when the steady-state figure is above ``--max-per-record``
(1.2) or a record lacks an entity. The sandbox's per-location rate limit is lifted: the fleet budget
is another soak's subject; this one counts requests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from appointment_enricher.related import RELATED_KINDS
from appointment_enricher.wire import IngestMessage
from dev.fakes.lambda_loader import load_handler
from dev.fakes.sandbox import SandboxServer
from dev.stack.awslocal import LocalStack, start_local_stack
from dev.stack.poller import SqsPoller

EXIT_OK, EXIT_FAILED = 0, 1
SEGMENTS = ("/contacts/", "/users/", "/locations/", "/calendars/")  # /calendars/ also holds the appointment


@dataclass
class RelatedSoakConfig:
    events: int = 20_000  # 5,000 of warm-up: fewer leave contacts first seen in the measured part
    locations: int = 50
    calendars: int = 20  # per location
    users: int = 30  # per location
    contacts: int = 3_000
    containers: int = 1
    warmup: float = 0.25
    deletes: float = 0.02
    max_per_record: float = 1.2
    seed: int = 20


@dataclass
class RelatedSoakResult:
    records: int = 0
    requests: int = 0
    steady_records: int = 0
    steady_requests: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    incomplete: int = 0
    published: int = 0
    retried: int = 0
    seconds: float = 0.0

    @property
    def per_record(self) -> float:
        return self.requests / self.records if self.records else 0.0

    @property
    def steady_per_record(self) -> float:
        return self.steady_requests / self.steady_records if self.steady_records else 0.0

    def report(self, config: RelatedSoakConfig) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_kind.items()))
        return (
            f"related soak: {self.records} records, {config.containers} container(s), {self.seconds:.1f} s\n"
            f"  upstream requests per record: {self.per_record:.3f} overall, "
            f"{self.steady_per_record:.3f} after the warm-up ({self.steady_records} records)\n"
            f"  requests by endpoint: {kinds}\n"
            f"  records published: {self.published}; without all four entities: {self.incomplete}; "
            f"batch item failures: {self.retried}"
        )

    def ok(self, config: RelatedSoakConfig) -> bool:
        return (
            self.incomplete == 0
            and self.records > 0
            and self.published == self.records
            and self.steady_per_record <= config.max_per_record
        )


def _id(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789", k=19))


def appointments(config: RelatedSoakConfig, rng: random.Random) -> list[dict[str, Any]]:
    """1.5 appointments per contact, each with its location's calendar, user and contact."""
    locations = [_id(rng, "L") for _ in range(config.locations)]
    calendars = {loc: [_id(rng, "K") for _ in range(config.calendars)] for loc in locations}
    users = {loc: [_id(rng, "U") for _ in range(config.users)] for loc in locations}
    contacts = [(locations[i % len(locations)], _id(rng, "C")) for i in range(config.contacts)]
    events = []
    for n in range(config.contacts * 3 // 2):
        location, contact = contacts[n % len(contacts)] if n < len(contacts) else rng.choice(contacts)
        user = rng.choice(users[location])
        day, hour = rng.randrange(1, 28), rng.randrange(8, 18)
        events.append(
            {
                "id": _id(rng, "A"),
                "title": "Consultation",
                "calendarId": rng.choice(calendars[location]),
                "locationId": location,
                "contactId": contact,
                "groupId": "",
                "appointmentStatus": "confirmed",
                "assignedUserId": user,
                "users": [user],
                "startTime": f"2026-03-{day:02d}T{hour:02d}:00:00Z",
                "endTime": f"2026-03-{day:02d}T{hour:02d}:30:00Z",
                "dateAdded": "2026-02-01T00:00:00Z",
                "dateUpdated": "2026-02-01T00:00:00Z",
            }
        )
    return events


def _entry(event: dict[str, Any], kind: str, index: int) -> dict[str, Any]:
    webhook_id = f"soak-{index}-{uuid.uuid4().hex[:8]}"
    snapshot = {
        k: event[k] for k in ("id", "calendarId", "contactId", "assignedUserId", "startTime", "endTime")
    }
    webhook = {
        "type": kind,
        "locationId": event["locationId"],
        "webhookId": webhook_id,
        "appointment": snapshot,
    }
    body = IngestMessage(json.dumps(webhook), "2026-02-01T00:00:00Z", webhook_id)
    return {
        "Id": str(index % 10),
        "MessageBody": body.encode(),
        "MessageGroupId": event["id"],
        "MessageDeduplicationId": webhook_id,
    }


def _next(
    config: RelatedSoakConfig,
    rng: random.Random,
    booked: list[dict[str, Any]],
    sandbox: SandboxServer,
    index: int,
) -> dict[str, Any]:
    """The next webhook: an update of a live appointment, or its delete (it then gets no more)."""
    event = rng.choice(booked)
    if rng.random() >= config.deletes or len(booked) < 2:
        return _entry(event, "AppointmentUpdate", index)
    booked.remove(event)
    sandbox.delete_appointment(event["id"])
    return _entry(event, "AppointmentDelete", index)


def _upstream(sandbox: SandboxServer) -> dict[str, int]:
    return {segment.strip("/"): sandbox.count(segment) for segment in SEGMENTS}


def _complete(record: dict[str, Any]) -> bool:
    related = record.get("related") or {}
    return not record.get("relatedErrors") and all(related.get(kind) for kind in RELATED_KINDS)


def _collect(stack: LocalStack, result: RelatedSoakResult) -> None:
    """Take the records published so far off the output queue, counting those lacking an entity."""
    for message in stack.drain(stack.enriched_queue_url, 0):
        result.published += 1
        result.incomplete += not _complete(json.loads(message["Body"]))


def run(config: RelatedSoakConfig) -> RelatedSoakResult:
    rng = random.Random(config.seed)
    result = RelatedSoakResult()
    started = time.monotonic()
    with SandboxServer(rate_limit_burst=1_000_000, daily_limit=100_000_000) as sandbox:
        stack: LocalStack = start_local_stack(powerleads_api_base_url=sandbox.url)
        try:
            booked = appointments(config, rng)
            for event in booked:
                sandbox.put_appointment(event)
            env = stack.env(
                sandbox.url,
                output_mode="queue",
                ENRICH_RELATED=",".join(RELATED_KINDS),
                POWERTOOLS_METRICS_DISABLED="true",
                POWERTOOLS_LOG_LEVEL="ERROR",
            )
            with mock.patch.dict(os.environ, env):
                pollers = [
                    SqsPoller(
                        load_handler("enricher"), stack.ingest_queue_url, sqs_client=stack.client("sqs")
                    )
                    for _ in range(config.containers)
                ]
                _drive(config, rng, booked, Loop(stack, sandbox, pollers), result)
            _collect(stack, result)
        finally:
            stack.stop()
    result.seconds = time.monotonic() - started
    return result


@dataclass
class Loop:
    stack: LocalStack
    sandbox: SandboxServer
    pollers: list[SqsPoller]


def _drive(
    config: RelatedSoakConfig,
    rng: random.Random,
    booked: list[dict[str, Any]],
    loop: Loop,
    result: RelatedSoakResult,
) -> None:
    stack, sandbox, pollers = loop.stack, loop.sandbox, loop.pollers
    sqs = stack.client("sqs")
    warm_after = int(config.events * config.warmup)
    mark: dict[str, int] | None = None
    for start in range(0, config.events, 10):
        if mark is None and start >= warm_after:
            mark, result.steady_records = _upstream(sandbox), 0
        count = min(10, config.events - start)
        entries = [_next(config, rng, booked, sandbox, start + i) for i in range(count)]
        sqs.send_message_batch(QueueUrl=stack.ingest_queue_url, Entries=entries)
        poller = pollers[(start // 10) % len(pollers)]
        outstanding, empty = count, 0
        while outstanding > 0 and empty < 3:  # an empty receive is slow: stop once all are in
            messages = poller.receive()
            empty = 0 if messages else empty + 1
            kept = poller.process(messages)
            result.retried += len(kept)
            for m in messages:  # a batch item failure comes back at once (as after its visibility timeout)
                if m["MessageId"] in kept:
                    sqs.change_message_visibility(
                        QueueUrl=stack.ingest_queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                    )
            done = len(messages) - len(kept)
            outstanding -= done
            result.records += done
            result.steady_records += done if mark is not None else 0
        _collect(stack, result)  # as it goes: moto's SQS scans the whole queue on every send
    final = _upstream(sandbox)
    result.by_kind = final
    result.requests = sum(final.values())
    result.steady_requests = sum(final.values()) - sum((mark or dict.fromkeys(final, 0)).values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = RelatedSoakConfig()
    for name in ("events", "locations", "calendars", "users", "contacts", "containers", "seed"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    for name in ("warmup", "deletes", "max_per_record"):
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, type=float, default=getattr(defaults, name)
        )
    config = RelatedSoakConfig(**vars(parser.parse_args(argv)))
    result = run(config)
    print(result.report(config), flush=True)
    verdict = "OK" if result.ok(config) else "FAILED"
    figure = f"{result.steady_per_record:.3f}"
    print(f"{verdict}: steady-state requests per record {figure} (goal <= {config.max_per_record})")
    return EXIT_OK if result.ok(config) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
