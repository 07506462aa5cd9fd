"""Is an in-memory related-entity cache per container enough, or does a shared one pay for itself?

    python -m bench.related_cache            # the figures in docs/ARCHITECTURE.md

Replays a day of webhooks through the enricher's own cache code (``enrich/related.py``:
``RelatedFetcher``, ``RelatedCache``, one ``RelatedBatch`` per batch) on a simulated clock, with
a counting source instead of HTTP: 50 locations with 20 calendars and 30 users each, 3,000
contacts, 1.5 appointments per contact, webhooks for uniformly drawn appointments (no bursts:
the least cache-friendly mix), batches of ten spread round-robin over ``k`` warm containers.
"Shared" is one cache for the whole fleet (what DynamoDB or ElastiCache would give, before
their own costs). Figures: related-entity requests per record after the first hour.

A shared cache's own price (us-east-1 list prices, ``bench/cost.py``): one BatchGetItem per batch
for its distinct entities (about 4 per record at 0.5 read unit each, eventually consistent and
under 4 KB) plus one write per miss, and a DynamoDB round trip per batch.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from appointment_enricher.enrich.related import RelatedCache, RelatedFetcher
from appointment_enricher.related import DEFAULT_CONTACT_FIELDS, RELATED_KINDS
from bench import cost

WRAPPERS = {"contact": "contact", "calendar": "calendar", "location": "location"}


class CountingSource:
    """Answers every entity at once and counts the requests a real client would have sent."""

    def __init__(self) -> None:
        self.requests = 0

    def get_related(self, kind: str, entity_id: str, location_id: str, *, deadline: float) -> dict[str, Any]:
        self.requests += 1
        body = {"id": entity_id, "name": "x", "timezone": "America/Chicago"}
        wrapper = WRAPPERS.get(kind)
        return {wrapper: body} if wrapper else body


@dataclass
class Mix:
    locations: int = 50
    calendars: int = 20
    users: int = 30
    contacts: int = 3000
    events_per_second: float = 2.0  # the fleet: ~173,000 webhooks a day
    hours: float = 3.0
    warmup_hours: float = 1.0
    seed: int = 20


def appointments(mix: Mix, rng: random.Random) -> list[SimpleNamespace]:
    locations = [f"L{i}" for i in range(mix.locations)]
    contacts = [(locations[i % mix.locations], f"C{i}") for i in range(mix.contacts)]
    booked = []
    for n in range(mix.contacts * 3 // 2):
        location, contact = contacts[n % mix.contacts] if n < mix.contacts else rng.choice(contacts)
        booked.append(
            SimpleNamespace(
                locationId=location,
                contactId=contact,
                calendarId=f"{location}K{rng.randrange(mix.calendars)}",
                assignedUserId=f"{location}U{rng.randrange(mix.users)}",
            )
        )
    return booked


def simulate(mix: Mix, containers: int, *, shared: bool, related_ttl: float, contact_ttl: float) -> float:
    """Related-entity requests per record after the warm-up."""
    rng = random.Random(mix.seed)
    booked = appointments(mix, rng)
    clock = [0.0]
    source = CountingSource()

    def fetcher() -> RelatedFetcher:
        cache = RelatedCache(related_ttl, contact_ttl, monotonic=lambda: clock[0])
        return RelatedFetcher(source, RELATED_KINDS, DEFAULT_CONTACT_FIELDS, cache)

    one = fetcher()
    fleet = [one] * containers if shared else [fetcher() for _ in range(containers)]
    batches = int(mix.events_per_second * mix.hours * 3600 / 10)
    warm_batches = int(mix.events_per_second * mix.warmup_hours * 3600 / 10)
    counted_from = 0
    for n in range(batches):
        if n == warm_batches:
            counted_from = source.requests
        clock[0] = n * 10 / mix.events_per_second
        batch = fleet[n % containers].batch(deadline=float("inf"))
        for appointment in (rng.choice(booked) for _ in range(10)):
            batch.resolve(appointment, appointment.locationId)
    return (source.requests - counted_from) / ((batches - warm_batches) * 10)


def simulate_burst(mix: Mix, containers: int, *, shared: bool, changes: int = 2000) -> float:
    """A bulk action: ``changes`` appointments of one location (one contact each) changed at once,
    drained in about 220 s (90 % of 100 requests / 10 s); related requests per record."""
    rng = random.Random(mix.seed)
    clock = [0.0]
    source = CountingSource()

    def fetcher() -> RelatedFetcher:
        return RelatedFetcher(
            source, RELATED_KINDS, DEFAULT_CONTACT_FIELDS, RelatedCache(3600, 300, monotonic=lambda: clock[0])
        )

    one = fetcher()
    fleet = [one] * containers if shared else [fetcher() for _ in range(containers)]
    burst = [
        SimpleNamespace(
            locationId="L0",
            contactId=f"C{n}",
            calendarId=f"K{rng.randrange(mix.calendars)}",
            assignedUserId=f"U{rng.randrange(mix.users)}",
        )
        for n in range(changes)
    ]
    for n in range(0, changes, 10):
        clock[0] = n * 0.11
        batch = fleet[(n // 10) % containers].batch(deadline=float("inf"))
        for appointment in burst[n : n + 10]:
            batch.resolve(appointment, appointment.locationId)
    return source.requests / changes


def shared_cache_dollars_per_million(misses_per_record: float) -> float:
    """DynamoDB as the shared cache: a BatchGetItem of ~4 items per record, a write per miss."""
    reads = 4 * 0.5 * cost.PRICES["ddb_read_request_unit"]
    writes = misses_per_record * cost.PRICES["ddb_write_request_unit"]
    return (reads + writes) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=Mix.hours)
    parser.add_argument("--rate", type=float, default=Mix.events_per_second, help="fleet webhooks per second")
    args = parser.parse_args(argv)
    mix = Mix(hours=args.hours, events_per_second=args.rate)
    print(
        f"{mix.locations} locations x ({mix.calendars} calendars, {mix.users} users), "
        f"{mix.contacts} contacts, {mix.events_per_second:g} webhooks/s for {mix.hours:g} h; "
        f"related requests per record after {mix.warmup_hours:g} h (the appointment's own fetch adds 1.0)"
    )
    print("| traffic | TTLs (related / contact) | 1 container | 2 | 5 | 10 | shared | shared's DDB $/M |")
    print("|---|---|---|---|---|---|---|---|")
    for related_ttl, contact_ttl in ((3600, 300), (3600, 3600), (0, 0)):
        row = [
            simulate(mix, k, shared=False, related_ttl=related_ttl, contact_ttl=contact_ttl)
            for k in (1, 2, 5, 10)
        ]
        shared = simulate(mix, 10, shared=True, related_ttl=related_ttl, contact_ttl=contact_ttl)
        dollars = shared_cache_dollars_per_million(shared)
        cells = " | ".join(f"{v:.3f}" for v in row)
        print(f"| uniform | {related_ttl} s / {contact_ttl} s | {cells} | {shared:.3f} | {dollars:.2f} |")
    burst = " | ".join(f"{simulate_burst(mix, k, shared=False):.3f}" for k in (1, 2, 5, 10))
    shared_burst = simulate_burst(mix, 10, shared=True)
    print(f"| bulk action, 2,000 changes in one location | default | {burst} | {shared_burst:.3f} | - |")


if __name__ == "__main__":
    main()
