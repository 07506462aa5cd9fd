"""Secret scan: a whole pipeline run leaks no token, signature or key material.

The PowerLeads token is a recognisable value held in Secrets Manager (moto). Both handlers run at
Powertools DEBUG; the run covers success, a 401 (the enricher re-reads the secret), then an
upstream 500, then success, an upstream 422 (quarantine) and a rejected
webhook. Everything the run leaves behind is then searched: captured stdout/stderr (Powertools'
JSON log lines), every log record of the product's loggers, the enriched records with their
attributes, and the quarantine messages' attributes.

The quarantine message *body* is the original ingest message and carries the webhook's signature
headers by design (so the message can be re-verified on redrive); signatures are not secrets, but
they are also not allowed anywhere else.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid

import pytest
import requests

from dev.awslocal import KEYS_DIR
from dev.lambda_loader import load_handler
from dev.poller import SqsPoller
from dev.sandbox import Fault
from dev.signing import make_webhook, signed_headers

pytestmark = pytest.mark.integration

LOCATION = "0007BWpSzSwfiuSl0tR2"
OK_ID = "Hc3Jd8Fe2Gh5Ki9Lm0Np"
REJECTED_ID = "Qa4Rb6Sc8Td0Ue2Vf4Wg"


def _key_fragments() -> list[str]:
    """PEM markers and 24-character pieces of every dev key's base64 body (public and private)."""
    fragments = ["-----BEGIN", "PRIVATE KEY", "PUBLIC KEY-----"]
    for path in sorted(KEYS_DIR.glob("*.pem")):
        body = "".join(line for line in path.read_text().splitlines() if not line.startswith("-----"))
        fragments.extend(body[i : i + 24] for i in range(0, len(body) - 24, 24))
    return fragments


def test_a_pipeline_run_leaks_no_token_signature_or_key(
    stack_env, local_stack, sandbox, monkeypatch, capfd, caplog
) -> None:
    token = f"pl-SECRET-{uuid.uuid4().hex}"
    sandbox.add_token(token)
    local_stack.set_token(token)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    caplog.set_level(logging.DEBUG, logger="appointment-enricher")
    caplog.set_level(logging.DEBUG, logger="appointment_enricher")
    caplog.set_level(logging.DEBUG, logger="dev")

    from dev.gateway import Gateway  # noqa: PLC0415

    webhook = load_handler("webhook")
    enricher = load_handler("enricher")
    sent_signatures: list[str] = []
    with Gateway(webhook) as gateway:
        bodies = [
            make_webhook("AppointmentUpdate", {"id": OK_ID}, LOCATION),
            make_webhook("AppointmentCreate", {"id": REJECTED_ID}, LOCATION),
            make_webhook("AppointmentDelete", {"id": "Zy1Xw3Vu5Ts7Rq9Po2Nm"}, LOCATION),
        ]
        for body in bodies:
            headers = signed_headers(body, "both")
            sent_signatures += [v for k, v in headers.items() if k.startswith("x-")]
            assert (
                requests.post(gateway.webhook_url, data=body, headers=headers, timeout=30).status_code == 202
            )
        forged = make_webhook("AppointmentUpdate", {"id": OK_ID}, LOCATION)
        bad = {"content-type": "application/json", "x-ghl-signature": base64.b64encode(b"\x07" * 64).decode()}
        sent_signatures.append(bad["x-ghl-signature"])
        assert requests.post(gateway.webhook_url, data=forged, headers=bad, timeout=30).status_code == 401

    sandbox.queue_faults([Fault.error(401), Fault.error(500)], event_id=OK_ID)
    sandbox.queue_faults([Fault.error(422)], event_id=REJECTED_ID)
    poller = SqsPoller(enricher, local_stack.ingest_queue_url, sqs_client=local_stack.client("sqs"))
    for _ in range(10):
        if not poller.poll_once():
            break
    records = local_stack.drain(local_stack.enriched_queue_url)
    quarantined = local_stack.drain(local_stack.quarantine_queue_url)
    assert len(records) == 2 and len(quarantined) == 1  # the run really covered both paths
    assert sandbox.count("/calendars/events/appointments/") >= 4  # 401, 500, 200, 422

    captured = capfd.readouterr()
    haystacks = {
        "stdout": captured.out,
        "stderr": captured.err,
        "log records": "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records),
        "records": "\n".join(
            json.dumps({"body": m["Body"], "attributes": m.get("MessageAttributes")}) for m in records
        ),
        "quarantine attributes": json.dumps([m.get("MessageAttributes") for m in quarantined]),
    }
    assert '"level":"DEBUG"' in captured.out or "DEBUG" in haystacks["log records"], (
        "DEBUG logging was not on: the scan would prove less than it claims"
    )
    needles = {
        "token": [token, base64.b64encode(token.encode()).decode()],
        "signature": sent_signatures,
        "key material": _key_fragments(),
    }
    leaks = [
        f"{kind} found in {where}: {needle[:16]}..."
        for where, text in haystacks.items()
        for kind, values in needles.items()
        for needle in values
        if needle and needle in text
    ]
    assert not leaks, "\n".join(leaks)
