"""Webhook intake: verify, check the tenant, enqueue, and answer so the sender's retries respect it.

Order of checks: size (413) -> signature over the raw bytes (401) -> strict JSON (400) ->
freshness of a string ``timestamp`` (401 stale) -> ``type`` (other types: 200 ignored) ->
routing fields (400) -> tenant (another app or location: 200 ignored) -> durable enqueue within a
deadline (202, or 429 with ``Retry-After`` so the sender retries).

Why 429 and not 503: HighLevel's documented retry policy retries only 429; every other status is
final for it, so a 5xx for a transient failure would lose the event. This module never answers
a 5xx; ``functions/webhook/app.py`` turns anything unexpected into a 429 as well.

What a body must hold is decided in ``wire`` (the one set of wire rules the enricher shares):
a signed body that is ours is accepted whenever its type, location and appointment id are
usable, however odd the rest (webhookId, snapshot fields, timestamp type) may be, because the
enricher fetches the truth and a final 4xx would lose a genuine event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

from ..clocks import Monotonic, WallClock, utc_now
from ..config import Tenancy
from ..wire import (
    APPOINTMENT_EVENT_TYPES,
    DEFAULT_MAX_AGE_SECONDS,
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    IngestMessage,
    WebhookRef,
    WireError,
    event_type,
    ingest_attributes,
    parse_json_object,
    parse_upstream_time,
    read_webhook,
    rfc3339,
    webhook_dedupe_id,
)
from .signatures import ED25519_HEADER, RSA_HEADER, SignatureVerifier, Verdict, header_value

__all__ = [
    "DEFAULT_MAX_AGE_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "RETRY_AFTER_SECONDS",
    "BadRequest",
    "Reply",
    "Sink",
    "Tenancy",
    "WebhookReceiver",
    "transient",
]

BadRequest = WireError  # the name older callers and tests know
MAX_FUTURE_SKEW = timedelta(minutes=5)
# What we ask the sender to wait. HighLevel documents its own schedule (about 10 minutes); the
# header is a hint for senders that honour it, and short enough that a blip costs little.
RETRY_AFTER_SECONDS = 60
# The queue write gets this long by default; the handler passes a deadline that also respects
# the Lambda's remaining time. The whole answer stays under 3 s.
DEFAULT_SEND_BUDGET_SECONDS = 2.5


class Sink(Protocol):
    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str: ...


@dataclass(frozen=True)
class Reply:
    """HTTP answer: status + JSON body (+ headers), and what the handler logs and counts."""

    status: int
    body: dict[str, Any]
    outcome: str = "rejected"  # accepted | ignored | foreign | rejected | deferred
    dedupe_id: str | None = None
    verdict: str | None = None  # which signature verified (ed25519 | rsa), or missing | invalid
    cause: str | None = None  # why we deferred: exception class / AWS error code, never a payload
    headers: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # oddities accepted anyway (logged), e.g. timestamp_not_checked


def _error(status: int, error: str, message: str, outcome: str = "rejected") -> Reply:
    return Reply(status, {"error": error, "message": message}, outcome)


def transient(error: str, message: str, cause: str | None = None) -> Reply:
    """429 with ``Retry-After``: the one answer HighLevel retries under every published policy."""
    return Reply(
        429,
        {"error": error, "message": message},
        "deferred",
        cause=cause,
        headers={"retry-after": str(RETRY_AFTER_SECONDS)},
    )


def failure_cause(exc: BaseException) -> str:
    """Exception class and, for botocore errors, the AWS error code: enough to act on, no payload."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return f"{type(exc).__name__}: {code}" if code else type(exc).__name__


class _SendTimeout(Exception):
    """The queue write did not return before the deadline (it may still land later)."""


def _send_within(send: Callable[[], str], deadline: float | None, monotonic: Monotonic) -> str:
    """Run ``send`` and wait for it until ``deadline`` (a ``monotonic()`` value); no deadline: inline.

    A daemon thread per call, so a write stuck on a trickling socket (botocore's read timeout is
    per read, not per response) cannot hold the answer nor the next invocation. If it lands after
    we answered 429, the sender's retry carries the same dedupe id: FIFO deduplication (5 min)
    or the enricher's idempotency table makes the second copy a no-op.
    """
    if deadline is None:
        return send()
    outcome: list[Any] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(("ok", send()))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append(("error", exc))
        finally:
            done.set()

    threading.Thread(target=run, name="ingest-send", daemon=True).start()
    if not done.wait(max(0.0, deadline - monotonic())):
        raise _SendTimeout("queue write still running at the deadline")
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return str(value)


@dataclass
class WebhookReceiver:
    """Intake logic, independent of API Gateway and of boto3 (the sink is injected)."""

    verifier: SignatureVerifier
    sink: Sink
    signature_required: bool = True
    max_age: timedelta = timedelta(seconds=DEFAULT_MAX_AGE_SECONDS)
    now: WallClock = field(default=utc_now)
    monotonic: Monotonic = field(default=time.monotonic)  # the clock of ``deadline``
    tenancy: Tenancy = field(default_factory=Tenancy)

    def receive(self, raw: bytes, headers: Mapping[str, str], *, deadline: float | None = None) -> Reply:
        """Answer one delivery. ``headers`` names are matched regardless of case; ``deadline``
        (a ``monotonic()`` value) bounds the queue write."""
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
            document = parse_json_object(raw)
        except WireError as exc:
            return replace(_error(400, exc.error, str(exc)), verdict=verdict.value)
        reply = self._route(raw, document, headers, deadline, unsigned=verdict is Verdict.MISSING)
        return replace(reply, verdict=verdict.value)

    def _route(
        self,
        raw: bytes,
        document: dict[str, Any],
        headers: Mapping[str, str],
        deadline: float | None,
        *,
        unsigned: bool,
    ) -> Reply:
        webhook_id = document.get("webhookId")
        # Until the body is read, the log correlation id: a string webhookId as read_webhook takes it.
        correlation = webhook_dedupe_id(
            webhook_id if isinstance(webhook_id, str) and webhook_id else None, raw
        )
        stale, notes = self._freshness(document.get("timestamp"))
        if stale:
            return replace(_error(401, "stale", stale), dedupe_id=correlation)
        try:
            kind = event_type(document)
            if kind not in APPOINTMENT_EVENT_TYPES:
                return Reply(
                    200, {"status": "ignored", "type": kind[:64]}, "ignored", correlation, notes=notes
                )
            ref = read_webhook(document)
        except WireError as exc:
            return replace(_error(400, exc.error, str(exc)), dedupe_id=correlation, notes=notes)
        dedupe_id = webhook_dedupe_id(ref.webhook_id, raw)
        if unsigned and ref.type == "AppointmentDelete":
            # Unsigned mode is for local work; a forged delete would publish a tombstone.
            reply = _error(401, "missing_signature", "an unsigned AppointmentDelete is never accepted")
            return replace(reply, dedupe_id=dedupe_id, notes=notes)
        reason = self.tenancy.foreign(ref)
        if reason is not None:
            return Reply(
                200, {"status": "ignored", "reason": reason}, "foreign", dedupe_id, cause=reason, notes=notes
            )
        reply = self._enqueue(raw, ref, dedupe_id, headers, deadline)
        return replace(reply, dedupe_id=dedupe_id, notes=notes)

    def _enqueue(
        self,
        raw: bytes,
        ref: WebhookRef,
        dedupe_id: str,
        headers: Mapping[str, str],
        deadline: float | None,
    ) -> Reply:
        """The durable write, bounded by ``deadline``: 202 once queued, 429 otherwise."""
        message = IngestMessage(
            body=raw.decode("utf-8"),
            received_at=rfc3339(self.now()),
            dedupe_id=dedupe_id,
            signatures={n: v for n in (ED25519_HEADER, RSA_HEADER) if (v := header_value(headers, n))},
        )
        try:
            _send_within(
                lambda: self.sink.send(
                    message.encode(),
                    group_id=ref.appointment_id,
                    dedupe_id=dedupe_id,
                    attributes=ingest_attributes(ref),
                ),
                deadline,
                self.monotonic,
            )
        except _SendTimeout:
            return transient("queue_timeout", "the queue did not confirm the write in time; retry", "timeout")
        except Exception as exc:  # noqa: BLE001 - any queue failure means: not accepted, sender retries
            return transient("queue_unavailable", "could not queue the webhook; retry", failure_cause(exc))
        body = {"status": "accepted", "dedupeId": dedupe_id, "appointmentId": ref.appointment_id}
        return Reply(202, body, "accepted")

    def _freshness(self, timestamp: Any) -> tuple[str | None, tuple[str, ...]]:
        """(why the body is stale, notes). Only a readable string timestamp is checked: any other
        value is accepted unchecked and noted, since refusing it finally could lose an event."""
        if timestamp is None:
            return None, ()
        if not isinstance(timestamp, str):
            return None, ("timestamp_not_a_string",)
        try:
            sent = parse_upstream_time(timestamp)
        except ValueError:
            return None, ("timestamp_unreadable",)
        now = self.now()
        if sent < now - self.max_age:
            return f"timestamp is older than {int(self.max_age.total_seconds())} seconds", ()
        if sent > now + MAX_FUTURE_SKEW:
            return "timestamp is more than five minutes in the future", ()
        return None, ()
