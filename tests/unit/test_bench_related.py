"""make bench's related-entity figures, without processes: the probe's request split, what the
harness collects, the cost of each build from its measured batch and AWS calls, and the rows and
section of BENCHMARKS.md (the smoke in tests/integration/test_bench_smoke.py runs it for real)."""

from __future__ import annotations

import argparse

import pytest

from bench import cost
from bench.harness import RELATED_MODES, Results, collect_related
from bench.probe import count_upstream
from bench.report import RELATED_COST_GOAL, related_costs, render
from bench.services import related_appointments

# What one batch of ten costs in AWS calls, identical for every build (the budget lease writes
# included): the builds differ in duration only, unless told.
CALLS = {
    "dynamodb:PutItem": 20,
    "dynamodb:UpdateItem": 10,
    "dynamodb:BatchWriteItem": 1,
    "sns:PublishBatch": 1,
}


def test_the_probe_counts_appointment_and_related_requests_apart() -> None:
    paths = [
        "/calendars/events/appointments/A1",
        "/contacts/C1",
        "/calendars/K1",  # Get Calendar, not the appointment
        "/users/U1",
        "/locations/L1",
        "/calendars/events?locationId=L1&calendarId=K1",  # a listing: neither
        "/_sandbox/reset",
    ]
    assert count_upstream(paths) == (1, 4)


def test_the_related_bench_gives_each_appointment_its_own_location_and_entities() -> None:
    events = related_appointments()
    assert len(events) == 10
    for field in ("id", "locationId", "contactId", "calendarId", "assignedUserId"):
        assert len({e[field] for e in events}) == 10, field


def batch(ms: list[float], related_per_batch: int, calls: dict[str, int] = CALLS) -> dict[str, object]:
    snapshot = {"calls": dict(calls), "chunks": dict(calls)}
    return {
        "distinct_ms": ms,
        "floor_ms": [100.0] * len(ms),
        "distinct_upstream": [10] * len(ms),
        "distinct_related": [related_per_batch] * len(ms),
        "distinct_aws": [snapshot] * len(ms),
    }


def results(cold_ms: float, cold_calls: dict[str, int] = CALLS) -> Results:
    r = Results()
    r.fig("receiver_p50").add(10.0, 10.0)
    r.keep("receiver_aws", {"calls": {"sqs:SendMessage": 5}, "chunks": {"sqs:SendMessage": 5}})
    r.keep("receiver_warm_n", 5)
    collect_related(r, "off", batch([200.0, 220.0, 210.0], 0), records=10)
    collect_related(r, "warm", batch([230.0, 210.0, 220.0], 0), records=10)
    collect_related(r, "cold", batch([cold_ms] * 3, 40, cold_calls), records=10)
    return r


def test_the_harness_keeps_latency_against_the_round_trip_and_requests_per_record() -> None:
    r = results(cold_ms=500.0)
    assert r.figures["related_cold"].ratio == pytest.approx(5.0)
    assert r.figures["related_cold_requests"].median == 5.0  # the appointment and four entities
    assert r.figures["related_warm_requests"].median == 1.0
    assert len(r.raw["related_off_aws"]) == 3


def test_each_build_is_priced_from_its_own_duration_and_calls() -> None:
    costs = related_costs(results(cold_ms=510.0))
    assert costs is not None and set(costs) == set(RELATED_MODES)
    extra_seconds = (510.0 - 210.0) / 1000
    gb_s = extra_seconds * 256 / 1024 * cost.PRICES["lambda_gb_second"] * 100_000  # batches per million
    assert costs["cold"]["Total"] - costs["off"]["Total"] == pytest.approx(gb_s)
    assert costs["warm"]["Total"] - costs["off"]["Total"] == pytest.approx(
        (220.0 - 210.0) / 1000 * 256 / 1024 * cost.PRICES["lambda_gb_second"] * 100_000
    )
    # The budget's writes are measured (UpdateItem): none assumed on top.
    assert "DynamoDB fleet budget writes (assumed)" not in costs["off"]
    more = dict(CALLS, **{"dynamodb:UpdateItem": 20})
    pricier = related_costs(results(cold_ms=510.0, cold_calls=more))
    assert pricier is not None
    assert pricier["cold"]["DynamoDB writes"] - costs["cold"]["DynamoDB writes"] == pytest.approx(
        10 * 100_000 * cost.PRICES["ddb_write_request_unit"]
    )


def test_nothing_measured_prices_nothing() -> None:
    assert related_costs(Results()) is None


ARGS = argparse.Namespace(runs=1, records=3, batches=3, cpu_iterations=20, related_rounds=1)


@pytest.mark.parametrize(("cold_ms", "met"), [(500.0, "**yes**"), (20_000.0, "**NO**")])
def test_the_report_has_the_rows_the_section_and_the_goal(cold_ms: float, met: str) -> None:
    r = results(cold_ms=cold_ms)
    costs = related_costs(r)
    assert costs is not None
    above = costs["cold"]["Total"] - costs["off"]["Total"]
    assert (above <= RELATED_COST_GOAL) == (met == "**yes**")
    text = render(r, ARGS, {"peer_versions": "-"}, 1.0)
    (row,) = [line for line in text.splitlines() if line.startswith("| ENRICH_RELATED all four: cost")]
    assert row.endswith(f"| {met} |") and f"+${above:,.2f}" in row
    (cold,) = [line for line in text.splitlines() if line.startswith("| ENRICH_RELATED all four (no cache")]
    assert f"| {cold_ms / 100:.2f}x |" in cold  # against one round trip of the same pair
    section = text.split("## Related entities (ENRICH_RELATED)")[1].split("\n## ")[0]
    assert "| all four, no cache (every entity fetched) |" in section
    assert "| 5.00 |" in section  # upstream requests per record without a cache
    assert ("met" if met == "**yes**" else "**missed**") in section
