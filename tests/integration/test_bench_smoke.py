"""Smoke of ``make bench``: one tiny run of every row, no timing assertions.

Keeps the bench working inside ``make test``; the peer SDK (its own venv) is skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run import main

pytestmark = pytest.mark.integration


def test_bench_writes_every_row(tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    argv = [
        "--runs",
        "1",
        "--records",
        "3",
        "--batches",
        "1",
        "--cpu-iterations",
        "20",
        "--related-rounds",
        "1",
    ]
    assert main([*argv, "--micro", "2", "--no-peer", "--output", str(output)]) == 0
    text = output.read_text()
    for heading in (
        "## Machine and versions",
        "## Results",
        "## Cost per million webhook events",
        "## Related entities (ENRICH_RELATED)",
        "## What each optimisation bought",
        "## Method",
    ):
        assert heading in text
    for row in (
        "| receiver cold start (import + init + first webhook, 202) |",
        "| enricher cold start (import + init + first batch of 1) |",
        "| enricher cold start vs peer SDK",
        "| enricher batch of 10 distinct appointments in 10 locations, upstream 100 ms |",
        "| enricher batch of 10 appointments in 10 quiet locations (each request its container's own",
        "| 10 updates to one appointment in one batch: upstream calls | 1.00 calls |",
        "| warm CPU per record: validate + enrich + serialize |",
        "| receiver peak RSS after 3 webhooks |",
        "| enricher peak RSS after 3 records |",
        "| receiver warm latency p99 |",
        "| cost per million webhook events, batches of ten appointments in ten locations, each asked every",
        "| cost per million webhook events, batches of ten appointments in one location (past the",
        "| cost per million webhook events, batches of ten appointments in ten quiet locations",
        "| Ledger write ahead of a publish (an announced and a pending appointment, ten settled marks)",
        "| Settling 10 published deliveries: write units per batch, a receipt item each",
        "| **Total** |",
        "| DynamoDB writes |",
        "| Receiver: collector off during init, then `gc.freeze()`",
        "| Enricher: collector off during init, then `gc.freeze()`: cold start |",
        "| `aws/queues.py`: refused characters as a positive class",
        "| Enricher: `ReconcilerSettings` with `defer_build`",
        "| Enricher and reconciler: `import requests` without its character-set detector",
        "| Enricher: first-receive webhooks fetched beside the batch's ledger read (`fetch_early`)",
        "| ENRICH_RELATED all four (cache warm): batch of 10 appointments in 10 locations",
        "| ENRICH_RELATED all four (no cache: 4 entity fetches per record): batch of 10",
        "| ENRICH_RELATED all four: cost per million events above the same build without",
        "| without `ENRICH_RELATED` |",
        "| Enricher: the related entities' fetcher and models (`enrich/related.py`, `entities.py`)",
        "| Enricher: settings list defaults by value (`Field(default=[])`) vs `default_factory=list`",
    ):
        assert row in text, row
    # The template's runtime: measured beside each run when a Python 3.13 is found, else said so.
    runtime = text.split("- Runtime venv (")[1].split("\n")[0]
    if "Python 3.13" in runtime:
        assert "| enricher cold start on Python 3.13, the template's runtime" in text
        assert "| receiver cold start on Python 3.13, the template's runtime" in text
    else:
        assert "not measured: no Python 3.13" in runtime, runtime
    # the fleet budget's lease writes are measured among the calls, not assumed on top
    assert "(assumed)" not in text and "dynamodb:UpdateItem" in text
    # measured without the shares too: a lease per quiet location, none with them
    assert "lease writes per batch of ten quiet locations | 10.0 calls | 0.00 calls |" in text
    # ten quiet locations: each request is its container's own share of the budget, no lease write
    quiet_calls = text.split("; product, ten quiet locations ")[1].split(";")[0]
    assert "dynamodb:PutItem" in quiet_calls and "UpdateItem" not in quiet_calls, quiet_calls
    # the ledger item stays one write unit; published deliveries need no receipt item
    assert "| 2.00 units | 1.00 units | 1.00 units less (2.0x) |" in text
    assert "| 10.0 units | 0.00 units | 10.0 units less (-) |" in text
    related = text.split("## Related entities (ENRICH_RELATED)")[1].split("\n## ")[0]
    # measured: upstream requests per record, the appointment alone, then with its four entities
    assert "| all four, cache warm | " in related and "| 1.00 | " in related
    assert "| 5.00 | " in related.split("| all four, no cache (every entity fetched) |")[1]
    assert "Not measured" not in related
    assert "not measured" not in text.split("## What each optimisation bought")[1].split("## Method")[0]


def test_bench_ledger_writes_its_section_and_make_bench_keeps_it(tmp_path: Path) -> None:
    from bench import ledger  # noqa: PLC0415
    from bench.report import kept_sections  # noqa: PLC0415

    output = tmp_path / "BENCHMARKS.md"
    output.write_text("# Benchmarks\n\nold body\n")
    assert ledger.main(["--runs", "1", "--batches", "1", "--output", str(output)]) == 0
    text = output.read_text()
    assert text.startswith("# Benchmarks") and "old body" in text
    kept = kept_sections(output)
    assert kept.startswith(ledger.START) and kept.endswith(ledger.END)
    for row in ("| off |", "| on |", "BatchGetItem 1", "Goals with the ledger on"):
        assert row in kept, row
