"""End to end on the local stack: ``make demo`` as a user runs it, and the bad-signature path."""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dev.fakes.lambda_context import make_context
from dev.fakes.lambda_loader import load_function_module
from dev.fakes.sandbox_related import make_contact, make_location
from dev.fakes.signing import (
    ED25519_HEADER,
    EVENTS_DIR,
    make_webhook,
    restamp,
    signed_headers,
    webhook_snapshot,
)

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_ID = "ocQHyuzHvysMo5N5VsXc"


def test_demo_exits_zero_and_shows_the_seed_record():
    proc = subprocess.run(
        [sys.executable, "-m", "dev.stack.run", "--demo", "--port", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "DEMO OK" in proc.stdout, output
    lines = proc.stdout.splitlines()
    header = next(
        (i for i, line in enumerate(lines) if line.startswith(f"=== AppointmentCreate  {SEED_ID} ")), None
    )
    assert header is not None, output
    block = "\n".join(itertools.takewhile(lambda line: line.startswith("  "), lines[header + 1 :]))
    assert "start (UTC)     2023-09-25T10:30:00Z" in block
    assert "recurring       True" in block
    assert "trigger         webhook" in block
    assert "change          " in block  # the local stack runs with the ledger on
    # make run enables ENRICH_RELATED: names from the sandbox's seeded entities, local times
    location = make_location("0007BWpSzSwfiuSl0tR2")
    assert f"contact         {make_contact('9NkT25Vor1v4aQatFsv2', location['id'])['name']}" in block
    assert f"location        {location['name']}" in block
    assert f"timezone        {location['timezone']}" in block
    assert "start (local)   2023-09-25T" in block
    assert "-> 401" in proc.stdout  # the bad-signature webhook
    assert '{"_aws"' not in proc.stdout  # EMF lines are kept out of the readable output


def _untrusted_signature(body: bytes) -> dict[str, str]:
    headers = signed_headers(body)
    headers[ED25519_HEADER] = base64.b64encode(Ed25519PrivateKey.generate().sign(body)).decode()
    return headers


def test_bad_signature_gets_401_and_produces_no_record(gateway, poller, local_stack):
    event = json.loads((EVENTS_DIR / "appointments" / "Bx7kQ2mN9pLr4TsVw1Yz.json").read_text())["event"]
    bad_body = make_webhook("AppointmentCreate", webhook_snapshot(event), event["locationId"])
    good_body = restamp((EVENTS_DIR / "webhooks" / "create.json").read_bytes())

    bad = requests.post(
        gateway.webhook_url, data=bad_body, headers=_untrusted_signature(bad_body), timeout=10
    )
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_signature"
    # Tampered in transit: a valid signature over different bytes.
    tampered = requests.post(
        gateway.webhook_url,
        data=good_body.replace(b'"confirmed"', b'"cancelled"'),
        headers=signed_headers(good_body),
        timeout=10,
    )
    assert tampered.status_code == 401
    unsigned = requests.post(
        gateway.webhook_url, data=good_body, headers={"content-type": "application/json"}, timeout=10
    )
    assert unsigned.status_code == 401
    good = requests.post(gateway.webhook_url, data=good_body, headers=signed_headers(good_body), timeout=10)
    assert good.status_code == 202, good.text

    while poller.poll_once():
        pass
    records = [json.loads(m["Body"]) for m in local_stack.drain(local_stack.enriched_queue_url)]
    assert [r["webhookId"] for r in records] == [json.loads(good_body)["webhookId"]]
    assert all(r["appointmentId"] != event["id"] for r in records)
    assert local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0) == []


def test_sample_apigw_events_are_accepted_by_the_handler(stack_env, monkeypatch):
    """events/apigw/*.json verify against the dev keys (their timestamps age: the receiver's clock is
    set to the day they were signed; the replay window cannot exceed 30 days)."""
    module = load_function_module("webhook")
    monkeypatch.setattr(module.receiver, "now", lambda: datetime(2026, 11, 24, 4, 0, tzinfo=UTC))
    handler = module.lambda_handler
    for name in ("create", "update", "delete", "recurring-instance-rsa"):
        event = json.loads((EVENTS_DIR / "apigw" / f"{name}.json").read_text())
        response = handler(event, make_context("WebhookFunction"))
        assert response["statusCode"] == 202, (name, response)
    event = json.loads((EVENTS_DIR / "apigw" / "bad-signature.json").read_text())
    response = handler(event, make_context("WebhookFunction"))
    assert response["statusCode"] == 401
    assert json.loads(response["body"])["error"] == "invalid_signature"


def test_sample_sqs_batch_is_enriched(enricher_handler, local_stack):
    """events/sqs/batch.json is what the ingest queue delivers: every record publishes."""
    event = json.loads((EVENTS_DIR / "sqs" / "batch.json").read_text())
    result = enricher_handler(event, make_context("EnricherFunction"))
    assert result == {"batchItemFailures": []}
    records = [json.loads(m["Body"]) for m in local_stack.drain(local_stack.enriched_queue_url)]
    assert sorted(r["appointmentId"] for r in records) == sorted(
        json.loads(json.loads(r["body"])["body"])["appointment"]["id"] for r in event["Records"]
    )
