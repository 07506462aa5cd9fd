"""WebhookReceiver.receive: every branch of the intake ladder, with fresh Ed25519 / RSA-4096 keys.

size (413) -> signature (401) -> UTF-8/JSON/depth (400) -> replay window (401 stale) -> type
(200 ignored) -> fields (400) -> tenant (200 ignored) -> durable enqueue within a deadline (202,
or 429 with Retry-After when the queue write failed or was too slow).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appointment_enricher.config import ReceiverConfig, Tenancy
from appointment_enricher.errors import ConfigError
from appointment_enricher.intake.receiver import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    Reply,
    WebhookReceiver,
)
from appointment_enricher.intake.signatures import ED25519_HEADER, RSA_HEADER, SignatureVerifier
from appointment_enricher.wire import IngestMessage, read_webhook, webhook_dedupe_id

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
ED = ed25519.Ed25519PrivateKey.generate()
RSA = rsa.generate_private_key(public_exponent=65537, key_size=4096)


def _pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


VERIFIER = SignatureVerifier.from_pem(_pem(ED), _pem(RSA))


class RecordingSink:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.error = error

    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str:
        if self.error is not None:
            raise self.error
        self.sent.append(
            {"body": body, "group_id": group_id, "dedupe_id": dedupe_id, "attributes": dict(attributes)}
        )
        return f"msg-{len(self.sent)}"


def receiver(sink: RecordingSink | None = None, **kwargs: Any) -> WebhookReceiver:
    return WebhookReceiver(verifier=VERIFIER, sink=sink or RecordingSink(), now=lambda: NOW, **kwargs)


def webhook(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "AppointmentCreate",
        "locationId": "loc_ABC123",
        "appointment": {"id": "appt_XYZ789", "calendarId": "cal_1", "title": "Consult"},
        "webhookId": "wh-0001",
        "timestamp": "2026-05-01T11:59:00.000Z",
    }
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def raw(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def sign(body: bytes, scheme: str = "ed25519") -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if scheme in ("ed25519", "both"):
        headers[ED25519_HEADER] = base64.b64encode(ED.sign(body)).decode()
    if scheme in ("rsa", "both"):
        headers[RSA_HEADER] = base64.b64encode(RSA.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
    return headers


def deliver(
    body: bytes,
    scheme: str = "ed25519",
    sink: RecordingSink | None = None,
    deadline: float | None = None,
    **kw: Any,
) -> Reply:
    return receiver(sink, **kw).receive(body, sign(body, scheme), deadline=deadline)


def assert_error(reply: Reply, status: int, error: str, *mentions: str) -> None:
    assert reply.status == status, reply
    assert set(reply.body) == {"error", "message"}
    assert reply.body["error"] == error
    assert isinstance(reply.body["message"], str)
    for text in mentions:
        assert text in reply.body["message"], (text, reply.body)


# ---- accepted -----------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["AppointmentCreate", "AppointmentUpdate", "AppointmentDelete"])
@pytest.mark.parametrize("scheme", ["ed25519", "rsa", "both"])
def test_signed_appointment_events_are_queued(event_type, scheme):
    sink = RecordingSink()
    body = raw(webhook(type=event_type))
    reply = deliver(body, scheme, sink)
    assert reply.status == 202
    assert reply.body == {"status": "accepted", "dedupeId": "wh-0001", "appointmentId": "appt_XYZ789"}
    assert reply.outcome == "accepted"
    assert reply.verdict == ("rsa" if scheme == "rsa" else "ed25519")
    [sent] = sink.sent
    assert sent["group_id"] == "appt_XYZ789"
    assert sent["dedupe_id"] == "wh-0001"
    assert sent["attributes"] == {"eventType": event_type, "locationId": "loc_ABC123"}


def test_ingest_message_carries_the_raw_body_as_received():
    sink = RecordingSink()
    # Odd spacing, key order and non-ASCII: the stored body must be byte-identical, not re-serialised.
    body = (
        '{ "webhookId":"wh-raw-1", "type" : "AppointmentUpdate","appointment":{"title":"Café ✓",'
        '"id":"appt_1"},\n"locationId":"loc_1"}'
    ).encode()
    headers = sign(body, "both")
    assert receiver(sink).receive(body, headers).status == 202
    message = json.loads(sink.sent[0]["body"])
    assert message["body"].encode("utf-8") == body
    assert message["receivedAt"] == "2026-05-01T12:00:00Z"
    assert message["dedupeId"] == "wh-raw-1"
    # The signatures travel with the body so the enricher (or an auditor) can re-verify it.
    assert message["signatures"] == {ED25519_HEADER: headers[ED25519_HEADER], RSA_HEADER: headers[RSA_HEADER]}
    assert VERIFIER.verify(message["body"].encode("utf-8"), message["signatures"]).ok


def test_header_names_are_matched_regardless_of_case():
    sink = RecordingSink()
    body = raw(webhook())
    headers = {
        "X-GHL-Signature": base64.b64encode(ED.sign(body)).decode(),
        "Content-Type": "application/json",
    }
    reply = receiver(sink).receive(body, headers)
    assert reply.status == 202
    assert json.loads(sink.sent[0]["body"])["signatures"] == {ED25519_HEADER: headers["X-GHL-Signature"]}
    rsa_headers = {"X-Wh-Signature": sign(body, "rsa")[RSA_HEADER]}
    assert receiver().receive(body, rsa_headers).status == 202


def test_dedupe_id_is_the_webhook_id():
    assert deliver(raw(webhook(webhookId="abc:DEF.1_2-3"))).dedupe_id == "abc:DEF.1_2-3"


@pytest.mark.parametrize("webhook_id", [None, ""])
def test_dedupe_id_falls_back_to_sha256_of_the_raw_body(webhook_id):
    sink = RecordingSink()
    body = raw(webhook(webhookId=webhook_id))
    if webhook_id == "":
        assert b'"webhookId":""' in body
    reply = deliver(body, sink=sink)
    expected = hashlib.sha256(body).hexdigest()
    assert reply.status == 202
    assert reply.dedupe_id == expected
    assert sink.sent[0]["dedupe_id"] == expected
    assert json.loads(sink.sent[0]["body"])["dedupeId"] == expected


def test_body_of_exactly_the_limit_is_accepted():
    doc = raw(webhook())
    body = doc[:-1] + b" " * (MAX_BODY_BYTES - len(doc)) + b"}"
    assert len(body) == MAX_BODY_BYTES
    assert deliver(body).status == 202


# ---- 413 ------------------------------------------------------------------------------------------


def test_body_over_256_kib_is_413_before_anything_else():
    doc = raw(webhook())
    body = doc[:-1] + b" " * (MAX_BODY_BYTES + 1 - len(doc)) + b"}"
    sink = RecordingSink()
    assert_error(deliver(body, sink=sink), 413, "payload_too_large", str(MAX_BODY_BYTES))
    # Neither signature nor JSON is looked at: unsigned garbage of that size is 413 too, not 401/400.
    assert_error(receiver(sink).receive(b"\xff" * (MAX_BODY_BYTES + 1), {}), 413, "payload_too_large")
    assert sink.sent == []


# ---- 401 signatures -------------------------------------------------------------------------------


def test_unsigned_body_is_401_missing_signature():
    sink = RecordingSink()
    reply = receiver(sink).receive(raw(webhook()), {"content-type": "application/json"})
    assert_error(reply, 401, "missing_signature", ED25519_HEADER, RSA_HEADER)
    assert sink.sent == []


@pytest.mark.parametrize(
    "headers",
    [
        {ED25519_HEADER: "N/A"},
        {RSA_HEADER: "N/A"},
        {ED25519_HEADER: "@@@@"},
        {ED25519_HEADER: base64.b64encode(b"\0" * 63).decode()},
        {RSA_HEADER: base64.b64encode(b"\0" * 511).decode()},
    ],
    ids=["ghl-NA", "wh-NA", "malformed", "short-ed", "short-rsa"],
)
def test_unusable_signature_is_401(headers):
    sink = RecordingSink()
    assert_error(receiver(sink).receive(raw(webhook()), headers), 401, "invalid_signature")
    assert sink.sent == []


@pytest.mark.parametrize("scheme", ["ed25519", "rsa"])
def test_signature_of_another_body_is_401(scheme):
    headers = sign(raw(webhook(webhookId="wh-other")), scheme)
    assert_error(receiver().receive(raw(webhook()), headers), 401, "invalid_signature")


def test_signature_made_with_the_other_algorithm_is_401():
    body = raw(webhook())
    swapped = {ED25519_HEADER: sign(body, "rsa")[RSA_HEADER], RSA_HEADER: sign(body)[ED25519_HEADER]}
    assert_error(receiver().receive(body, swapped), 401, "invalid_signature")


def test_signature_not_required_accepts_unsigned_but_never_a_bad_signature():
    sink = RecordingSink()
    lax = receiver(sink, signature_required=False)
    reply = lax.receive(raw(webhook()), {})
    assert reply.status == 202
    assert reply.verdict == "missing"
    assert_error(lax.receive(raw(webhook()), {ED25519_HEADER: "N/A"}), 401, "invalid_signature")
    assert len(sink.sent) == 1


def test_a_signed_body_without_timestamp_is_accepted_on_purpose():
    """HighLevel's published example bodies carry no ``timestamp``: refusing them could lose real
    events. The signature proves the sender and the webhookId dedupe (FIFO + idempotency) stops a
    replay from publishing twice; see SECURITY.md."""
    doc = webhook()
    del doc["timestamp"]
    body = raw(doc)
    reply = receiver().receive(body, sign(body))
    assert reply.status == 202 and reply.dedupe_id == "wh-0001"


def test_an_unsigned_delete_is_never_accepted_even_when_signatures_are_optional():
    sink = RecordingSink()
    lax = receiver(sink, signature_required=False)
    assert_error(lax.receive(raw(webhook(type="AppointmentDelete")), {}), 401, "missing_signature")
    assert sink.sent == []
    signed = raw(webhook(type="AppointmentDelete"))
    assert lax.receive(signed, sign(signed)).status == 202


# ---- 401 stale -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "status"),
    [
        ("2026-04-30T11:59:59.000Z", 401),  # a day and a second old
        ("2026-04-30T12:00:01.000Z", 202),  # just inside a day
        ("2026-05-01T12:05:01Z", 401),  # more than five minutes ahead
        ("2026-05-01T12:04:59Z", 202),
        ("2026-05-01 11:00:00", 202),  # upstream's offset-less form, read as UTC
        ("2026-05-01T17:30:00+05:30", 202),  # same instant as 12:00Z
        ("2026-05-01T17:36:00+05:30", 401),
    ],
)
def test_replay_window(timestamp, status):
    sink = RecordingSink()
    reply = deliver(raw(webhook(timestamp=timestamp)), sink=sink)
    assert reply.status == status, reply
    if status == 401:
        assert_error(reply, 401, "stale")
        assert sink.sent == []


def test_max_age_is_configurable():
    body = raw(webhook(timestamp="2026-05-01T11:50:00Z"))  # ten minutes old
    assert deliver(body).status == 202
    assert_error(deliver(body, max_age=timedelta(minutes=5)), 401, "stale", "300 seconds")


def test_stale_applies_to_ignored_types_too():
    assert_error(deliver(raw(webhook(type="ContactCreate", timestamp="2020-01-01T00:00:00Z"))), 401, "stale")


@pytest.mark.parametrize(
    ("timestamp", "note"),
    [
        (1714564800000, "timestamp_not_a_string"),
        ({"at": 1}, "timestamp_not_a_string"),
        ("yesterday", "timestamp_unreadable"),
        ("", "timestamp_unreadable"),
    ],
)
def test_unusable_timestamp_is_accepted_unchecked_and_noted(timestamp, note):
    """Only a readable string is checked for freshness: refusing the rest finally could lose an event."""
    sink = RecordingSink()
    reply = deliver(raw(webhook(timestamp=timestamp)), sink=sink)
    assert reply.status == 202, reply
    assert reply.notes == (note,)
    assert len(sink.sent) == 1


# ---- 400 body --------------------------------------------------------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth - 1):
        doc = {"x": doc}
    return doc


BAD_BODIES: dict[str, tuple[bytes, str, tuple[str, ...]]] = {
    "invalid utf-8": (b'{"type":"AppointmentCreate","title":"\xff\xfe"}', "invalid_encoding", ("UTF-8",)),
    "not json": (b"type=AppointmentCreate", "invalid_json", ("JSON",)),
    "empty": (b"", "invalid_json", ("JSON",)),
    "array": (b"[1,2]", "invalid_json", ("object",)),
    "NaN": (b'{"type":"AppointmentCreate","n":NaN}', "invalid_json", ("NaN",)),
    "duplicate key": (b'{"type":"AppointmentCreate","type":"ContactCreate"}', "invalid_json", ("type",)),
    "too deep": (raw(webhook(extra=_nested(MAX_JSON_DEPTH))), "too_deep", (str(MAX_JSON_DEPTH),)),
    "hostile depth": (b"[" * 100_000 + b"]" * 100_000, "too_deep", ()),
    "missing type": (raw(webhook(type=None)), "missing_field", ("type",)),
    "empty type": (raw(webhook(type="")), "missing_field", ("type",)),
    "type not a string": (raw(webhook(type=7)), "invalid_field", ("type",)),
    "missing locationId": (raw(webhook(locationId=None)), "missing_field", ("locationId",)),
    "bad locationId": (raw(webhook(locationId="loc/1")), "invalid_field", ("locationId",)),
    "numeric locationId": (raw(webhook(locationId=12)), "invalid_field", ("locationId",)),
    "missing appointment": (raw(webhook(appointment=None)), "missing_field", ("appointment.id",)),
    "appointment not object": (raw(webhook(appointment="appt_1")), "invalid_field", ("appointment",)),
    "missing appointment.id": (
        raw(webhook(appointment={"title": "x"})),
        "missing_field",
        ("appointment.id",),
    ),
    "path traversal id": (raw(webhook(appointment={"id": "../admin"})), "invalid_field", ("appointment.id",)),
    "129-char id": (raw(webhook(appointment={"id": "a" * 129})), "invalid_field", ("appointment.id",)),
    "unicode id": (raw(webhook(appointment={"id": "appt_é"})), "invalid_field", ("appointment.id",)),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_bodies_are_400_naming_the_field(case):
    body, error, mentions = BAD_BODIES[case]
    sink = RecordingSink()
    assert_error(deliver(body, sink=sink), 400, error, *mentions)
    assert sink.sent == []


def test_depth_bound_is_inclusive():
    assert deliver(raw(webhook(extra=_nested(MAX_JSON_DEPTH - 1)))).status == 202


def test_128_char_id_is_accepted():
    sink = RecordingSink()
    assert deliver(raw(webhook(appointment={"id": "A" * 128})), sink=sink).status == 202
    assert sink.sent[0]["group_id"] == "A" * 128


def test_signature_is_checked_before_the_body_is_parsed():
    """An unsigned malformed body is 401, not 400: nothing about the body is disclosed unverified."""
    assert_error(receiver().receive(b"{not json", {}), 401, "missing_signature")


# ---- 200 ignored -----------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["ContactCreate", "appointmentcreate", "InboundMessage"])
def test_other_verified_types_are_ignored_with_200(event_type):
    sink = RecordingSink()
    reply = deliver(raw({"type": event_type, "locationId": "loc_1"}), sink=sink)
    assert reply.status == 200
    assert reply.body["status"] == "ignored"
    assert reply.outcome == "ignored"
    assert sink.sent == []


@pytest.mark.parametrize(
    "webhook_id",
    ["a/b+c=", 5, "x" * 129, "wh-1\n", "wh 1/2", True, 1.5],
    ids=["base64ish", "number", "129 chars", "trailing newline", "space slash", "bool", "float"],
)
def test_odd_webhook_id_is_accepted_under_a_stable_digest(webhook_id):
    """The id is the sender's business: a retry carries the same one, so its digest dedupes it."""
    sink = RecordingSink()
    body = raw(webhook(webhookId=webhook_id))
    reply = deliver(body, sink=sink)
    assert reply.status == 202, reply
    [sent] = sink.sent
    expected = webhook_dedupe_id(read_webhook(json.loads(body)).webhook_id, body)
    assert sent["dedupe_id"] == reply.dedupe_id == expected
    assert re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", expected)  # a valid FIFO deduplication id
    assert expected != hashlib.sha256(body).hexdigest()  # derived from the id, not these bytes
    # A redelivery with another timestamp (other bytes, same webhookId) gets the same dedupe id.
    again = raw(webhook(webhookId=webhook_id, timestamp="2026-05-01T11:59:30.000Z"))
    assert deliver(again).dedupe_id == expected


@pytest.mark.parametrize(
    "snapshot",
    [
        {"id": "appt_XYZ789", "startTime": ""},
        {"id": "appt_XYZ789", "dateUpdated": 1714564800000},
        {"id": "appt_XYZ789", "startTime": None, "endTime": {"a": 1}, "isRecurring": "maybe"},
        {"id": "appt_XYZ789", "title": "\ud800 cut emoji"},
    ],
    ids=["empty startTime", "numeric dateUpdated", "odd types", "lone surrogate"],
)
def test_odd_snapshot_fields_are_accepted(snapshot):
    sink = RecordingSink()
    body = raw(webhook(appointment=snapshot))
    assert deliver(body, sink=sink).status == 202
    message = IngestMessage.decode(sink.sent[0]["body"])
    assert message.body.encode() == body


def test_lone_surrogate_escape_is_accepted_and_the_queued_message_stays_strict():
    sink = RecordingSink()
    body = b'{"type":"AppointmentUpdate","locationId":"loc_1","appointment":{"id":"a1","title":"x\\ud83d"}}'
    assert b"\\ud83d" in body
    assert deliver(body, sink=sink).status == 202
    text = sink.sent[0]["body"]
    text.encode("utf-8")  # strict: no lone surrogate made it into the message text
    assert IngestMessage.decode(text).body.encode() == body  # the raw body, byte for byte


# ---- tenancy -----------------------------------------------------------------------------------------


TENANT = Tenancy(app_ids=frozenset({"app_ours"}), location_ids=frozenset({"loc_ABC123", "loc_2"}))


@pytest.mark.parametrize(
    ("overrides", "status", "reason"),
    [
        ({"appId": "app_ours"}, 202, None),
        ({"appId": "app_other"}, 200, "foreign_app"),
        ({"appId": None}, 200, "missing_app_id"),
        ({"appId": "app_ours", "locationId": "loc_other"}, 200, "foreign_location"),
    ],
)
def test_tenancy_ignores_verified_events_that_are_not_ours(overrides, status, reason):
    sink = RecordingSink()
    reply = deliver(raw(webhook(**overrides)), sink=sink, tenancy=TENANT)
    assert reply.status == status, reply
    if reason is None:
        assert len(sink.sent) == 1
    else:
        assert reply.body == {"status": "ignored", "reason": reason}
        assert (reply.outcome, reply.cause) == ("foreign", reason)
        assert sink.sent == []


def test_tenancy_unset_means_any_app_and_location():
    assert deliver(raw(webhook(appId="anything", locationId="anywhere"))).status == 202
    only_locations = Tenancy(location_ids=frozenset({"loc_ABC123"}))
    assert deliver(raw(webhook(appId=None)), tenancy=only_locations).status == 202


def test_tenancy_is_checked_after_the_signature_and_the_fields():
    assert_error(receiver(tenancy=TENANT).receive(raw(webhook(appId="x")), {}), 401, "missing_signature")
    assert_error(deliver(raw(webhook(appId="x", locationId="a/b")), tenancy=TENANT), 400, "invalid_field")


# ---- 429 ---------------------------------------------------------------------------------------------


class FakeClientError(Exception):
    def __init__(self) -> None:
        super().__init__("An error occurred (AWS.SimpleQueueService.NonExistentQueue) ... body text")
        self.response = {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}


@pytest.mark.parametrize("error", [FakeClientError(), TimeoutError("read timeout"), RuntimeError("boom")])
def test_failed_queue_write_is_429_with_retry_after_never_accepted(error):
    reply = deliver(raw(webhook()), sink=RecordingSink(error=error))
    assert_error(reply, 429, "queue_unavailable")
    assert reply.headers == {"retry-after": "60"}
    assert reply.outcome == "deferred"
    assert reply.dedupe_id == "wh-0001"
    assert reply.cause is not None
    assert reply.cause.startswith(type(error).__name__)
    assert "body text" not in reply.cause


def test_failed_queue_write_cause_names_the_aws_error_code():
    reply = deliver(raw(webhook()), sink=RecordingSink(error=FakeClientError()))
    assert reply.cause == "FakeClientError: AWS.SimpleQueueService.NonExistentQueue"


class OrderCheckingSink(RecordingSink):
    """Fails the test if the receiver has answered before the write returned (it cannot, but prove it)."""

    def __init__(self) -> None:
        super().__init__()
        self.returned = False

    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str:
        result = super().send(body, group_id=group_id, dedupe_id=dedupe_id, attributes=attributes)
        self.returned = True
        return result


class SlowSink(RecordingSink):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.finished = threading.Event()

    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str:
        time.sleep(self.seconds)
        result = super().send(body, group_id=group_id, dedupe_id=dedupe_id, attributes=attributes)
        self.finished.set()
        return result


def test_a_queue_write_past_the_deadline_is_429_at_the_deadline():
    sink = SlowSink(1.0)
    started = time.monotonic()
    reply = deliver(raw(webhook()), sink=sink, deadline=started + 0.2)
    elapsed = time.monotonic() - started
    assert_error(reply, 429, "queue_timeout")
    assert reply.headers["retry-after"] == "60"
    assert 0.2 <= elapsed < 0.9, elapsed  # the deadline, not the 1 s write (room for a loaded machine)
    # The write carries on and may land: the retry's identical dedupe id makes that harmless.
    assert sink.finished.wait(2)
    assert sink.sent[0]["dedupe_id"] == reply.dedupe_id == "wh-0001"


def test_a_queue_write_within_the_deadline_is_accepted():
    reply = deliver(raw(webhook()), sink=SlowSink(0.05), deadline=time.monotonic() + 2)
    assert reply.status == 202


def test_a_deadline_already_passed_defers_without_waiting():
    started = time.monotonic()
    reply = deliver(raw(webhook()), sink=SlowSink(0.5), deadline=started - 1)
    assert (reply.status, time.monotonic() - started < 0.45) == (429, True)  # not the 0.5 s write


def test_accepted_only_after_the_write_returned():
    sink = OrderCheckingSink()
    reply = deliver(raw(webhook()), sink=sink)
    assert reply.status == 202
    assert sink.returned


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
            ),
            max_leaves=20,
        ).map(raw),
        st.builds(
            lambda t, loc, appt, ts: raw(webhook(type=t, locationId=loc, appointment=appt, timestamp=ts)),
            st.sampled_from(["AppointmentCreate", "AppointmentDelete", "Other", "", None, 3]),
            st.one_of(st.none(), st.text(max_size=140), st.integers()),
            st.one_of(st.none(), st.text(max_size=5), st.fixed_dictionaries({"id": st.text(max_size=140)})),
            st.one_of(st.none(), st.text(max_size=30), st.just("2026-05-01T11:00:00Z")),
        ),
    ),
    signed=st.booleans(),
)
def test_never_5xx_and_only_202_writes(body, signed):
    sink = RecordingSink()
    reply = receiver(sink).receive(body, sign(body) if signed else {})
    assert reply.status in (200, 202, 400, 401)
    assert (reply.status == 202) == (len(sink.sent) == 1)
    if reply.status >= 400:
        assert set(reply.body) == {"error", "message"}
    if not signed:
        assert reply.status == 401


# ---- configuration -----------------------------------------------------------------------------------


def test_config_defaults():
    config = ReceiverConfig.from_env({"INGEST_QUEUE_URL": "https://sqs/q.fifo"})
    assert config == ReceiverConfig(ingest_queue_url="https://sqs/q.fifo")
    assert config.signature_required is True
    assert config.max_age_seconds == 86400


@pytest.mark.parametrize(
    ("value", "expected"), [("false", False), ("FALSE", False), ("0", False), ("true", True)]
)
def test_config_signature_required(value, expected):
    env = {"INGEST_QUEUE_URL": "q", "WEBHOOK_SIGNATURE_REQUIRED": value}
    assert ReceiverConfig.from_env(env).signature_required is expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "INGEST_QUEUE_URL"),
        ({"INGEST_QUEUE_URL": "  "}, "INGEST_QUEUE_URL"),
        ({"INGEST_QUEUE_URL": "q", "WEBHOOK_SIGNATURE_REQUIRED": "maybe"}, "WEBHOOK_SIGNATURE_REQUIRED"),
        ({"INGEST_QUEUE_URL": "q", "WEBHOOK_MAX_AGE_SECONDS": "0"}, "WEBHOOK_MAX_AGE_SECONDS"),
        ({"INGEST_QUEUE_URL": "q", "WEBHOOK_MAX_AGE_SECONDS": "1d"}, "WEBHOOK_MAX_AGE_SECONDS"),
        ({"INGEST_QUEUE_URL": "q", "WEBHOOK_MAX_AGE_SECONDS": str(10**12)}, "WEBHOOK_MAX_AGE_SECONDS"),
        (
            {"INGEST_QUEUE_URL": "q", "WEBHOOK_MAX_AGE_SECONDS": str(30 * 86400 + 1)},
            "WEBHOOK_MAX_AGE_SECONDS",
        ),
        ({"INGEST_QUEUE_URL": "q", "WEBHOOK_APP_IDS": "ok,bad id"}, "WEBHOOK_APP_IDS"),
        ({"INGEST_QUEUE_URL": "q", "WEBHOOK_APP_IDS": ",,"}, "WEBHOOK_APP_IDS"),
        ({"INGEST_QUEUE_URL": "q", "WEBHOOK_LOCATION_IDS": "loc/1"}, "WEBHOOK_LOCATION_IDS"),
    ],
)
def test_config_errors_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        ReceiverConfig.from_env(env)


def test_config_reads_the_tenancy_allow_lists():
    env = {"INGEST_QUEUE_URL": "q", "WEBHOOK_APP_IDS": " app1 , app2", "WEBHOOK_LOCATION_IDS": "L1"}
    config = ReceiverConfig.from_env(env)
    assert config.tenancy == Tenancy(frozenset({"app1", "app2"}), frozenset({"L1"}))
    unset = ReceiverConfig.from_env({"INGEST_QUEUE_URL": "q", "WEBHOOK_APP_IDS": "  "})
    assert unset.tenancy == Tenancy(None, None)
