"""Property tests (hypothesis): webhook parser, intake, appointment model and enriched record.

Properties:
* ``wire.parse_json_object`` on any bytes returns a dict or raises ``WireError``; on any JSON it
  accepts exactly the strict subset (object, no NaN/Infinity, no duplicate keys, depth <= 32);
* ``WebhookReceiver.receive`` (fake sink, verifier from fresh test keys) never raises and answers
  only documented statuses with a JSON error body; it queues only what it answers 202 for, under
  an id that is safe in a URL path; an unsigned or wrongly signed body never reaches the sink;
* the ``Appointment`` model raises only ``ValidationError`` on any input;
* enriched records built from valid appointments round-trip through JSON and validate against
  ``schemas/enriched-record-v1.json``, also in the ``exclude_unset`` form the enricher publishes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from appointment_enricher.enrich.service import EnricherService, Outcome
from appointment_enricher.enrichment import build_record
from appointment_enricher.intake.receiver import WebhookReceiver
from appointment_enricher.intake.signatures import ED25519_HEADER, RSA_HEADER, SignatureVerifier
from appointment_enricher.models import Appointment, AppointmentWebhook, EnrichedRecord
from appointment_enricher.wire import MAX_JSON_DEPTH, IngestMessage, WebhookRef, is_valid_id, read_webhook
from appointment_enricher.wire import WireError as BadRequest
from appointment_enricher.wire import parse_json_object as parse_body

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "enriched-record-v1.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
KEY = ed25519.Ed25519PrivateKey.generate()
VERIFIER = SignatureVerifier.from_pem(
    KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ),
    None,
)
DOCUMENTED_STATUSES = {200, 202, 400, 401, 413}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class FakeSink:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str:
        self.sent.append(
            {"body": body, "group_id": group_id, "dedupe_id": dedupe_id, "attributes": attributes}
        )
        return "m-1"


def _receiver(sink: FakeSink) -> WebhookReceiver:
    return WebhookReceiver(verifier=VERIFIER, sink=sink, now=lambda: NOW)


def _sign(body: bytes) -> dict[str, str]:
    return {ED25519_HEADER: base64.b64encode(KEY.sign(body)).decode()}


# ---- strategies ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
hostile_ids = st.sampled_from(
    [
        "../x",
        "..%2F..%2Foauth",
        "a/b",
        "a?b=1",
        "a#b",
        "a b",
        "a\nb",
        "a\x00b",
        "\u0430bc",  # Cyrillic a
        "\uff41bc",  # fullwidth a
        "",
        "x" * 129,
        "abc\n",
    ]
)
valid_ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,40}\Z")
ids = valid_ids | hostile_ids | st.text(max_size=12) | st.integers() | st.none()
event_types = st.sampled_from(
    ["AppointmentCreate", "AppointmentUpdate", "AppointmentDelete", "ContactCreate", ""]
)
timestamps = (
    st.none()
    | st.sampled_from(
        [
            "2026-05-01T11:59:00.000Z",
            "2026-05-01T12:00:00+02:00",
            "2020-01-01T00:00:00Z",
            "2026-05-01T13:00:00Z",
            "not a date",
            "",
            "0001-01-01T00:00:00+05:30",
        ]
    )
    | st.integers()
)


@st.composite
def webhook_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed appointment webhooks with any field possibly missing or hostile."""
    doc: dict[str, Any] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        doc["type"] = draw(event_types | st.integers())
    if draw(st.integers(0, 4)):
        doc["locationId"] = draw(ids)
    shape = draw(st.integers(0, 5))
    if shape:
        doc["appointment"] = (
            {"id": draw(ids), "title": draw(st.text(max_size=10)), "extra": draw(json_values)}
            if shape > 1
            else draw(json_values)
        )
    if draw(st.booleans()):
        doc["webhookId"] = draw(st.from_regex(r"\A[A-Za-z0-9_.:-]{1,30}\Z") | ids)
    ts = draw(timestamps)
    if ts is not None:
        doc["timestamp"] = ts
    return doc


def _upstream_time(moment: datetime, style: int) -> str:
    if style == 0:
        return moment.isoformat()
    if style == 1:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@st.composite
def appointments(draw: st.DrawFn) -> dict[str, Any]:
    """Valid Get Appointment ``event`` objects with the upstream's quirks (realistic years)."""
    offset = timezone(timedelta(minutes=draw(st.integers(-12 * 60, 14 * 60))))
    start = draw(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1))).replace(
        tzinfo=offset
    )
    end = start + timedelta(minutes=draw(st.integers(0, 60 * 24 * 3)))
    style = draw(st.integers(0, 2))
    master = draw(valid_ids)
    start_ms, seconds = draw(st.integers(10**12, 2 * 10**12)), draw(st.integers(1, 86400))
    instance = f"{master.replace('_', '') or 'm'}_{start_ms}_{seconds}"
    event: dict[str, Any] = {
        "id": draw(st.sampled_from([master, instance])),
        "title": draw(st.text(max_size=30)),
        "calendarId": draw(valid_ids),
        "locationId": draw(valid_ids),
        "contactId": draw(valid_ids),
        "groupId": draw(valid_ids),
        "appointmentStatus": draw(
            st.sampled_from(["new", "confirmed", "cancelled", "showed", "noshow"]) | st.text(max_size=10)
        ),
        "assignedUserId": draw(valid_ids),
        "users": draw(st.lists(valid_ids, max_size=3)),
        "startTime": _upstream_time(start, style),
        "endTime": _upstream_time(end, style),
        "dateAdded": _upstream_time(start - timedelta(days=1), style),
        "dateUpdated": _upstream_time(start - timedelta(hours=1), style),
    }
    if draw(st.booleans()):
        event["isRecurring"] = draw(st.sampled_from([True, False, "true", "false"]))
    if draw(st.booleans()):
        event["unknownUpstreamField"] = draw(json_values)
    if draw(st.booleans()):
        event["notes"] = draw(st.text(max_size=50))
    return event


# ---- parser ----------------------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=300))
@example(b"[" * 100_000)
@example(b'{"a":1,"a":2}')
@example(b'{"a":NaN}')
@example(b"\xff\xfe{}")
def test_parse_body_returns_a_dict_or_raises_bad_request(raw: bytes) -> None:
    try:
        assert isinstance(parse_body(raw), dict)
    except BadRequest as exc:
        assert exc.error in {"invalid_encoding", "invalid_json", "too_deep"}


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@SETTINGS
@given(json_values)
def test_parse_body_accepts_exactly_strict_json_objects(value: Any) -> None:
    raw = json.dumps(value).encode()
    if isinstance(value, dict) and _depth(value) <= MAX_JSON_DEPTH:
        assert parse_body(raw) == json.loads(raw)
    else:
        with pytest.raises(BadRequest):
            parse_body(raw)


@SETTINGS
@given(st.dictionaries(st.text(max_size=5), json_values, min_size=1, max_size=4), st.data())
def test_parse_body_refuses_a_repeated_key_anywhere(value: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(value)))
    raw = json.dumps(value)[:-1] + f", {json.dumps(key)}: 1}}"
    with pytest.raises(BadRequest, match="duplicate key"):
        parse_body(raw.encode())


@SETTINGS
@given(st.sampled_from(["NaN", "Infinity", "-Infinity"]), st.integers(0, 3))
def test_parse_body_refuses_non_finite_numbers(constant: str, depth: int) -> None:
    raw = '{"a":' + "[" * depth + constant + "]" * depth + "}"
    with pytest.raises(BadRequest):
        parse_body(raw.encode())


@SETTINGS
@given(st.integers(MAX_JSON_DEPTH + 1, MAX_JSON_DEPTH + 50))
def test_parse_body_refuses_nesting_past_the_limit(depth: int) -> None:
    raw = '{"a":' * depth + "1" + "}" * depth
    with pytest.raises(BadRequest, match="nested"):
        parse_body(raw.encode())


# ---- intake ----------------------------------------------------------------------------------


def _check_reply(reply: Any, sink: FakeSink) -> None:
    assert reply.status in DOCUMENTED_STATUSES
    json.dumps(reply.body)  # always serialisable
    if reply.status >= 400:
        assert set(reply.body) == {"error", "message"}
        assert not sink.sent
    if reply.status == 202:
        assert len(sink.sent) == 1
        assert is_valid_id(sink.sent[0]["group_id"])
        assert sink.sent[0]["dedupe_id"]
    else:
        assert not sink.sent


@SETTINGS
@given(
    st.binary(max_size=400),
    st.dictionaries(
        st.sampled_from([ED25519_HEADER, RSA_HEADER, "X-GHL-Signature", "other"]), st.text(max_size=120)
    ),
)
def test_receive_any_bytes_any_headers_never_raises_nor_queues_unsigned(
    raw: bytes, headers: dict[str, str]
) -> None:
    sink = FakeSink()
    reply = _receiver(sink).receive(raw, headers)
    _check_reply(reply, sink)
    assert reply.status in (401, 413)  # no valid signature: nothing gets past the signature check


@SETTINGS
@given(webhook_documents())
def test_receive_signed_documents_answers_as_documented(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    sink = FakeSink()
    reply = _receiver(sink).receive(raw, _sign(raw))
    _check_reply(reply, sink)
    if reply.status == 202:
        # What was queued reads back under the same wire rules, for the same ids.
        queued = IngestMessage.decode(sink.sent[0]["body"])
        assert queued.body.encode() == raw
        ref = read_webhook(parse_body(queued.body))
        assert ref.appointment_id == sink.sent[0]["group_id"] == doc["appointment"]["id"]
        assert is_valid_id(ref.location_id)
    appointment = doc.get("appointment")
    hostile = not (isinstance(appointment, dict) and is_valid_id(appointment.get("id")))
    if doc.get("type") in {"AppointmentCreate", "AppointmentUpdate", "AppointmentDelete"} and hostile:
        assert reply.status in (400, 401)


@SETTINGS
@given(webhook_documents(), st.integers(0, 200), st.binary(min_size=1, max_size=3))
def test_receive_rejects_a_signature_over_different_bytes(doc: dict[str, Any], cut: int, junk: bytes) -> None:
    raw = json.dumps(doc).encode()
    signed = _sign(raw)
    tampered = raw[:cut] + junk + raw[cut:]
    sink = FakeSink()
    reply = _receiver(sink).receive(tampered, signed)
    assert reply.status == 401 and not sink.sent


# ---- what intake accepts, the enricher can read ------------------------------------------------

lone_surrogates = st.text(
    alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2
)
odd_values = (
    json_values | lone_surrogates | st.sampled_from(["", "a/b+c=", "x" * 129, "wh-1\n", 1714564800000])
)


@st.composite
def accepted_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Signed appointment webhooks whose routing fields are usable and everything else is odd:
    webhookId, appId, timestamp and snapshot fields of any JSON type, lone surrogates in text."""
    snapshot: dict[str, Any] = {"id": draw(valid_ids)}
    for name in draw(
        st.lists(
            st.sampled_from(
                [
                    "startTime",
                    "endTime",
                    "dateUpdated",
                    "dateAdded",
                    "title",
                    "calendarId",
                    "isRecurring",
                    "x",
                ]
            ),
            unique=True,
            max_size=5,
        )
    ):
        snapshot[name] = draw(odd_values)
    doc: dict[str, Any] = {
        "type": draw(st.sampled_from(["AppointmentCreate", "AppointmentUpdate", "AppointmentDelete"])),
        "locationId": draw(valid_ids),
        "appointment": snapshot,
    }
    for name in ("webhookId", "appId", "versionId"):
        if draw(st.booleans()):
            doc[name] = draw(odd_values)
    if draw(st.booleans()):  # anything but a readable string: accepted unchecked
        doc["timestamp"] = draw(json_values.filter(lambda v: not isinstance(v, str)) | lone_surrogates)
    return doc


def _accept(doc: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    raw = json.dumps(doc).encode()  # ensure_ascii: lone surrogates travel as \\udXXX escapes
    sink = FakeSink()
    reply = _receiver(sink).receive(raw, _sign(raw))
    assert reply.status == 202, reply
    [sent] = sink.sent
    return raw, sent


@SETTINGS
@given(accepted_documents())
def test_what_intake_accepts_decodes_under_the_wire_rules(doc: dict[str, Any]) -> None:
    raw, sent = _accept(doc)
    message = IngestMessage.decode(sent["body"])
    assert message.body.encode() == raw  # the body exactly as received, re-verifiable
    assert message.dedupe_id == sent["dedupe_id"]
    assert message.trigger == "webhook"
    ref = read_webhook(parse_body(message.body))
    assert (ref.appointment_id, ref.location_id, ref.type) == (
        sent["group_id"],
        doc["locationId"],
        doc["type"],
    )
    assert sent["attributes"] == {"eventType": doc["type"], "locationId": doc["locationId"]}


def _fetched(ref: WebhookRef) -> dict[str, Any]:
    return {
        "id": ref.appointment_id,
        "title": "t",
        "calendarId": "c",
        "locationId": ref.location_id,
        "contactId": "k",
        "groupId": "g",
        "appointmentStatus": "confirmed",
        "assignedUserId": "u",
        "users": [],
        "startTime": "2026-05-01T10:00:00Z",
        "endTime": "2026-05-01T10:30:00Z",
        "dateAdded": "2026-01-01T00:00:00Z",
        "dateUpdated": "2026-01-01T00:00:00Z",
    }


@SETTINGS
@given(accepted_documents())
def test_what_intake_accepts_the_enricher_does_not_call_an_invalid_ingest_message(
    doc: dict[str, Any],
) -> None:
    _, sent = _accept(doc)
    ref = read_webhook(parse_body(IngestMessage.decode(sent["body"]).body))
    quarantine = _Quarantine()
    service = EnricherService(_Source(_fetched(ref)), _Publisher(), quarantine, max_workers=1)
    record = {"messageId": "m1", "body": sent["body"], "attributes": {"MessageGroupId": sent["group_id"]}}
    [item] = service.process([record], lambda: 60_000)
    assert item.error_type != "InvalidIngestMessage", (item.outcome, item.error_type)
    assert "InvalidIngestMessage" not in quarantine.sent
    assert item.outcome.name == "PUBLISHED", (item.outcome, item.error_type)


# ---- appointment model and record ------------------------------------------------------------


@SETTINGS
@given(st.dictionaries(st.sampled_from([*Appointment.model_fields, "x"]), json_values, max_size=16))
def test_appointment_model_raises_only_validation_error(data: dict[str, Any]) -> None:
    with contextlib.suppress(ValidationError):
        Appointment.model_validate(data)


@SETTINGS
@given(appointments(), st.data())
def test_appointment_model_validation_error_on_any_one_broken_field(
    event: dict[str, Any], data: st.DataObject
) -> None:
    field = data.draw(st.sampled_from(["startTime", "endTime", "dateAdded", "id", "users", "calendarId"]))
    broken: list[Any] = [None, 12, {"a": 1}]
    if field != "calendarId":  # free text upstream: any string is valid there
        broken += ["not a time", "../x", "0001-01-01T00:00:00+05:30"]
    if field == "users":
        broken = [None, 12, {"a": 1}, "../x"]
    if field == "id":
        broken = [None, 12, "../x", "a b", ""]
    event[field] = data.draw(st.sampled_from(broken))
    with pytest.raises(ValidationError):
        Appointment.model_validate(event)


@SETTINGS
@given(
    appointments(),
    st.sampled_from(["AppointmentCreate", "AppointmentUpdate", "AppointmentDelete"]),
    st.booleans(),
)
def test_records_round_trip_through_json_and_the_schema(event: dict[str, Any], kind: str, gone: bool) -> None:
    appointment = Appointment.model_validate(event)
    assert appointment.model_dump(mode="json")["startTime"] == event["startTime"]  # kept as sent
    webhook = AppointmentWebhook.model_validate(
        {
            "type": kind,
            "locationId": event["locationId"],
            "appointment": {"id": event["id"], "title": event["title"]},
            "webhookId": "wh-1",
        }
    )
    record = build_record(webhook, None if gone else appointment, received_at="2026-05-01T12:00:00Z", now=NOW)
    assert record.deleted == (gone or kind == "AppointmentDelete")
    for text in (record.model_dump_json(), record.model_dump_json(exclude_unset=True)):
        document = json.loads(text)
        errors = sorted(e.message for e in VALIDATOR.iter_errors(document))
        assert not errors, errors
        again = EnrichedRecord.model_validate_json(text)
        assert again.model_dump(mode="json") == record.model_dump(mode="json")
    derived = record.derived
    if not record.deleted:
        assert isinstance(derived.isRecurring, bool)
        assert derived.startTimeUtc is not None and derived.startTimeUtc.endswith("Z")
        assert derived.durationMinutes is not None and math.isfinite(derived.durationMinutes)
        assert derived.durationMinutes >= 0


# ---- a poisoned upstream time -----------------------------------------------------------------


class _Source:
    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event

    def get_appointment(self, event_id: str, location_id: str, *, deadline: float) -> dict[str, Any]:
        return {"event": self.event}


class _Publisher:
    def publish(self, messages: Any, *, time_left: Any = None) -> dict[str, str]:
        return {}


class _Quarantine:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, original_body: str, *, error_type: str, **kwargs: Any) -> None:
        self.sent.append(error_type)


# Regression (found by this suite, fixed in 21a527d): a time at the edge of datetime's range used
# to pass the model, then raise OverflowError in derive(), retried until IngestDLQ.
def test_poisoned_upstream_time_is_quarantined_not_retried_forever() -> None:
    event = {
        "id": "PoisonAppt1",
        "title": "t",
        "calendarId": "c",
        "locationId": "L1",
        "contactId": "k",
        "groupId": "g",
        "appointmentStatus": "new",
        "assignedUserId": "u",
        "users": [],
        "startTime": "0001-01-01T00:00:00+05:30",
        "endTime": "0001-01-01T01:00:00+05:30",
        "dateAdded": "2026-01-01T00:00:00Z",
        "dateUpdated": "2026-01-01T00:00:00Z",
    }
    body = json.dumps({"type": "AppointmentUpdate", "locationId": "L1", "appointment": {"id": "PoisonAppt1"}})
    message = json.dumps({"body": body, "receivedAt": "2026-05-01T12:00:00Z", "dedupeId": "d1"})
    quarantine = _Quarantine()
    service = EnricherService(_Source(event), _Publisher(), quarantine, max_workers=1)
    items = service.process(
        [{"messageId": "m1", "body": message, "attributes": {"MessageGroupId": "PoisonAppt1"}}],
        lambda: 60_000,
    )
    assert items[0].outcome is Outcome.QUARANTINED, (items[0].outcome, items[0].error_type)
    assert quarantine.sent == [items[0].error_type]
