"""The soak's traffic plan: every appointment's sequence of signed webhooks, duplicates, invalid
appointments and the sender lanes (all seeded), and deliveries for another marketplace app."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any


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
