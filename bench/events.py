"""Inputs for the measured processes, built in the parent so no probe pays for signing them.

* API Gateway HTTP API v2 events carrying a webhook signed with the dev Ed25519 key;
* Lambda SQS event records carrying the receiver's ingest message for a webhook.

Every webhook gets a fresh ``webhookId`` so FIFO deduplication and the idempotency table never
turn a measured record into a cheap duplicate.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.services import sample_event
from dev.fakes.signing import ingest_record, iso_timestamp, make_webhook, signed_headers, webhook_snapshot
from dev.stack.gateway import build_http_api_event


def webhook_body(appointment_id: str, location_id: str, kind: str = "AppointmentUpdate") -> bytes:
    snapshot = webhook_snapshot(sample_event(), id=appointment_id)
    return make_webhook(kind, snapshot, location_id, webhook_id=str(uuid.uuid4()))


def api_event(appointment_id: str, location_id: str) -> dict[str, Any]:
    """A signed ``POST /webhooks/appointments`` as API Gateway hands it to the receiver."""
    body = webhook_body(appointment_id, location_id)
    return build_http_api_event(body=body, headers=signed_headers(body))


def sqs_record(appointment_id: str, location_id: str, kind: str = "AppointmentUpdate") -> dict[str, Any]:
    """One ``Records[]`` entry as the ingest queue's event source mapping delivers it."""
    return ingest_record(
        webhook_body(appointment_id, location_id, kind),
        iso_timestamp(),
        message_id=str(uuid.uuid4()),
        receipt=uuid.uuid4().hex,
        sent_ms=int(time.time() * 1000),
        sequence=int(str(uuid.uuid4().int)[:20]),
    )


def sqs_event(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": list(records)}


def distinct_batch(appointment_ids: Sequence[str], location_id: str) -> dict[str, Any]:
    """One record per appointment (10 appointments -> 10 fetches)."""
    return sqs_event([sqs_record(a, location_id) for a in appointment_ids])


def same_appointment_batch(appointment_id: str, location_id: str, size: int = 10) -> dict[str, Any]:
    """``size`` updates of one appointment in one batch (one FIFO group)."""
    return sqs_event([sqs_record(appointment_id, location_id) for _ in range(size)])


def write_jsonl(path: Path, items: Iterator[dict[str, Any]]) -> Path:
    with path.open("w") as out:
        for item in items:
            out.write(json.dumps(item, separators=(",", ":")))
            out.write("\n")
    return path


def write_batch_pairs(
    path: Path,
    ids: list[str],
    location: str,
    count: int,
    spread: Sequence[Sequence[str]] | None = None,
    local: Sequence[str] = (),
    quiet: Sequence[Sequence[Sequence[str]]] = (),
) -> Path:
    """``count`` lines of {"distinct": 10 appointments, "same": 10 updates of one} SQS batches.

    With ``spread`` ((appointment id, location id) pairs) the distinct batch is those, each in its
    own location: a batch of ten in one location is more than one lease of the fleet budget (five
    tokens) and measures the budget's pacing (``make soak-bulk``'s subject), not the pipeline. The
    ten ``local`` ids (in ``location``) make the ``local`` batch, priced apart (past the
    container's own share, leases: what the budget costs when a location is busy). ``quiet``
    sets of ten (appointment id, location id) make the ``quiet`` batch, the next set each line
    (``bench.services.quiet_sets``)."""
    return write_jsonl(
        path,
        (
            {
                "distinct": (
                    sqs_event([sqs_record(a, loc) for a, loc in spread])
                    if spread
                    else distinct_batch(ids, location)
                ),
                "same": same_appointment_batch(ids[i % len(ids)], location),
                **({"local": distinct_batch(local, location)} if local else {}),
                **(
                    {"quiet": sqs_event([sqs_record(a, loc) for a, loc in quiet[i % len(quiet)]])}
                    if quiet
                    else {}
                ),
            }
            for i in range(count)
        ),
    )


def write_spread_batches(path: Path, appointments: Sequence[Sequence[str]], count: int) -> Path:
    """``count`` lines of {"distinct": one batch of one record per (appointment id, location id)}:
    the related-entity bench's batches, each appointment in its own location."""
    return write_jsonl(
        path,
        ({"distinct": sqs_event([sqs_record(a, loc) for a, loc in appointments])} for _ in range(count)),
    )
