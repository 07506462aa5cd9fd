"""The related-entity soak at a size the suite can afford (``make soak`` runs the full mix,
``python -m dev.soak.related``): every record carries all four entities, and once the caches are
warm the upstream requests per record stay within the goal."""

from __future__ import annotations

import pytest

from dev.soak.related import RelatedSoakConfig, run

pytestmark = pytest.mark.integration


def test_a_small_related_soak_stays_within_the_request_goal() -> None:
    config = RelatedSoakConfig(events=200, locations=2, calendars=4, users=4, contacts=40, seed=3)
    result = run(config)
    assert result.records == config.events and result.incomplete == 0
    assert result.steady_per_record <= config.max_per_record
    # Each entity fetched once per container (one container here): the cache did the rest.
    assert result.by_kind["contacts"] <= config.contacts
    assert result.by_kind["users"] <= config.locations * config.users
    assert result.by_kind["locations"] == config.locations
