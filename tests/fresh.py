"""A function's cold start in a fresh interpreter (as Lambda starts one), for tests of what its
``app.py`` imports: the contract environment it needs, and a runner that reads back the one JSON
line a probe script prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# What the enricher's and the reconciler's settings require; no AWS or PowerLeads call is made.
FUNCTION_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "Test",
    "POWERLEADS_TOKEN": "pit-" + "a" * 32,
    "OUTPUT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:records",
    "QUARANTINE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/quarantine",
    "INGEST_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/ingest.fifo",
    "LEDGER_TABLE_NAME": "ledger",
}


def run_fresh(probe: str, *args: str, env: dict[str, str]) -> dict[str, Any]:
    """Run ``probe`` with ``REPO_ROOT`` and ``args`` as its arguments, only PATH and ``env`` in its
    environment; returns the JSON object on its last line."""
    result = subprocess.run(
        [sys.executable, "-c", probe, str(REPO_ROOT), *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report
