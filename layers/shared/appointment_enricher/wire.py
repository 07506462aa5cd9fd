"""Wire rules: the one place that says what crosses a boundary and how.

The receiver, the enricher, the reconciler and the tooling (``dev/``, ``bench/``) all read and
write webhooks and ingest messages through this module, so what the receiver accepts the
enricher can always parse. It holds:

* ids: what is safe in a URL path, a FIFO group id or a log line;
* the strict JSON reading of a webhook body, and the few fields intake needs
  (``type``, ``locationId``, ``appointment.id``); everything else about a webhook is the
  enricher's business, because the enricher fetches the truth;
* deduplication ids (webhook, reconcile);
* the ingest message (what the ingest queue carries) and its message attributes;
* defaults that more than one module needs (upstream URL and version, replay window, grace);
* upstream time parsing and RFC 3339 output.

Free of pydantic, boto3 and requests: the receiver's cold start does not pay for them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

from .errors import EnricherError

# ---- defaults ------------------------------------------------------------------------------

DEFAULT_API_BASE_URL: Final = "https://services.leadconnectorhq.com"
DEFAULT_API_VERSION: Final = "2021-04-15"
# Each related-entity endpoint's own ``Version`` (HighLevel's OpenAPI specs, apps/*.json: the one
# value each endpoint's ``Version`` enum allows); the appointment keeps POWERLEADS_API_VERSION.
CONTACTS_API_VERSION: Final = "2021-07-28"
CALENDARS_API_VERSION: Final = DEFAULT_API_VERSION
USERS_API_VERSION: Final = CONTACTS_API_VERSION
LOCATIONS_API_VERSION: Final = CONTACTS_API_VERSION
DEFAULT_MAX_AGE_SECONDS: Final = 86_400
MAX_MAX_AGE_SECONDS: Final = 30 * 86_400  # a longer replay window is a misconfiguration
DEFAULT_NOT_FOUND_GRACE_SECONDS: Final = 120
MAX_BODY_BYTES: Final = 256 * 1024
MAX_JSON_DEPTH: Final = 32

# ---- ids and event types -------------------------------------------------------------------

ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,128}$"
_ID_RE = re.compile(ID_PATTERN)
# What we use verbatim as a FIFO deduplication id; any other webhookId is hashed (never refused).
_WEBHOOK_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

EventType = Literal["AppointmentCreate", "AppointmentUpdate", "AppointmentDelete"]
APPOINTMENT_EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))
Trigger = Literal["webhook", "reconcile", "backfill"]
TRIGGERS: frozenset[str] = frozenset(get_args(Trigger))


def is_valid_id(value: object) -> bool:
    """True for ids safe to put in a URL path, a queue group id or a log line."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


class WireError(EnricherError, ValueError):
    """A body or message that cannot be used; ``error`` is the stable code clients see. Never
    retryable: the same bytes fail the same way."""

    error_type = "InvalidIngestMessage"  # the enricher quarantines it under this name
    retryable = False

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


# ---- strict JSON ---------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise WireError("invalid_json", f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise WireError("invalid_json", f"duplicate key {key[:40]!r}: refusing an ambiguous body")
        result[key] = value
    return result


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    """A lone UTF-16 surrogate (what a JavaScript sender emits for a cut emoji) becomes U+FFFD:
    Python's json accepts it, but no strict JSON encoder downstream will, and refusing the body
    would lose a genuine event."""
    return text if text.isascii() else _LONE_SURROGATE.sub("\ufffd", text)


def _sanitise(value: Any) -> Any:
    """Lone surrogates replaced everywhere and depth bounded, iteratively (no recursion)."""
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, int]] = [(root, 0, 1)]
    while stack:
        parent, key, depth = stack.pop()
        node = parent[key]
        if isinstance(node, str):
            parent[key] = _clean(node)
        elif isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise WireError("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(node, dict):
                if any(not k.isascii() for k in node):
                    node = {_clean(k): v for k, v in node.items()}
                    parent[key] = node
                stack.extend((node, k, depth + 1) for k in node)
            else:
                stack.extend((node, i, depth + 1) for i in range(len(node)))
    return root[0]


def parse_json_object(raw: bytes | str) -> dict[str, Any]:
    """Strict JSON: UTF-8, an object, no NaN/Infinity, no duplicate keys, bounded depth.

    Lone surrogate escapes are replaced with U+FFFD rather than refused (see ``_clean``).
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("invalid_encoding", "body is not valid UTF-8") from None
    else:
        text = raw
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except RecursionError:
        raise WireError("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except WireError:
        raise
    except ValueError as exc:
        raise WireError("invalid_json", f"body is not valid JSON: {exc.args[0][:80]}") from None
    if not isinstance(document, dict):
        raise WireError("invalid_json", "body must be a JSON object")
    cleaned: dict[str, Any] = _sanitise(document)
    return cleaned


# ---- webhooks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookRef:
    """The fields of an appointment webhook that intake and routing need; nothing else is checked
    here. ``webhook_id`` and ``app_id`` are text as sent (or None), never refused."""

    type: EventType
    location_id: str
    appointment_id: str
    webhook_id: str | None
    app_id: str | None


def event_type(document: Mapping[str, Any]) -> str:
    """The body's ``type``; a missing or non-string type cannot be routed (400)."""
    value = document.get("type")
    if value is None or value == "":
        raise WireError("missing_field", "type is required")
    if not isinstance(value, str):
        raise WireError("invalid_field", "type must be a string")
    return value


def _require_id(container: Mapping[str, Any], name: str, path: str) -> str:
    value = container.get(name)
    if value is None or value == "":
        raise WireError("missing_field", f"{path} is required")
    if not is_valid_id(value):
        raise WireError("invalid_field", f"{path} must match [A-Za-z0-9_-]{{1,128}}")
    return str(value)


def _text_or_none(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def read_webhook(document: Mapping[str, Any]) -> WebhookRef:
    """An appointment webhook's routing fields, or ``WireError`` naming the unusable one."""
    kind = event_type(document)
    if kind not in APPOINTMENT_EVENT_TYPES:
        raise WireError("invalid_field", f"type {kind[:64]!r} is not an appointment event")
    location_id = _require_id(document, "locationId", "locationId")
    appointment = document.get("appointment")
    if appointment is None:
        raise WireError("missing_field", "appointment.id is required")
    if not isinstance(appointment, dict):
        raise WireError("invalid_field", "appointment must be an object")
    appointment_id = _require_id(appointment, "id", "appointment.id")
    return WebhookRef(
        type=kind,  # type: ignore[arg-type]  # checked against APPOINTMENT_EVENT_TYPES above
        location_id=location_id,
        appointment_id=appointment_id,
        webhook_id=_text_or_none(document.get("webhookId")),
        app_id=_text_or_none(document.get("appId")),
    )


def webhook_dedupe_id(webhook_id: str | None, raw: bytes) -> str:
    """FIFO deduplication id of a delivery: ``webhookId`` when it is usable verbatim, a digest of
    any other ``webhookId`` (a retry carries the same one), else sha256 of the raw body."""
    if webhook_id is not None and _WEBHOOK_ID_RE.fullmatch(webhook_id):
        return webhook_id
    if webhook_id is not None:
        return hashlib.sha256(f"webhookId:{webhook_id}".encode("utf-8", "surrogatepass")).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def reconcile_dedupe_id(appointment_id: str, date_updated: str | None, *, deleted: bool = False) -> str:
    """The reconciler's dedupe id: one enqueue per appointment state it found missing."""
    marker = "deleted" if deleted else (date_updated or "")
    return hashlib.sha256(f"reconcile:{appointment_id}:{marker}".encode()).hexdigest()


# ---- the ingest message --------------------------------------------------------------------


@dataclass(frozen=True)
class IngestMessage:
    """What the ingest queue carries: the webhook body exactly as received (so the enricher can
    re-verify and re-read it), when it was accepted, its dedupe id, the signature headers it came
    with, and what produced it (a webhook, the reconciler, or a backfill)."""

    body: str
    received_at: str
    dedupe_id: str
    signatures: Mapping[str, str] = field(default_factory=dict)
    trigger: Trigger = "webhook"

    def encode(self) -> str:
        message: dict[str, Any] = {
            "body": self.body,
            "receivedAt": self.received_at,
            "dedupeId": self.dedupe_id,
            "signatures": dict(self.signatures),
        }
        if self.trigger != "webhook":
            message["trigger"] = self.trigger
        return json.dumps(message, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> IngestMessage:
        """Parse an ingest message; ``WireError`` when it cannot be one (quarantined, not retried)."""
        document = parse_json_object(text)
        body, received_at, dedupe_id = (document.get(k) for k in ("body", "receivedAt", "dedupeId"))
        if not isinstance(body, str):
            raise WireError("invalid_ingest", "body must be a string")
        if not isinstance(received_at, str) or not received_at:
            raise WireError("invalid_ingest", "receivedAt must be a string")
        if not isinstance(dedupe_id, str) or not 1 <= len(dedupe_id) <= 128:
            raise WireError("invalid_ingest", "dedupeId must be a string of 1 to 128 characters")
        signatures = document.get("signatures") or {}
        if not isinstance(signatures, dict) or not all(isinstance(v, str) for v in signatures.values()):
            raise WireError("invalid_ingest", "signatures must map header names to strings")
        trigger = document.get("trigger", "webhook")
        if trigger not in TRIGGERS:
            raise WireError("invalid_ingest", f"trigger must be one of {sorted(TRIGGERS)}")
        return cls(body, received_at, dedupe_id, signatures, trigger)


def ingest_attributes(ref: WebhookRef, trigger: Trigger = "webhook") -> dict[str, str]:
    """SQS message attributes of an ingest message (for operators and filters, not for logic)."""
    attributes = {"eventType": ref.type, "locationId": ref.location_id}
    if trigger != "webhook":
        attributes["trigger"] = trigger
    return attributes


# ---- times ---------------------------------------------------------------------------------


def parse_upstream_time(value: str | datetime) -> datetime:
    """Parse an upstream time: ISO 8601 (offset, ``Z`` or none) or ``YYYY-MM-DD HH:MM:SS``.

    A value without an offset is taken as UTC: the API documents no other zone for it.
    """
    if isinstance(value, datetime):
        parsed = value
    else:
        text = value.strip()
        if not text or len(text) > 64:
            raise ValueError("not a date-time")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(
                "expected ISO 8601 date-time (e.g. 2023-09-25T16:00:00+05:30) or YYYY-MM-DD HH:MM:SS"
            ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed.astimezone(UTC)  # year 1 with +offset / year 9999 with -offset overflow in UTC
    except OverflowError:
        raise ValueError("date-time out of range once converted to UTC") from None
    return parsed


def try_upstream_time(value: object) -> datetime | None:
    """``parse_upstream_time`` for values that may be anything (webhook snapshots): None if unusable."""
    if not isinstance(value, str | datetime):
        return None
    try:
        return parse_upstream_time(value)
    except ValueError:
        return None


def rfc3339(moment: datetime) -> str:
    """UTC with a ``Z`` suffix; milliseconds only when present."""
    utc = moment.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
