"""The shared wire rules: strict JSON, routing fields, dedupe ids and the ingest message."""

from __future__ import annotations

import hashlib
import json

import pytest

from appointment_enricher.wire import (
    MAX_JSON_DEPTH,
    IngestMessage,
    WireError,
    ingest_attributes,
    parse_json_object,
    read_webhook,
    reconcile_dedupe_id,
    try_upstream_time,
    webhook_dedupe_id,
)

BODY = {"type": "AppointmentUpdate", "locationId": "loc_1", "appointment": {"id": "appt-1"}}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"\xff", "invalid_encoding"),
        (b"[1]", "invalid_json"),
        (b'{"a": NaN}', "invalid_json"),
        (b'{"a": 1, "a": 2}', "invalid_json"),
        (b'{"a":' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}", "too_deep"),
        (b"{", "invalid_json"),
    ],
)
def test_parse_json_object_refuses_what_no_sender_means(raw: bytes, error: str) -> None:
    with pytest.raises(WireError) as caught:
        parse_json_object(raw)
    assert caught.value.error == error


def test_lone_surrogates_are_replaced_not_refused() -> None:
    document = parse_json_object(b'{"title": "cut \\ud83d", "\\udc00k": ["\\ud800"]}')
    assert document == {"title": "cut \ufffd", "\ufffdk": ["\ufffd"]}
    json.dumps(document).encode("utf-8")  # encodable downstream


def test_read_webhook_needs_only_the_routing_fields() -> None:
    odd = {
        **BODY,
        "webhookId": 12345,
        "appId": "app",
        "timestamp": 7,
        "appointment": {"id": "a", "startTime": ""},
    }
    ref = read_webhook(odd)
    assert (ref.type, ref.location_id, ref.appointment_id, ref.webhook_id, ref.app_id) == (
        "AppointmentUpdate",
        "loc_1",
        "a",
        "12345",
        "app",
    )


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({**BODY, "type": None}, "missing_field"),
        ({**BODY, "type": 3}, "invalid_field"),
        ({**BODY, "type": "ContactCreate"}, "invalid_field"),
        ({**BODY, "locationId": ""}, "missing_field"),
        ({**BODY, "locationId": "../x"}, "invalid_field"),
        ({**BODY, "appointment": None}, "missing_field"),
        ({**BODY, "appointment": []}, "invalid_field"),
        ({**BODY, "appointment": {"id": "a\n"}}, "invalid_field"),
    ],
)
def test_read_webhook_names_the_unusable_field(document: dict[str, object], error: str) -> None:
    with pytest.raises(WireError) as caught:
        read_webhook(document)
    assert caught.value.error == error


def test_webhook_dedupe_ids() -> None:
    assert webhook_dedupe_id("wh_1.2:3-x", b"{}") == "wh_1.2:3-x"
    odd = webhook_dedupe_id("a/b+c=", b"{}")
    assert odd == hashlib.sha256(b"webhookId:a/b+c=").hexdigest()
    assert webhook_dedupe_id("a/b+c=", b'{"other": 1}') == odd  # stable across body changes
    assert webhook_dedupe_id("wh\n", b"{}") != "wh\n"  # fullmatch: no trailing newline
    assert webhook_dedupe_id("x" * 129, b"{}") == hashlib.sha256(b"webhookId:" + b"x" * 129).hexdigest()
    assert webhook_dedupe_id(None, b"{}") == hashlib.sha256(b"{}").hexdigest()


def test_reconcile_dedupe_ids_follow_the_state() -> None:
    first = reconcile_dedupe_id("a", "2026-01-01T00:00:00Z")
    assert first == reconcile_dedupe_id("a", "2026-01-01T00:00:00Z")
    assert first != reconcile_dedupe_id("a", "2026-01-01T00:00:01Z")
    assert first != reconcile_dedupe_id("a", "2026-01-01T00:00:00Z", deleted=True)
    assert len(first) <= 128


def test_ingest_message_round_trip() -> None:
    message = IngestMessage('{"a":1}', "2026-01-01T00:00:00Z", "d1", {"x-ghl-signature": "s"}, "reconcile")
    assert IngestMessage.decode(message.encode()) == message
    webhook = IngestMessage("{}", "2026-01-01T00:00:00Z", "d2")
    assert "trigger" not in json.loads(webhook.encode())
    assert IngestMessage.decode(webhook.encode()).trigger == "webhook"


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"receivedAt": "t", "dedupeId": "d"}',
        '{"body": "{}", "dedupeId": "d"}',
        '{"body": "{}", "receivedAt": "t", "dedupeId": ""}',
        '{"body": "{}", "receivedAt": "t", "dedupeId": "d", "signatures": {"a": 1}}',
        '{"body": "{}", "receivedAt": "t", "dedupeId": "d", "trigger": "magic"}',
    ],
)
def test_ingest_message_refuses_what_it_cannot_use(text: str) -> None:
    with pytest.raises(WireError):
        IngestMessage.decode(text)


def test_ingest_attributes() -> None:
    ref = read_webhook(BODY)
    assert ingest_attributes(ref) == {"eventType": "AppointmentUpdate", "locationId": "loc_1"}
    assert ingest_attributes(ref, "reconcile")["trigger"] == "reconcile"


def test_try_upstream_time() -> None:
    assert try_upstream_time("") is None
    assert try_upstream_time(1700000000) is None
    parsed = try_upstream_time("2023-09-25 16:00:00")
    assert parsed is not None and parsed.isoformat() == "2023-09-25T16:00:00+00:00"
