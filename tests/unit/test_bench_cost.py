"""bench/cost.py prices the template's defaults: the function URL (no per-request charge) and
the fleet rate budget's own DynamoDB writes (assumed 0.1 per event); the HTTP API on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import cost
from bench.report import _delta

RECEIVER = {"sqs:SendMessage": 1.0}
ENRICHER = {"dynamodb:PutItem": 10.0, "dynamodb:BatchWriteItem": 10.0, "sns:PublishBatch": 1.0}


def price(settings: cost.Settings) -> dict[str, float]:
    return cost.per_million(
        receiver_ms=5.0,
        receiver_chunks_per_event=RECEIVER,
        enricher_batch_ms=150.0,
        enricher_chunks_per_batch=ENRICHER,
        settings=settings,
    )


def test_the_default_intake_is_the_function_url_with_no_request_charge() -> None:
    lines = price(cost.Settings())
    assert cost.Settings().intake_endpoint == "FunctionUrl"
    assert lines["HTTP API requests"] == 0.0
    http_api = price(cost.Settings(intake_endpoint="HttpApi"))
    assert http_api["HTTP API requests"] == pytest.approx(1.00)
    assert http_api["Total"] - lines["Total"] == pytest.approx(1.00)


def test_the_fleet_budget_writes_are_priced() -> None:
    lines = price(cost.Settings())
    assert "DynamoDB fleet budget writes (assumed)" not in lines  # measured among the calls
    assumed = price(cost.Settings(budget_writes_per_event=0.1))
    assert assumed["DynamoDB fleet budget writes (assumed)"] == pytest.approx(0.1 * 0.625)
    assert assumed["Total"] - lines["Total"] == pytest.approx(0.1 * 0.625)
    # both writes of a batch (ledger + receipts) are billed per request unit, 20 per 10 events
    assert lines["DynamoDB writes"] == pytest.approx(20 / 10 * 0.625)


def test_an_unknown_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="intake_endpoint"):
        price(cost.Settings(intake_endpoint="RestApi"))


def test_a_batch_write_is_billed_per_item() -> None:
    from bench.probe import _ddb_units  # noqa: PLC0415

    receipt = {"id": {"S": "receipt#w"}, "outcome": {"S": "published"}, "expiration": {"N": "1767225600"}}
    big = {"id": {"S": "x"}, "blob": {"B": b"0" * 1500}}
    request = {
        "RequestItems": {"t": [{"PutRequest": {"Item": receipt}}] * 10 + [{"PutRequest": {"Item": big}}]}
    }
    assert _ddb_units("BatchWriteItem", request) == 10 + 2
    assert _ddb_units("PutItem", {"Item": receipt}) == 1


def test_a_put_that_replaces_a_larger_item_is_billed_on_the_larger() -> None:
    """DynamoDB bills a replacing PutItem on the larger of the old and the new item."""
    from bench.probe import _ddb_units  # noqa: PLC0415

    sizes: dict[tuple[str, str], int] = {}
    big = {"id": {"S": "appointment#A"}, "blob": {"B": b"0" * 1500}}
    small = {"id": {"S": "appointment#A"}, "blob": {"B": b"0" * 100}}
    other = {"id": {"S": "appointment#B"}, "blob": {"B": b"0" * 100}}
    assert _ddb_units("PutItem", {"TableName": "t", "Item": big}, sizes) == 2
    assert _ddb_units("PutItem", {"TableName": "t", "Item": small}, sizes) == 2  # replaces 1.5 KB
    assert _ddb_units("PutItem", {"TableName": "t", "Item": small}, sizes) == 1  # replaces 0.1 KB
    assert _ddb_units("PutItem", {"TableName": "t", "Item": other}, sizes) == 1
    request = {"RequestItems": {"t": [{"PutRequest": {"Item": big}}]}}
    assert _ddb_units("BatchWriteItem", request, sizes) == 2
    assert _ddb_units("PutItem", {"TableName": "u", "Item": small}, sizes) == 1  # another table


def test_make_bench_keeps_every_section_other_tools_own(tmp_path: Path) -> None:
    from bench.report import kept_sections  # noqa: PLC0415

    output = tmp_path / "BENCHMARKS.md"
    output.write_text(
        "# Benchmarks\n\ngenerated\n\n<!-- ledger:start -->\nledger rows\n<!-- ledger:end -->\n\n"
        "more generated\n\n<!-- soak-bulk:start -->\nbulk rows\n<!-- soak-bulk:end -->\n"
    )
    assert kept_sections(output) == (
        "<!-- ledger:start -->\nledger rows\n<!-- ledger:end -->\n\n"
        "<!-- soak-bulk:start -->\nbulk rows\n<!-- soak-bulk:end -->"
    )
    assert kept_sections(tmp_path / "missing.md") == ""


def test_a_cost_difference_is_written_with_its_sign() -> None:
    assert _delta(0.1) == "+$0.10"
    assert _delta(-0.034) == "-$0.03"
    assert _delta(-0.001) == "+$0.00"  # rounds to nothing: never "+$-0.00"
    assert _delta(float("nan")) == "n/a"
