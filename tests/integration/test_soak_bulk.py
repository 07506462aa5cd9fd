"""The small version of ``make soak-bulk``: a bulk action in one location and another location's
traffic through two enricher processes sharing the budget in DynamoDB (moto in its own process),
against the sandbox at the real limit. Counts only: the drain rate and delays depend on the
machine and are ``make soak-bulk``'s figures, not a test's."""

from __future__ import annotations

import pytest

from dev.soak.bulk import BulkConfig, run_bulk

pytestmark = pytest.mark.integration


def test_a_small_bulk_action_drains_with_nothing_lost_dead_lettered_or_duplicated() -> None:
    lines: list[str] = []
    result = run_bulk(BulkConfig(changes=120, concurrency=2, send_seconds=2, timeout=240), say=lines.append)
    assert result.missing == 0, result.line()
    assert (result.dead_lettered, result.quarantined, result.duplicates) == (0, 0, 0), result.line()
    # 1 % of ~136 requests is one 429: the small run bounds the count (the full soak-bulk checks < 1 %).
    assert result.throttled <= 3, result.line()
    assert result.upstream >= 120
    assert result.line().startswith("bulk: 120 changes, drained in ")
