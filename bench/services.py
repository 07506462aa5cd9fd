"""The bench's backing services, out of the measured processes: moto server + resources in one
process, the sandbox API in another (``--sandbox``, started by the first).

Run as ``python -m bench.services``: prints one JSON line (the runtime-contract env, the sandbox
URL, queue ARNs, the appointment ids it serves) and serves until stdin closes. Keeping them out of
the measured processes means a handler never shares a GIL with the servers it talks to, nor do
the two servers with each other.

The sandbox's rate limiter is lifted (the bench sends thousands of fetches for one location);
the related-entity bench's appointments (``related_appointments``) are seeded with their own contact,
calendar, user and location;
everything else is the stock ``dev.fakes.sandbox`` behaviour, steered over its ``/_sandbox/`` control plane.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_APPOINTMENT = REPO_ROOT / "events" / "appointments" / "Hc3Jd8Fe2Gh5Ki9Lm0Np.json"
DISTINCT_APPOINTMENTS = 10


def appointment_ids(count: int = DISTINCT_APPOINTMENTS) -> list[str]:
    return [f"benchAppt{i:02d}" for i in range(count)]


def local_appointment_ids(count: int = DISTINCT_APPOINTMENTS) -> list[str]:
    """The one-location batch's appointments: their own, so that, as in real traffic, each is
    updated once per batch (the ids above also take the RSS run's thousand records, which would
    fill their ledger items' settled marks and price receipts that real appointments never need)."""
    return [f"benchLocalAppt{i:02d}" for i in range(count)]


def related_appointments(count: int = DISTINCT_APPOINTMENTS) -> list[dict[str, Any]]:
    """The related-entity bench's appointments: one per location, each naming its own contact,
    calendar and assigned user, so a cold cache costs four related requests per record (none
    shared within a batch: the upper bound) and no location's fleet budget binds (one appointment
    and four entities per location per batch, within one lease)."""
    events = []
    for i in range(count):
        event = copy.deepcopy(sample_event())
        user = f"benchUser{i:02d}"
        event.update(
            id=f"benchRelAppt{i:02d}",
            locationId=f"benchLocation{i:02d}",
            contactId=f"benchContact{i:02d}",
            calendarId=f"benchCalendar{i:02d}",
            assignedUserId=user,
            users=[user],
        )
        events.append(event)
    return events


SPREAD_SETS = 4


def spread_sets(sets: int = SPREAD_SETS, count: int = DISTINCT_APPOINTMENTS) -> list[list[list[str]]]:
    """Sets of ten (appointment id, location id), one location each, for benches that run
    batches in several rounds: a round per set, so each appointment is updated once per batch of
    its round only, as in real traffic (an appointment updated dozens of times within two days
    fills its ledger item's settled marks and pays receipt items instead)."""
    return [[[f"benchSpread{s}x{i:02d}", f"benchLocation{i:02d}"] for i in range(count)] for s in range(sets)]


def rss_appointments(count: int = DISTINCT_APPOINTMENTS) -> list[list[str]]:
    """The enricher's RSS run: its thousand records go to these (appointment id, location id), one
    location each, so that run measures memory, not the fleet budget's pacing of one location
    (a thousand records in one location wait for budget at 9 per second, and a wait past the
    enricher's 1 s would hand items back, which the bench's synthetic receipts cannot do)."""
    return [[f"benchRssAppt{i:02d}", f"benchRssLoc{i:02d}"] for i in range(count)]


QUIET_SETS = 24


def quiet_sets(sets: int = QUIET_SETS, count: int = DISTINCT_APPOINTMENTS) -> list[list[list[str]]]:
    """Sets of ten (appointment id, location id), each location its own and used by one set only:
    the quiet-locations batch takes the next set each time, so every request is its location's
    first in the container's window (each container's own budget share: no lease), what a
    location with a change now and then sees. The batch probe runs every set once first and
    waits out the window (``probe.QUIET_GAP_S``); 24 sets at about a second per timed pair
    outlast the window again when they cycle."""
    return [
        [[f"benchQuiet{s:02d}x{i:02d}", f"benchQuietLoc{s:02d}x{i:02d}"] for i in range(count)]
        for s in range(sets)
    ]


def sample_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads(SAMPLE_APPOINTMENT.read_text())["event"]
    return event


def seed(sandbox: Any) -> None:
    """Every appointment the bench asks for (the related ones with their four entities)."""
    base = sample_event()
    for appointment_id in [*appointment_ids(), *local_appointment_ids()]:
        event = copy.deepcopy(base)
        event["id"] = appointment_id
        sandbox.put_appointment(event)
    for spread in [*spread_sets(), *quiet_sets(), rss_appointments()]:
        for appointment_id, location_id in spread:
            sandbox.put_appointment({**copy.deepcopy(base), "id": appointment_id, "locationId": location_id})
    for event in related_appointments():
        sandbox.put_appointment(event)  # seeds its contact, calendar, user and location too


def serve_sandbox() -> int:
    """``python -m bench.services --sandbox``: the seeded sandbox alone; prints its URL, serves
    until stdin closes."""
    from dev.fakes.sandbox import SandboxServer  # noqa: PLC0415

    sandbox = SandboxServer(rate_limit_burst=10**9, daily_limit=10**9).start()
    try:
        seed(sandbox)
        print(json.dumps({"sandbox_url": sandbox.url}), flush=True)
        sys.stdin.read()
    finally:
        sandbox.stop()
    return 0


def main() -> int:
    """moto server here, the sandbox in a process of its own: PowerLeads and AWS are separate
    services, and one process would have the sandbox's answers wait behind moto's work for the
    same batch (one GIL), which neither real service does."""
    from dev.stack.awslocal import create_resources, start_moto_server  # noqa: PLC0415

    server, endpoint = start_moto_server()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.services", "--sandbox"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise SystemExit("the bench's sandbox process did not start")
        sandbox_url = json.loads(line)["sandbox_url"]
        stack = create_resources(endpoint, powerleads_api_base_url=sandbox_url)
        env = stack.env(sandbox_url)
        info = {
            "env": env,
            "sandbox_url": sandbox_url,
            "endpoint_url": endpoint,
            "ingest_queue_url": stack.ingest_queue_url,
            "ingest_queue_arn": stack.ingest_queue_arn,
            "purge_queue_urls": [stack.ingest_queue_url, stack.enriched_queue_url],
            "location_id": sample_event()["locationId"],
            "appointment_ids": appointment_ids(),
            "local_appointment_ids": local_appointment_ids(),
            "spread_sets": spread_sets(),
            "quiet_sets": quiet_sets(),
            "rss_appointments": rss_appointments(),
            # (appointment id, location id) of the related-entity bench, one location each
            "related_appointments": [[e["id"], e["locationId"]] for e in related_appointments()],
        }
        print(json.dumps(info), flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or dies)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve_sandbox() if sys.argv[1:] == ["--sandbox"] else main())
