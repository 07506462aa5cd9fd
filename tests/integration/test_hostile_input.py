"""Hostile input through the local gateway (real HTTP), then proof that nothing reached upstream.

Each row gets the status README "What the receiver answers" documents. Rows that must reach the
parser are signed with the dev key the local stack trusts (an attacker holding no key stops at
401; these rows show what a compromised or buggy sender would get). Afterwards the enricher runs
over whatever was queued, and the sandbox's request log must show GETs for the valid
appointments only: no ``../``, no encoded slash, no query, no fragment, no look-alike id.
A second test puts hostile ids straight onto the ingest queue (as a redrive or a bug could) to
show the enricher refuses them too, without calling upstream.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from dev.fakes.signing import (
    ED25519_HEADER,
    RSA_HEADER,
    ingest_message,
    iso_timestamp,
    make_webhook,
    sign_ed25519,
    sign_rsa,
)

pytestmark = pytest.mark.integration

APPOINTMENTS = "/calendars/events/appointments/"
VALID_ID = "Hc3Jd8Fe2Gh5Ki9Lm0Np"  # in events/appointments, served by the sandbox
VALID_DELETE_ID = "Zy1Xw3Vu5Ts7Rq9Po2Nm"
LOCATION = "0007BWpSzSwfiuSl0tR2"
HOSTILE_IDS = {
    "dot-dot-slash": "../../oauth/token",
    "dot-dot": "..",
    "slash": "abc/def",
    "encoded-slash": "abc%2Fdef",
    "encoded-dot-dot": "%2E%2E%2F%2E%2E",
    "query": "abc?locationId=other",
    "fragment": "abc#frag",
    "cyrillic-lookalike": "Hc3Jd8Fe2Gh5Ki9Lm0N\u0440",
    "fullwidth-lookalike": "\uff28c3Jd8Fe2Gh5Ki9Lm0Np",
    "nul": "abc\x00def",
    "newline": "abc\ndef",
    "trailing-newline": VALID_ID + "\n",
    "tab": "abc\tdef",
    "del": "abc\x7f",
    "space": "abc def",
    "too-long": "a" * 129,
    "empty": "",
    "number": 12345,
    "object": {"id": "x"},
}


def _webhook(appointment_id: Any = VALID_ID, **overrides: Any) -> bytes:
    document = json.loads(make_webhook("AppointmentUpdate", {"id": "placeholder"}, LOCATION))
    document["appointment"]["id"] = appointment_id
    document.update(overrides)
    return json.dumps(document, separators=(",", ":")).encode()


def _signed(body: bytes, **extra: str) -> dict[str, str]:
    return {"content-type": "application/json", ED25519_HEADER: sign_ed25519(body), **extra}


def _nested(depth: int) -> bytes:
    return (
        b'{"type":"AppointmentUpdate","locationId":"L1","appointment":{"id":"a1","x":'
        + (b"[" * depth + b"]" * depth)
        + b"}}"
    )


def _cases() -> list[tuple[str, bytes, dict[str, str], int, str | None]]:
    """(name, body, headers, expected status, expected ``error`` code or None)."""
    good = _webhook()
    other = _webhook(title="changed")
    ed_sig = sign_ed25519(good)
    rsa_sig = sign_rsa(good)
    fake_hmac = base64.b64encode(b"\x01" * 32).decode()
    # The documented fallback: a bad x-ghl-signature does not veto a valid x-wh-signature (both
    # are HighLevel's keys; an attacker still needs one valid signature). Same body as "valid",
    # so FIFO deduplication makes it one message.
    rows: list[tuple[str, bytes, Any, int, str | None]] = [
        ("no-signature", good, {"content-type": "application/json"}, 401, "missing_signature"),
        ("forged-ed25519", good, {ED25519_HEADER: base64.b64encode(b"\x00" * 64).decode()}, 401, None),
        ("forged-rsa", good, {RSA_HEADER: base64.b64encode(b"\x00" * 512).decode()}, 401, None),
        ("valid-signature-other-body", other, {ED25519_HEADER: ed_sig}, 401, "invalid_signature"),
        ("valid-rsa-other-body", other, {RSA_HEADER: rsa_sig}, 401, "invalid_signature"),
        ("rsa-sig-in-ed25519-header", good, {ED25519_HEADER: rsa_sig}, 401, None),
        ("ed25519-sig-in-rsa-header", good, {RSA_HEADER: ed_sig}, 401, None),
        ("both-headers-swapped", good, {ED25519_HEADER: rsa_sig, RSA_HEADER: ed_sig}, 401, None),
        ("bad-ed25519-valid-rsa-fallback", good, {ED25519_HEADER: "x" * 88, RSA_HEADER: rsa_sig}, 202, None),
        ("hmac-like-short", good, {ED25519_HEADER: fake_hmac, RSA_HEADER: fake_hmac}, 401, None),
        ("hmac-hex", good, {ED25519_HEADER: "ab" * 32}, 401, None),
        ("sha256-prefixed", good, {ED25519_HEADER: "sha256=" + ed_sig}, 401, None),
        ("truncated-base64", good, {ED25519_HEADER: ed_sig[:-4]}, 401, None),
        ("base64-no-padding", good, {ED25519_HEADER: ed_sig.rstrip("=")[:-1]}, 401, None),
        ("base64-garbage", good, {ED25519_HEADER: "!!!!" + ed_sig[4:]}, 401, None),
        ("empty-signature", good, {ED25519_HEADER: ""}, 401, None),
        ("oversized-signed", _webhook(notes="x" * (256 * 1024)), {}, 413, "payload_too_large"),
        ("oversized-unsigned", b"{" + b" " * (300 * 1024) + b"}", {}, 413, "payload_too_large"),
        ("oversized-binary", b"\xff" * (300 * 1024), {"content-type": "application/octet-stream"}, 413, None),
        ("nested-33", _nested(33), "sign", 400, "too_deep"),
        ("nested-100000", _nested(100_000), "sign", 400, None),
        ("non-utf8", _webhook()[:-2] + b'"\xff\xfe"}', "sign", 400, "invalid_encoding"),
        ("utf16", _webhook().decode().encode("utf-16"), "sign", 400, None),
        (
            "duplicate-key-type",
            b'{"type":"ContactCreate","type":"AppointmentUpdate",' + good[1:],
            "sign",
            400,
            "invalid_json",
        ),
        (
            "duplicate-key-id",
            good.replace(b'"appointment":{', b'"appointment":{"id":"../x",', 1),
            "sign",
            400,
            "invalid_json",
        ),
        ("nan", good[:-1] + b',"n":NaN}', "sign", 400, "invalid_json"),
        ("infinity", good[:-1] + b',"n":Infinity}', "sign", 400, "invalid_json"),
        ("minus-infinity", good[:-1] + b',"n":-Infinity}', "sign", 400, "invalid_json"),
        ("huge-array-over-limit", good[:-1] + b',"a":[' + b"0," * 140_000 + b"0]}", "sign", 413, None),
        ("huge-array-under-limit", _webhook()[:-1] + b',"a":[' + b"0," * 100_000 + b"0]}", "sign", 202, None),
        ("top-level-array", b"[" + good + b"]", "sign", 400, "invalid_json"),
        ("empty-body", b"", "sign", 400, None),
        (
            "stale-timestamp",
            _webhook(timestamp=iso_timestamp(datetime.now(UTC) - timedelta(days=2))),
            "sign",
            401,
            "stale",
        ),
        (
            "future-timestamp",
            _webhook(timestamp=iso_timestamp(datetime.now(UTC) + timedelta(hours=1))),
            "sign",
            401,
            "stale",
        ),
        # Odd webhookIds are the sender's business: hashed into the dedupe id, never used in a path.
        ("webhook-id-injection", _webhook(webhookId="../x?y#z"), "sign", 202, None),
        ("location-dot-dot", _webhook(locationId="../other"), "sign", 400, "invalid_field"),
        ("other-type-ignored", _webhook(type="ContactCreate"), "sign", 200, None),
        ("valid", good, "sign", 202, None),
        ("valid-rsa", _webhook(), "sign-rsa", 202, None),
        ("valid-delete", _webhook(VALID_DELETE_ID, type="AppointmentDelete"), "sign", 202, None),
    ]
    for name, hostile in HOSTILE_IDS.items():
        rows.append((f"id-{name}", _webhook(hostile), "sign", 400, None))
    out: list[tuple[str, bytes, dict[str, str], int, str | None]] = []
    for name, body, spec, status, error in rows:
        if spec == "sign":
            headers = _signed(body)
        elif spec == "sign-rsa":
            headers = {"content-type": "application/json", RSA_HEADER: sign_rsa(body)}
        else:
            headers = {"content-type": "application/json", **spec}
        out.append((name, body, headers, status, error))
    return out


def test_hostile_table_gets_documented_statuses_and_nothing_leaves_for_another_path(
    gateway, poller, sandbox, local_stack
) -> None:
    session = requests.Session()
    wrong: list[str] = []
    for name, body, headers, status, error in _cases():
        response = session.post(gateway.webhook_url, data=body, headers=headers, timeout=30)
        payload = response.json()
        if response.status_code != status:
            wrong.append(f"{name}: {response.status_code} (expected {status}) {payload}")
            continue
        if status >= 400 and not {"error", "message"} <= set(payload) and response.status_code != 413:
            wrong.append(f"{name}: error body {payload}")
        if error is not None and payload.get("error") != error:
            wrong.append(f"{name}: error {payload.get('error')!r} (expected {error!r})")
    assert not wrong, "\n".join(wrong)

    for _ in range(20):  # bounded: a handful of batches at most
        if not poller.poll_once():
            break
    records = [json.loads(m["Body"]) for m in local_stack.drain(local_stack.enriched_queue_url)]
    # valid (+ the RSA-fallback row: same webhookId, deduplicated), valid-rsa, valid-delete, huge array,
    # and webhook-id-injection (an odd webhookId is hashed for deduplication, never trusted): each
    # ends as exactly one record; nothing is quarantined.
    assert len(records) == 5, [r["webhookId"] for r in records]
    assert local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0) == []

    paths = {entry["path"] for entry in sandbox.requests_log()}
    assert paths == {APPOINTMENTS + VALID_ID}, paths


def test_hostile_ids_on_the_ingest_queue_are_quarantined_without_an_upstream_call(
    poller, sandbox, local_stack
) -> None:
    """Defence in depth: a message that never went through the receiver (redrive, manual send,
    a receiver bug) with a hostile id is quarantined by the enricher, and upstream sees nothing."""
    sqs = local_stack.client("sqs")
    sent = 0
    for name, hostile in HOSTILE_IDS.items():
        body = _webhook(hostile)
        sqs.send_message(
            QueueUrl=local_stack.ingest_queue_url,
            MessageBody=ingest_message(
                body, "2026-05-01T12:00:00Z", f"hostile-{name}-{uuid.uuid4().hex[:6]}"
            ),
            MessageGroupId=f"hostile-{name}",
            MessageDeduplicationId=uuid.uuid4().hex,
        )
        sent += 1
    for _ in range(20):
        if not poller.poll_once():
            break
    quarantined = local_stack.drain(local_stack.quarantine_queue_url)
    assert len(quarantined) == sent
    assert {m["MessageAttributes"]["errorType"]["StringValue"] for m in quarantined} == {
        "InvalidIngestMessage"
    }
    assert local_stack.drain(local_stack.enriched_queue_url, wait_seconds=0) == []
    assert sandbox.requests_log() == []


def test_lone_surrogate_escape_is_accepted_at_intake_and_never_lost(gateway, poller, local_stack) -> None:
    """A JavaScript sender that cut an emoji in half still sent a genuine event: 202, and the
    enricher ends it as a record or a quarantined message with its reason, never silently."""
    body = _webhook(title="\ud800")
    assert b"\\ud800" in body
    response = requests.post(gateway.webhook_url, data=body, headers=_signed(body), timeout=30)
    assert response.status_code == 202, response.text
    poller.poll_once()
    records = local_stack.drain(local_stack.enriched_queue_url, wait_seconds=0)
    quarantined = local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0)
    assert (len(records), quarantined) == (1, [])
