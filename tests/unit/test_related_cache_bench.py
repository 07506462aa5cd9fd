"""bench.related_cache's simulation runs the enricher's own cache code: a small mix keeps its
shape (a shared cache is one container's cache; more containers, more requests; no cache, up to
four per record)."""

from __future__ import annotations

from bench.related_cache import Mix, simulate, simulate_burst

MIX = Mix(locations=5, calendars=4, users=6, contacts=200, events_per_second=1.0, hours=0.5, warmup_hours=0.1)


def test_per_container_caches_cost_more_requests_than_a_shared_one() -> None:
    one = simulate(MIX, 1, shared=False, related_ttl=3600, contact_ttl=300)
    five = simulate(MIX, 5, shared=False, related_ttl=3600, contact_ttl=300)
    shared = simulate(MIX, 5, shared=True, related_ttl=3600, contact_ttl=300)
    assert shared == one < five
    uncached = simulate(MIX, 1, shared=False, related_ttl=0, contact_ttl=0)
    assert five < uncached <= 4.0  # without a cache only a batch's own sharing is left
    assert simulate_burst(MIX, 1, shared=False, changes=200) < simulate_burst(
        MIX, 5, shared=False, changes=200
    )
