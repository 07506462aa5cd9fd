"""Webhook intake: verify, validate, enqueue, and answer in a way the sender's retries respect.

Order of checks: size (413) -> signature over the raw bytes (401) -> UTF-8 + JSON (400) ->
freshness of ``timestamp`` (401 stale) -> ``type`` (other types: 200 ignored) -> fields (400) ->
durable enqueue (202, or 503 so the sender retries). Only a failed queue write returns 5xx.

Validation here is hand-rolled on purpose: the receiver must stay cheap to import (no pydantic
model build on its cold path) and must name the failing field precisely.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .signatures import ED25519_HEADER, RSA_HEADER, SignatureVerifier, Verdict, header_value
from .wire import APPOINTMENT_EVENT_TYPES, is_valid_id, parse_upstream_time, rfc3339

MAX_BODY_BYTES = 256 * 1024
MAX_JSON_DEPTH = 32
MAX_FUTURE_SKEW = timedelta(minutes=5)
_WEBHOOK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
DEFAULT_MAX_AGE_SECONDS = 86400
MAX_AGE_LIMIT_SECONDS = 30 * 86400  # a wider replay window is no window (and 10**12 overflows datetime)


class ReceiverConfigError(RuntimeError):
    """WebhookFunction is misconfigured: the cold start fails with a message naming the variable."""


@dataclass(frozen=True)
class ReceiverConfig:
    """The environment WebhookFunction reads (DESIGN.md), parsed without pydantic (cold start)."""

    ingest_queue_url: str
    ed25519_public_key: str | None = None
    rsa_public_key: str | None = None
    signature_required: bool = True
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ReceiverConfig:
        def text(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        queue_url = text("INGEST_QUEUE_URL")
        if not queue_url:
            raise ReceiverConfigError("INGEST_QUEUE_URL is required (the FIFO ingest queue URL)")
        required = (text("WEBHOOK_SIGNATURE_REQUIRED") or "true").lower()
        if required not in _TRUE | _FALSE:
            raise ReceiverConfigError("WEBHOOK_SIGNATURE_REQUIRED must be true or false")
        max_age_text = text("WEBHOOK_MAX_AGE_SECONDS") or str(DEFAULT_MAX_AGE_SECONDS)
        try:
            max_age = int(max_age_text)
        except ValueError:
            max_age = 0
        if not 0 < max_age <= MAX_AGE_LIMIT_SECONDS:
            raise ReceiverConfigError(
                f"WEBHOOK_MAX_AGE_SECONDS must be a whole number of seconds in 1..{MAX_AGE_LIMIT_SECONDS}"
            )
        return cls(
            ingest_queue_url=queue_url,
            ed25519_public_key=text("WEBHOOK_ED25519_PUBLIC_KEY"),
            rsa_public_key=text("WEBHOOK_RSA_PUBLIC_KEY"),
            signature_required=required in _TRUE,
            max_age_seconds=max_age,
        )


class Sink(Protocol):
    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str: ...


@dataclass(frozen=True)
class Reply:
    """HTTP answer: status + JSON body."""

    status: int
    body: dict[str, Any]
    outcome: str = "rejected"  # accepted | ignored | rejected | failed
    dedupe_id: str | None = None
    verdict: str | None = None  # which signature verified (ed25519 | rsa), or missing | invalid
    cause: str | None = None  # why a queue write failed (exception class / AWS error code)


def _error(status: int, error: str, message: str, outcome: str = "rejected") -> Reply:
    return Reply(status, {"error": error, "message": message}, outcome)


class BadRequest(ValueError):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


def _reject_constant(name: str) -> Any:
    raise BadRequest("invalid_json", f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BadRequest("invalid_json", f"duplicate key {key[:40]!r}: refusing an ambiguous body")
        result[key] = value
    return result


def _encodable(text: str) -> bool:
    """False for a lone UTF-16 surrogate (``"\\ud800"``): Python's json accepts it, but no strict
    JSON parser downstream (pydantic's included) will, so it must be refused here, at intake."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (no recursion on hostile input); refuses lone surrogates."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, depth)
            for key, child in node.items():
                if not _encodable(key):
                    raise BadRequest("invalid_json", "lone UTF-16 surrogate escape in a key")
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str) and not _encodable(node):
            raise BadRequest("invalid_json", "lone UTF-16 surrogate escape in a string")
    return deepest


def parse_body(raw: bytes) -> dict[str, Any]:
    """Strict JSON: UTF-8, an object, no NaN/Infinity, no duplicate keys, bounded depth."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("invalid_encoding", "body is not valid UTF-8") from None
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except RecursionError:
        raise BadRequest("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        if isinstance(exc, BadRequest):
            raise
        raise BadRequest("invalid_json", f"body is not valid JSON: {exc.args[0][:80]}") from None
    if not isinstance(document, dict):
        raise BadRequest("invalid_json", "body must be a JSON object")
    if _depth(document) > MAX_JSON_DEPTH:
        raise BadRequest("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return document


def _require_id(container: Mapping[str, Any], name: str, path: str) -> str:
    value = container.get(name)
    if value is None or value == "":
        raise BadRequest("missing_field", f"{path} is required")
    if not is_valid_id(value):
        raise BadRequest("invalid_field", f"{path} must match [A-Za-z0-9_-]{{1,128}}")
    return str(value)


def _dedupe_id(document: Mapping[str, Any], raw: bytes) -> str:
    """``webhookId`` when it is a usable FIFO deduplication id, else sha256 of the raw body."""
    webhook_id = document.get("webhookId")
    if isinstance(webhook_id, str) and _WEBHOOK_ID.match(webhook_id):
        return webhook_id
    return hashlib.sha256(raw).hexdigest()


def _failure_cause(exc: BaseException) -> str:
    """Exception class and, for botocore errors, the AWS error code: enough to act on, no payload."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return f"{type(exc).__name__}: {code}" if code else type(exc).__name__


@dataclass
class WebhookReceiver:
    """Intake logic, independent of API Gateway and of boto3 (the sink is injected)."""

    verifier: SignatureVerifier
    sink: Sink
    signature_required: bool = True
    max_age: timedelta = timedelta(days=1)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def receive(self, raw: bytes, headers: Mapping[str, str]) -> Reply:
        """Answer one delivery. ``headers`` names are matched regardless of case."""
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, "payload_too_large", f"body exceeds {MAX_BODY_BYTES} bytes")
        verdict = self.verifier.verify(raw, headers)
        if verdict is Verdict.INVALID:
            return replace(
                _error(401, "invalid_signature", "signature verification failed"), verdict=verdict.value
            )
        if verdict is Verdict.MISSING and self.signature_required:
            return replace(
                _error(401, "missing_signature", f"{ED25519_HEADER} or {RSA_HEADER} is required"),
                verdict=verdict.value,
            )
        try:
            document = parse_body(raw)
        except BadRequest as exc:
            return replace(_error(400, exc.error, str(exc)), verdict=verdict.value)
        dedupe_id = _dedupe_id(document, raw)
        try:
            stale = self._stale(document.get("timestamp"))
            if stale:
                return replace(_error(401, "stale", stale), verdict=verdict.value, dedupe_id=dedupe_id)
            event_type = document.get("type")
            if event_type is None or event_type == "":
                raise BadRequest("missing_field", "type is required")
            if not isinstance(event_type, str):
                raise BadRequest("invalid_field", "type must be a string")
            if event_type not in APPOINTMENT_EVENT_TYPES:
                return Reply(
                    200,
                    {"status": "ignored", "type": event_type[:64]},
                    "ignored",
                    dedupe_id,
                    verdict=verdict.value,
                )
            if verdict is Verdict.MISSING and event_type == "AppointmentDelete":
                # Unsigned mode is for local work; a forged delete would publish a tombstone.
                return replace(
                    _error(401, "missing_signature", "an unsigned AppointmentDelete is never accepted"),
                    verdict=verdict.value,
                    dedupe_id=dedupe_id,
                )
            location_id = _require_id(document, "locationId", "locationId")
            appointment = document.get("appointment")
            if appointment is None:
                raise BadRequest("missing_field", "appointment.id is required")
            if not isinstance(appointment, dict):
                raise BadRequest("invalid_field", "appointment must be an object")
            appointment_id = _require_id(appointment, "id", "appointment.id")
            webhook_id = document.get("webhookId")
            if webhook_id not in (None, "") and (
                not isinstance(webhook_id, str) or not _WEBHOOK_ID.match(webhook_id)
            ):
                raise BadRequest("invalid_field", "webhookId must match [A-Za-z0-9_.:-]{1,128}")
        except BadRequest as exc:
            return replace(_error(400, exc.error, str(exc)), verdict=verdict.value, dedupe_id=dedupe_id)

        signatures = {
            name: value for name in (ED25519_HEADER, RSA_HEADER) if (value := header_value(headers, name))
        }
        message = {
            "body": raw.decode("utf-8"),
            "receivedAt": rfc3339(self.clock()),
            "dedupeId": dedupe_id,
            "signatures": signatures,
        }
        try:
            self.sink.send(
                json.dumps(message, separators=(",", ":")),
                group_id=appointment_id,
                dedupe_id=dedupe_id,
                attributes={"eventType": event_type, "locationId": location_id},
            )
        except Exception as exc:  # noqa: BLE001 - any queue failure means: not accepted, sender retries
            return Reply(
                503,
                {"error": "unavailable", "message": "could not queue the webhook; retry"},
                "failed",
                dedupe_id,
                verdict=verdict.value,
                cause=_failure_cause(exc),
            )
        return Reply(
            202,
            {"status": "accepted", "dedupeId": dedupe_id, "appointmentId": appointment_id},
            "accepted",
            dedupe_id,
            verdict=verdict.value,
        )

    def _stale(self, timestamp: Any) -> str | None:
        """Replay window: older than max age, or more than five minutes ahead."""
        if timestamp is None:
            return None
        if not isinstance(timestamp, str):
            raise BadRequest("invalid_field", "timestamp must be an ISO 8601 string")
        try:
            sent = parse_upstream_time(timestamp)
        except ValueError:
            raise BadRequest("invalid_field", "timestamp must be an ISO 8601 date-time") from None
        now = self.clock()
        if sent < now - self.max_age:
            return f"timestamp is older than {int(self.max_age.total_seconds())} seconds"
        if sent > now + MAX_FUTURE_SKEW:
            return "timestamp is more than five minutes in the future"
        return None
