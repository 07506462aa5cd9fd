"""Sign webhook bodies with the dev keys and (re)generate the sample events (dev only).

HighLevel signs the raw body bytes: ``x-ghl-signature`` is Ed25519 (current scheme) and
``x-wh-signature`` RSA-SHA256 PKCS#1 v1.5 (legacy), both base64. The keys here are the dev
pairs in ``dev/keys/``; the local stack trusts their public halves only.

    python -m dev.fakes.signing --write-events          # regenerate events/webhooks, apigw, sqs
    python -m dev.fakes.signing events/webhooks/create.json [--scheme both] [--restamp] [--url URL]
                                                  # print a ready-to-paste curl command
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import shlex
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from appointment_enricher.wire import (
    IngestMessage,
    Trigger,
    WireError,
    ingest_attributes,
    parse_json_object,
    read_webhook,
    webhook_dedupe_id,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS_DIR = REPO_ROOT / "dev" / "keys"
EVENTS_DIR = REPO_ROOT / "events"

ED25519_HEADER = "x-ghl-signature"
RSA_HEADER = "x-wh-signature"
Scheme = Literal["ed25519", "rsa", "both", "none"]
WebhookType = Literal["AppointmentCreate", "AppointmentUpdate", "AppointmentDelete"]

# Fields a webhook's ``appointment`` snapshot carries (HighLevel's webhook docs), taken from a
# Get Appointment ``event`` when building samples.
SNAPSHOT_FIELDS = (
    "id",
    "address",
    "title",
    "calendarId",
    "contactId",
    "groupId",
    "appointmentStatus",
    "assignedUserId",
    "users",
    "notes",
    "source",
    "startTime",
    "endTime",
    "dateAdded",
    "dateUpdated",
)
DEV_APP_ID = "65f1c0ffee0ddba11dev0001"
DEV_VERSION_ID = "65f1c0ffee0ddba11dev0002"


INGEST_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:IngestQueue.fifo"  # moto's account


@functools.cache
def _ed25519_key() -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key((KEYS_DIR / "ed25519-private.pem").read_bytes(), None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError("dev/keys/ed25519-private.pem is not an Ed25519 key")
    return key


@functools.cache
def _rsa_key() -> RSAPrivateKey:
    key = serialization.load_pem_private_key((KEYS_DIR / "rsa-private.pem").read_bytes(), None)
    if not isinstance(key, RSAPrivateKey):
        raise TypeError("dev/keys/rsa-private.pem is not an RSA key")
    return key


def sign_ed25519(body: bytes) -> str:
    """Base64 Ed25519 signature of the raw body (the ``x-ghl-signature`` value)."""
    return base64.b64encode(_ed25519_key().sign(body)).decode("ascii")


def sign_rsa(body: bytes) -> str:
    """Base64 RSA-SHA256 PKCS#1 v1.5 signature of the raw body (the ``x-wh-signature`` value)."""
    return base64.b64encode(_rsa_key().sign(body, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def signed_headers(body: bytes, scheme: Scheme = "ed25519") -> dict[str, str]:
    """``content-type`` plus the signature header(s) for ``body``."""
    headers = {"content-type": "application/json"}
    if scheme in ("ed25519", "both"):
        headers[ED25519_HEADER] = sign_ed25519(body)
    if scheme in ("rsa", "both"):
        headers[RSA_HEADER] = sign_rsa(body)
    if scheme not in ("ed25519", "rsa", "both", "none"):
        raise ValueError(f"unknown scheme {scheme!r}")
    return headers


def iso_timestamp(when: datetime | None = None) -> str:
    """``2025-01-28T14:35:00.123Z``: the shape of a delivery's ``timestamp``."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def make_webhook(
    type: str,
    appointment: Mapping[str, Any],
    location_id: str,
    webhook_id: str | None = None,
    timestamp: str | datetime | None = None,
) -> bytes:
    """A webhook body as PowerLeads delivers it: compact JSON with ``webhookId`` and ``timestamp``."""
    ts = timestamp if isinstance(timestamp, str) else iso_timestamp(timestamp)
    return compact(
        {
            "type": type,
            "locationId": location_id,
            "appointment": dict(appointment),
            "appId": DEV_APP_ID,
            "versionId": DEV_VERSION_ID,
            "webhookId": webhook_id or str(uuid.uuid4()),
            "timestamp": ts,
        }
    )


def restamp(body: bytes, webhook_id: str | None = None, timestamp: str | datetime | None = None) -> bytes:
    """The same webhook with a new ``webhookId`` and a current ``timestamp`` (as a redelivery
    of a fresh event would carry), re-serialised compactly."""
    data = json.loads(body)
    data["webhookId"] = webhook_id or str(uuid.uuid4())
    data["timestamp"] = timestamp if isinstance(timestamp, str) else iso_timestamp(timestamp)
    return compact(data)


def webhook_snapshot(event: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """A webhook ``appointment`` snapshot made from a Get Appointment ``event`` object."""
    snapshot = {k: event[k] for k in SNAPSHOT_FIELDS if k in event}
    snapshot.update(overrides)
    return snapshot


def curl_command(url: str, body: bytes, scheme: Scheme = "ed25519") -> str:
    """A ready-to-paste ``curl`` posting ``body`` with fresh signature headers."""
    parts = ["curl", "-sS", "-i", "-X", "POST", shlex.quote(url)]
    for name, value in signed_headers(body, scheme).items():
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    parts += ["--data-binary", shlex.quote(body.decode("utf-8"))]
    return " ".join(parts)


# ---- sample events ------------------------------------------------------------------------


def _load_event(event_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS_DIR / "appointments" / f"{event_id}.json").read_text())
    event: dict[str, Any] = data["event"]
    return event


# name -> (webhook type, Get Appointment sample id, snapshot overrides)
SAMPLES: dict[str, tuple[WebhookType, str, dict[str, Any]]] = {
    # The seed example from the Get Appointment docs (recurring master, isRecurring "true").
    "create": ("AppointmentCreate", "ocQHyuzHvysMo5N5VsXc", {}),
    # A status change to cancelled on an existing appointment.
    "update": ("AppointmentUpdate", "Hc3Jd8Fe2Gh5Ki9Lm0Np", {}),
    # A delete: the record is built from this snapshot, whatever upstream says.
    "delete": ("AppointmentDelete", "Zy1Xw3Vu5Ts7Rq9Po2Nm", {}),
    # One instance of a recurring series: id <masterId>_<startEpochMs>_<durationSeconds>.
    "recurring-instance": ("AppointmentUpdate", "ocQHyuzHvysMo5N5VsXc_1729821600000_1800", {}),
}
APIGW_SAMPLES = ("create", "update", "delete")


def sample_webhook(
    name: str, timestamp: str | datetime | None = None, webhook_id: str | None = None
) -> bytes:
    """The body of sample ``name`` (see ``SAMPLES``); stable ``webhookId`` unless given."""
    webhook_type, event_id, overrides = SAMPLES[name]
    event = _load_event(event_id)
    return make_webhook(
        webhook_type,
        webhook_snapshot(event, **overrides),
        event["locationId"],
        webhook_id=webhook_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"powerleads-dev/webhook/{name}")),
        timestamp=timestamp,
    )


def ingest_message(
    raw_body: bytes,
    received_at: str,
    dedupe_id: str,
    signatures: Mapping[str, str] | None = None,
    trigger: Trigger = "webhook",
) -> str:
    """The ingest queue message for a raw webhook body, exactly as the receiver writes it
    (``wire.IngestMessage``): the raw body as received, when, the dedupe id, the signatures."""
    return IngestMessage(
        body=raw_body.decode("utf-8"),
        received_at=received_at,
        dedupe_id=dedupe_id,
        signatures=dict(signatures or {}),
        trigger=trigger,
    ).encode()


def dedupe_id_for(raw_body: bytes) -> str:
    """The FIFO deduplication id the receiver gives this body (``wire.webhook_dedupe_id``)."""
    try:
        webhook_id = read_webhook(parse_json_object(raw_body)).webhook_id
    except WireError:
        webhook_id = None
    return webhook_dedupe_id(webhook_id, raw_body)


def ingest_record(
    body: bytes, received_at: str, *, message_id: str, receipt: str, sent_ms: int, sequence: int
) -> dict[str, Any]:
    """The Lambda SQS event record of a webhook as the receiver queues it (dev Ed25519 signature)."""
    from dev.stack.poller import sqs_record  # noqa: PLC0415 - keeps `import dev.fakes.signing` light

    ref = read_webhook(parse_json_object(body))
    dedupe_id = dedupe_id_for(body)
    message_body = ingest_message(body, received_at, dedupe_id, {ED25519_HEADER: sign_ed25519(body)})
    message = {
        "MessageId": message_id,
        "ReceiptHandle": receipt,
        "Body": message_body,
        "MD5OfBody": hashlib.md5(message_body.encode(), usedforsecurity=False).hexdigest(),
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(sent_ms),
            "SenderId": "AROADEVSAMPLEWEBHOOK:WebhookFunction",
            "ApproximateFirstReceiveTimestamp": str(sent_ms + 5),
            "SequenceNumber": str(sequence),
            "MessageGroupId": ref.appointment_id,
            "MessageDeduplicationId": dedupe_id,
        },
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": value}
            for name, value in ingest_attributes(ref).items()
        },
    }
    return sqs_record(message, INGEST_QUEUE_ARN, "us-east-1")


def write_events(root: Path = EVENTS_DIR, timestamp: str | datetime | None = None) -> list[Path]:
    """Regenerate ``events/webhooks``, ``events/apigw`` and ``events/sqs``; returns the paths."""
    from dev.stack.gateway import build_http_api_event  # noqa: PLC0415 - keeps `import dev.fakes.signing` light

    ts = timestamp if isinstance(timestamp, str) else iso_timestamp(timestamp)
    epoch_ms = int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)
    written: list[Path] = []

    def write(path: Path, content: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        written.append(path)

    bodies = {name: sample_webhook(name, ts) for name in SAMPLES}
    for name, body in bodies.items():
        # Exactly the bytes a sender posts (compact, no trailing newline): sign the file as is.
        write(root / "webhooks" / f"{name}.json", body.decode("utf-8"))

    def apigw(name: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        return build_http_api_event(
            body=body,
            headers={
                "host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
                "user-agent": "HighLevel-Webhooks/1.0",
                "content-length": str(len(body)),
                **headers,
                "x-forwarded-for": "34.123.45.67",
                "x-forwarded-port": "443",
                "x-forwarded-proto": "https",
            },
            source_ip="34.123.45.67",
            request_id=f"DevSample{name.replace('-', '').title()}=",
            time_epoch_ms=epoch_ms,
            domain_name="abcdef1234.execute-api.us-east-1.amazonaws.com",
        )

    for name in APIGW_SAMPLES:
        body = bodies[name]
        write(
            root / "apigw" / f"{name}.json",
            json.dumps(apigw(name, body, signed_headers(body)), indent=2) + "\n",
        )
    body = bodies["recurring-instance"]
    write(
        root / "apigw" / "recurring-instance-rsa.json",
        json.dumps(apigw("recurring-instance", body, signed_headers(body, "rsa")), indent=2) + "\n",
    )
    # Signed, then the body changed in transit: the receiver must answer 401.
    body = bodies["create"]
    tampered = body.replace(b'"confirmed"', b'"cancelled"')
    write(
        root / "apigw" / "bad-signature.json",
        json.dumps(apigw("bad-signature", tampered, signed_headers(body)), indent=2) + "\n",
    )

    records = [
        ingest_record(
            body,
            ts,
            message_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"powerleads-dev/stack/sqs/{name}")),
            receipt=base64.b64encode(f"dev-receipt-{name}".encode()).decode("ascii"),
            sent_ms=epoch_ms + index,
            sequence=18_880_000_000_000_000_000 + index,
        )
        for index, (name, body) in enumerate(bodies.items())
    ]
    write(root / "sqs" / "batch.json", json.dumps({"Records": records}, indent=2) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("file", nargs="?", type=Path, help="a raw webhook body to sign")
    parser.add_argument("--write-events", action="store_true", help="regenerate the sample events")
    parser.add_argument("--timestamp", help="webhook timestamp for --write-events (default: now)")
    parser.add_argument(
        "--out", type=Path, default=EVENTS_DIR, help="--write-events into this directory (default: events/)"
    )
    parser.add_argument("--scheme", choices=["ed25519", "rsa", "both"], default="ed25519")
    parser.add_argument("--restamp", action="store_true", help="new webhookId and current timestamp first")
    parser.add_argument("--url", default="http://127.0.0.1:3000/webhooks/appointments")
    args = parser.parse_args(argv)

    if args.write_events:
        for path in write_events(args.out.resolve(), timestamp=args.timestamp):
            print(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)
        return 0
    if args.file is None:
        parser.print_usage(sys.stderr)
        return 2
    body = args.file.read_bytes()
    if args.restamp:
        body = restamp(body)
    print(curl_command(args.url, body, args.scheme))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
