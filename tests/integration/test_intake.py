"""Webhook intake over the wire: HTTP -> local gateway (API GW v2 events) -> WebhookFunction ->
moto server (real HTTP) -> IngestQueue.fifo. The queue must hold exactly the accepted deliveries.

Bodies are signed with the dev keys (dev/keys), which the local stack's env trusts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from appointment_enricher.wire import MAX_BODY_BYTES, IngestMessage, parse_json_object, read_webhook
from dev.fakes.lambda_loader import load_handler
from dev.fakes.signing import DEV_APP_ID, iso_timestamp, make_webhook, sign_ed25519, sign_rsa
from dev.stack.awslocal import LocalStack
from dev.stack.gateway import Gateway

pytestmark = pytest.mark.integration

APPOINTMENT = {"id": "appt_int_001", "calendarId": "cal_1", "title": "Consult", "appointmentStatus": "new"}
LOCATION = "loc_INT123"


def body(
    type: str = "AppointmentCreate",
    appointment_id: str = "appt_int_001",
    webhook_id: str | None = None,
    timestamp: str | datetime | None = None,
    **appointment: Any,
) -> bytes:
    return make_webhook(
        type,
        {**APPOINTMENT, "id": appointment_id, **appointment},
        LOCATION,
        webhook_id=webhook_id or f"wh-{uuid.uuid4().hex}",
        timestamp=timestamp,
    )


def ed(raw: bytes) -> dict[str, str]:
    return {"content-type": "application/json", "x-ghl-signature": sign_ed25519(raw)}


def post(gateway: Gateway, raw: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(gateway.webhook_url, data=raw, headers=headers, timeout=30)


def assert_error(response: requests.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert set(payload) == {"error", "message"}, payload
    assert payload["error"] == error


def queued(local_stack: LocalStack) -> dict[str, dict[str, Any]]:
    """Everything on the ingest queue, keyed by MessageDeduplicationId (drained)."""
    out: dict[str, dict[str, Any]] = {}
    for message in local_stack.drain(local_stack.ingest_queue_url, wait_seconds=0):
        system = message["Attributes"]
        dedupe = system["MessageDeduplicationId"]
        assert dedupe not in out, f"duplicate dedupe id {dedupe} on the queue"
        out[dedupe] = {
            "group": system["MessageGroupId"],
            "attributes": {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()},
            "message": json.loads(message["Body"]),
        }
    return out


def test_each_case_queues_exactly_the_accepted_deliveries(gateway: Gateway, local_stack: LocalStack):
    accepted: dict[str, tuple[bytes, str, str]] = {}  # dedupe id -> (raw body, group id, event type)

    def accept(name: str, raw: bytes, headers: dict[str, str], group: str, event_type: str) -> None:
        response = post(gateway, raw, headers)
        assert response.status_code == 202, (name, response.text)
        reply = response.json()
        assert reply["status"] == "accepted"
        assert reply["appointmentId"] == group
        accepted[reply["dedupeId"]] = (raw, group, event_type)

    # Accepted: each signature scheme, each appointment type, header case, no webhookId, binary body.
    create = body(webhook_id="wh-int-create")
    accept("ed25519", create, ed(create), "appt_int_001", "AppointmentCreate")
    update = body("AppointmentUpdate", "appt_int_002", webhook_id="wh-int-update")
    accept("rsa only", update, {"x-wh-signature": sign_rsa(update)}, "appt_int_002", "AppointmentUpdate")
    delete = body("AppointmentDelete", "appt_int_003", webhook_id="wh-int-delete")
    both = {"x-ghl-signature": sign_ed25519(delete), "x-wh-signature": sign_rsa(delete)}
    accept("both", delete, both, "appt_int_003", "AppointmentDelete")
    cased = body(appointment_id="appt_int_004", webhook_id="wh-int-cased")
    accept(
        "header case", cased, {"X-GHL-SIGNATURE": sign_ed25519(cased)}, "appt_int_004", "AppointmentCreate"
    )
    anonymous = json.dumps(
        {"type": "AppointmentCreate", "locationId": LOCATION, "appointment": {"id": "appt_int_005"}}
    ).encode()
    accept("no webhookId", anonymous, ed(anonymous), "appt_int_005", "AppointmentCreate")
    assert hashlib.sha256(anonymous).hexdigest() in accepted
    binary = body(appointment_id="appt_int_006", webhook_id="wh-int-binary", title="Café ✓")
    # A non-text content type makes API Gateway hand the body over base64-encoded.
    headers = {"content-type": "application/octet-stream", "x-ghl-signature": sign_ed25519(binary)}
    accept("base64 body", binary, headers, "appt_int_006", "AppointmentCreate")

    # Rejected: nothing of these may reach the queue.
    good = body(appointment_id="appt_int_bad", webhook_id="wh-int-rejected")
    other = body(appointment_id="appt_int_bad", webhook_id="wh-int-other")
    old = body(timestamp=datetime.now(UTC) - timedelta(days=2))
    ahead = body(timestamp=datetime.now(UTC) + timedelta(minutes=10))
    bad_utf8 = b'{"type":"AppointmentCreate","title":"\xff"}'
    deep = json.dumps({"type": "AppointmentCreate", "x": json.loads("[" * 40 + "]" * 40)}).encode()
    huge = good[:-1] + b" " * (MAX_BODY_BYTES + 1 - len(good)) + b"}"

    def fields(**doc: Any) -> bytes:
        return json.dumps(doc).encode()

    rejected: list[tuple[str, bytes, dict[str, str], int, str]] = [
        ("unsigned", good, {"content-type": "application/json"}, 401, "missing_signature"),
        ("N/A", good, {"x-ghl-signature": "N/A", "x-wh-signature": "N/A"}, 401, "invalid_signature"),
        ("malformed", good, {"x-ghl-signature": "***"}, 401, "invalid_signature"),
        (
            "wrong length",
            good,
            {"x-ghl-signature": base64.b64encode(b"1" * 32).decode()},
            401,
            "invalid_signature",
        ),
        ("another body", good, {"x-ghl-signature": sign_ed25519(other)}, 401, "invalid_signature"),
        ("other algorithm", good, {"x-ghl-signature": sign_rsa(good)}, 401, "invalid_signature"),
        ("stale", old, ed(old), 401, "stale"),
        ("future", ahead, ed(ahead), 401, "stale"),
        ("invalid json", b"{oops", ed(b"{oops"), 400, "invalid_json"),
        ("invalid utf-8", bad_utf8, ed(bad_utf8), 400, "invalid_encoding"),
        ("too deep", deep, ed(deep), 400, "too_deep"),
        ("missing type", (b := fields(locationId="l", appointment={"id": "a"})), ed(b), 400, "missing_field"),
        ("missing locationId", (b := fields(type="AppointmentCreate")), ed(b), 400, "missing_field"),
        (
            "missing appointment id",
            (b := fields(type="AppointmentUpdate", locationId="l", appointment={})),
            ed(b),
            400,
            "missing_field",
        ),
        (
            "bad id",
            (b := fields(type="AppointmentUpdate", locationId="l", appointment={"id": "a/b"})),
            ed(b),
            400,
            "invalid_field",
        ),
        ("too large", huge, ed(huge), 413, "payload_too_large"),
    ]
    for name, raw, headers, status, error in rejected:
        response = post(gateway, raw, headers)
        assert response.status_code == status, (name, response.text)
        assert_error(response, status, error)

    ignored = fields(type="ContactCreate", locationId=LOCATION)
    response = post(gateway, ignored, ed(ignored))
    assert (response.status_code, response.json()["status"]) == (200, "ignored")

    on_queue = queued(local_stack)
    assert set(on_queue) == set(accepted)
    for dedupe, (raw, group, event_type) in accepted.items():
        entry = on_queue[dedupe]
        assert entry["group"] == group
        assert entry["attributes"] == {"eventType": event_type, "locationId": LOCATION}
        assert entry["message"]["dedupeId"] == dedupe
        assert entry["message"]["body"].encode("utf-8") == raw  # byte-identical, re-verifiable
        datetime.fromisoformat(entry["message"]["receivedAt"])
    assert all(status < 500 for status, _ in gateway.responses)


def test_duplicate_delivery_is_kept_once(gateway: Gateway, local_stack: LocalStack):
    raw = body(webhook_id="wh-int-dup")
    for _ in range(2):
        assert post(gateway, raw, ed(raw)).status_code == 202
    # A redelivery of the same event may differ in signature scheme: same webhookId, one message.
    assert post(gateway, raw, {"x-wh-signature": sign_rsa(raw)}).status_code == 202
    unsigned_id = json.dumps(
        {"type": "AppointmentCreate", "locationId": LOCATION, "appointment": {"id": "appt_int_001"}}
    ).encode()
    for _ in range(2):
        assert post(gateway, unsigned_id, ed(unsigned_id)).status_code == 202
    on_queue = queued(local_stack)
    assert set(on_queue) == {"wh-int-dup", hashlib.sha256(unsigned_id).hexdigest()}


def test_base64_encoded_events_round_trip(webhook_handler: Any, local_stack: LocalStack):
    with Gateway(webhook_handler, force_base64=True) as gateway:
        raw = body(webhook_id="wh-int-b64", title="Zoë — 東京 🎉")
        assert post(gateway, raw, ed(raw)).status_code == 202
        assert_error(post(gateway, raw, {"x-ghl-signature": "N/A"}), 401, "invalid_signature")
    [entry] = queued(local_stack).values()
    assert entry["message"]["body"].encode("utf-8") == raw


def test_largest_body_fits_the_queue_even_at_worst_case_escaping(gateway: Gateway, local_stack: LocalStack):
    """256 KiB of 4-byte characters triples when JSON-escaped into the ingest message; it must still fit."""
    shell = body(webhook_id="wh-int-max", title="")
    emoji = "🎉".encode()
    fill = (MAX_BODY_BYTES - len(shell)) // len(emoji)
    raw = shell.replace(b'"title":""', b'"title":"' + emoji * fill + b'"')
    assert MAX_BODY_BYTES - 4 < len(raw) <= MAX_BODY_BYTES
    response = post(gateway, raw, ed(raw))
    assert response.status_code == 202, response.text
    [entry] = queued(local_stack).values()
    assert entry["message"]["body"].encode("utf-8") == raw


@pytest.mark.parametrize("how", ["nonexistent", "deleted"])
def test_queue_unavailable_is_429_with_retry_after_and_nothing_is_5xx(
    stack_env: dict[str, str], local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch, how: str
):
    if how == "nonexistent":
        monkeypatch.setenv("INGEST_QUEUE_URL", local_stack.ingest_queue_url.replace("IngestQueue", "Missing"))
    handler = load_handler("webhook")
    if how == "deleted":
        local_stack.client("sqs").delete_queue(QueueUrl=local_stack.ingest_queue_url)
    with Gateway(handler) as gateway:
        raw = body(webhook_id=f"wh-int-429-{how}")
        response = post(gateway, raw, ed(raw))
        assert_error(response, 429, "queue_unavailable")
        assert response.headers["retry-after"] == "60"
        # Rejections do not touch the queue, so they keep their own status.
        assert_error(post(gateway, raw, {}), 401, "missing_signature")
        ignored = json.dumps({"type": "ContactCreate", "timestamp": iso_timestamp()}).encode()
        assert post(gateway, ignored, ed(ignored)).status_code == 200


def test_verified_events_of_another_tenant_are_ignored_counted_and_never_queued(
    stack_env: dict[str, str], local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys
):
    """HighLevel signs every app's webhooks with one key: the signature proves the sender only."""
    monkeypatch.setenv("WEBHOOK_APP_IDS", f"app_other_1,{DEV_APP_ID}")
    monkeypatch.setenv("WEBHOOK_LOCATION_IDS", LOCATION)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    handler = load_handler("webhook")
    ours = body(webhook_id="wh-int-tenant-ours")

    def variant(**changes: Any) -> bytes:
        document = json.loads(body(webhook_id=f"wh-int-tenant-{uuid.uuid4().hex[:8]}"))
        for key, value in changes.items():
            if value is None:
                document.pop(key)
            else:
                document[key] = value
        return json.dumps(document).encode()

    foreign = {
        "foreign_app": variant(appId="app_someone_else"),
        "missing_app_id": variant(appId=None),
        "foreign_location": variant(locationId="loc_NOTOURS"),
    }
    with Gateway(handler) as gateway:
        accepted = post(gateway, ours, ed(ours))
        assert accepted.status_code == 202, accepted.text
        for reason, raw in foreign.items():
            response = post(gateway, raw, ed(raw))
            assert (response.status_code, response.json()) == (200, {"status": "ignored", "reason": reason})
        # Unsigned, a foreign body is still just unauthenticated: nothing about tenancy is disclosed.
        assert_error(post(gateway, foreign["foreign_app"], {}), 401, "missing_signature")
    assert set(queued(local_stack)) == {"wh-int-tenant-ours"}
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    counts = [m.get("WebhookForeignTenant", 0) for m in emf]  # EMF: a number, or a list of them
    assert sum(sum(c) if isinstance(c, list) else c for c in counts) == 3, emf


ODD_BODIES: dict[str, dict[str, Any]] = {
    "webhookId base64-ish": {"webhookId": "a/b+c="},
    "webhookId number": {"webhookId": 12345},
    "webhookId over 128": {"webhookId": "w" * 129},
    "webhookId trailing newline": {"webhookId": "wh-odd-1\n"},
    "timestamp a number": {"timestamp": 1714564800000},
    "timestamp unreadable": {"timestamp": "yesterday"},
    "startTime empty": {"appointment": {"id": "appt_odd_1", "startTime": ""}},
    "dateUpdated numeric": {"appointment": {"id": "appt_odd_1", "dateUpdated": 1714564800000}},
    "lone surrogate": {"appointment": {"id": "appt_odd_1", "title": "\ud83d"}},
}


def test_signed_bodies_that_are_ours_but_odd_are_accepted_once(gateway: Gateway, local_stack: LocalStack):
    """A final 4xx would lose a genuine event: odd content is the enricher's business."""
    expected: dict[str, str] = {}
    for name, changes in ODD_BODIES.items():
        document = json.loads(body(appointment_id="appt_odd_1", webhook_id=f"wh-odd-{uuid.uuid4().hex[:8]}"))
        document.update(changes)
        raw = json.dumps(document).encode()  # ensure_ascii: a lone surrogate travels as an escape
        first = post(gateway, raw, ed(raw))
        assert first.status_code == 202, (name, first.text)
        assert post(gateway, raw, ed(raw)).status_code == 202  # the sender's retry: deduplicated
        expected[first.json()["dedupeId"]] = name
    on_queue = queued(local_stack)
    assert set(on_queue) == set(expected)
    for dedupe_id, entry in on_queue.items():
        message = IngestMessage.decode(json.dumps(entry["message"]))
        assert read_webhook(parse_json_object(message.body)).appointment_id == "appt_odd_1"
        assert entry["group"] == "appt_odd_1", expected[dedupe_id]
