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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .formats import APPOINTMENT_EVENT_TYPES, is_valid_id, parse_upstream_time, rfc3339
from .signatures import ED25519_HEADER, RSA_HEADER, SignatureVerifier, Verdict

MAX_BODY_BYTES = 256 * 1024
MAX_JSON_DEPTH = 32
MAX_FUTURE_SKEW = timedelta(minutes=5)
_WEBHOOK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class Sink(Protocol):
    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str: ...


@dataclass(frozen=True)
class Reply:
    """HTTP answer: status + JSON body."""

    status: int
    body: dict[str, Any]
    outcome: str = "rejected"  # accepted | ignored | rejected | failed
    dedupe_id: str | None = None


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


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (no recursion on hostile input)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node)
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


@dataclass
class WebhookReceiver:
    """Intake logic, independent of API Gateway and of boto3 (the sink is injected)."""

    verifier: SignatureVerifier
    sink: Sink
    signature_required: bool = True
    max_age: timedelta = timedelta(days=1)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def receive(self, raw: bytes, headers: Mapping[str, str]) -> Reply:
        """``headers`` with lower-case names (API Gateway v2 lower-cases them)."""
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, "payload_too_large", f"body exceeds {MAX_BODY_BYTES} bytes")
        verdict = self.verifier.verify(raw, headers)
        if verdict is Verdict.INVALID or (verdict is Verdict.MISSING and self.signature_required):
            return _error(
                401,
                "invalid_signature" if verdict is Verdict.INVALID else "missing_signature",
                "signature verification failed"
                if verdict is Verdict.INVALID
                else f"{ED25519_HEADER} or {RSA_HEADER} is required",
            )
        try:
            document = parse_body(raw)
            stale = self._stale(document.get("timestamp"))
            if stale:
                return _error(401, "stale", stale)
            event_type = document.get("type")
            if not isinstance(event_type, str) or not event_type:
                raise BadRequest("missing_field", "type is required")
            if event_type not in APPOINTMENT_EVENT_TYPES:
                return Reply(200, {"status": "ignored", "type": event_type[:64]}, "ignored")
            location_id = _require_id(document, "locationId", "locationId")
            appointment = document.get("appointment")
            if not isinstance(appointment, dict):
                raise BadRequest("missing_field", "appointment is required and must be an object")
            appointment_id = _require_id(appointment, "id", "appointment.id")
            webhook_id = document.get("webhookId")
            if webhook_id is not None and (
                not isinstance(webhook_id, str) or not _WEBHOOK_ID.match(webhook_id)
            ):
                raise BadRequest("invalid_field", "webhookId must match [A-Za-z0-9_.:-]{1,128}")
        except BadRequest as exc:
            return _error(400, exc.error, str(exc))

        dedupe_id = webhook_id or hashlib.sha256(raw).hexdigest()
        message = {
            "body": raw.decode("utf-8"),
            "receivedAt": rfc3339(self.clock()),
            "dedupeId": dedupe_id,
            "signatures": {h: headers[h] for h in (ED25519_HEADER, RSA_HEADER) if headers.get(h)},
        }
        try:
            self.sink.send(
                json.dumps(message, separators=(",", ":")),
                group_id=appointment_id,
                dedupe_id=dedupe_id,
                attributes={"eventType": event_type, "locationId": location_id},
            )
        except Exception:  # noqa: BLE001 - any queue failure means: not accepted, sender retries
            return Reply(
                503,
                {"error": "unavailable", "message": "could not queue the webhook; retry"},
                "failed",
                dedupe_id,
            )
        return Reply(
            202,
            {"status": "accepted", "dedupeId": dedupe_id, "appointmentId": appointment_id},
            "accepted",
            dedupe_id,
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
