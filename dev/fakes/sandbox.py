"""Sandbox PowerLeads (HighLevel / LeadConnector) API for local runs and integration tests.

Why it exists: the enricher's HTTP client must be exercised over real sockets (timeouts,
dropped connections, rate-limit headers, token rotation) without a PowerLeads account. This
module imitates the small slice of the upstream API the product uses, using only the standard
library so it never drags dependencies into the shipped layer:

* ``GET /calendars/events/appointments/{eventId}`` with HighLevel's auth, ``Version`` and error
  shapes (NestJS style ``{statusCode, message, error}``), plus the ``X-RateLimit-*`` headers and
  a real sliding-window limiter (100 requests / 10 s per location by default).
* ``POST /oauth/token`` (single-use refresh tokens) and ``POST /oauth/locationToken``.
* ``GET /calendars/?locationId=L`` and ``GET /calendars/events?locationId=L&calendarId=C&startTime=
  <epoch ms>&endTime=<epoch ms>`` (the reconciler's list endpoints) with the documented query
  parameters (422 when one is missing), events filtered by start time, and an appointment deleted
  here listed afterwards with ``deleted: true`` (while Get Appointment answers 404 for it). The
  events endpoint documents no paging; ``set_list_limit(n)`` makes it cut its answer at ``n``
  events (the earliest by start time), silently, as a capped API would.
* Fault injection and a control plane under ``/_sandbox/`` so another process (``make run``)
  can drive it. Control-plane calls are neither rate limited nor logged.

Dev-only: this file never ships in the Lambda layer.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import parse_qs, unquote, urlsplit

from dev.fakes.server import LocalServer

from . import sandbox_related

API_VERSION = "2021-04-15"
DEFAULT_TOKEN = "sandbox-token"  # noqa: S105 - a published dev-only token, not a secret
APPOINTMENTS_PREFIX = "/calendars/events/appointments/"
CONTROL_PREFIX = "/_sandbox/"
CALENDARS_PATH = "/calendars/"
EVENTS_PATH = "/calendars/events"
DEFAULT_APPOINTMENTS_DIR = Path(__file__).resolve().parents[2] / "events" / "appointments"
DEFAULT_SCOPE = "calendars.readonly calendars/events.readonly"

FaultKind = Literal["status", "hang", "invalid_body", "drop"]

# Upstream error bodies, copied from what HighLevel returns so clients are tested against the
# real shapes (note the 400 ``message`` is a list).
UNAUTHORIZED = {
    "statusCode": 401,
    "message": "Invalid token: access token is invalid",
    "error": "Unauthorized",
}
FORBIDDEN = {
    "statusCode": 403,
    "message": "The token is not authorized for this location",
    "error": "Forbidden",
}
BAD_VERSION = {
    "statusCode": 400,
    "message": [f"version must be one of the following values: {API_VERSION}"],
    "error": "Bad Request",
}
NOT_FOUND = {"statusCode": 404, "message": "Appointment not found", "error": "Not Found"}
TOO_MANY = {"statusCode": 429, "message": "Too many requests"}


@dataclass(frozen=True)
class Fault:
    """One injected upstream misbehaviour, consumed by exactly one appointment request.

    ``kind`` selects the behaviour:
    * ``status``: answer ``status`` with ``body`` (JSON value, or ``str`` sent raw; default a
      HighLevel-style error body) and extra ``headers`` (e.g. ``Retry-After``).
    * ``hang``: stall ``seconds`` before answering normally, to trigger client read timeouts.
    * ``invalid_body``: 200 with ``body`` that breaks the documented schema (default
      ``{"event": {"id": "x"}}``); a ``str`` body is sent raw, so it can be non-JSON.
    * ``drop``: close the connection without writing a response.
    ``event_id`` scopes the fault to requests for that appointment id only.
    """

    kind: FaultKind = "status"
    status: int = 500
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    event_id: str | None = None

    @classmethod
    def error(cls, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> Fault:
        return cls(kind="status", status=status, body=body, headers=dict(headers or {}))

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls(kind="hang", seconds=seconds)

    @classmethod
    def invalid_body(cls, body: Any = None) -> Fault:
        return cls(kind="invalid_body", status=200, body={"event": {"id": "x"}} if body is None else body)

    @classmethod
    def drop(cls) -> Fault:
        return cls(kind="drop")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build a fault from control-plane JSON, e.g. ``{"status": 429, "headers": {...}}``."""
        kind = cast(FaultKind, data.get("kind", "status"))
        if kind not in ("status", "hang", "invalid_body", "drop"):
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind == "invalid_body":
            fault = cls.invalid_body(data.get("body"))
        else:
            fault = cls(
                kind=kind,
                status=int(data.get("status", 500)),
                body=data.get("body"),
                headers={str(k): str(v) for k, v in dict(data.get("headers") or {}).items()},
                seconds=float(data.get("seconds", 0.0)),
            )
        event_id = data.get("event_id")
        return fault if event_id is None else dataclasses.replace(fault, event_id=str(event_id))


def _error_body(status: int) -> dict[str, Any]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    if status == 429:
        return dict(TOO_MANY)
    if status == 422:  # HighLevel's UnprocessableDTO carries a list message
        return {"statusCode": 422, "message": [phrase], "error": phrase}
    return {"statusCode": status, "message": phrase, "error": phrase}


class SlidingWindowLimiter:
    """Per-key sliding window: at most ``burst`` accepted hits in any ``interval_ms`` window.

    A real window (not a fixed bucket) so a client that waits ``X-RateLimit-Interval-Milliseconds``
    after ``Remaining: 0`` is guaranteed to get through, exactly the behaviour we rely on upstream.
    """

    def __init__(
        self, burst: int, interval_ms: int, daily_limit: int, *, count_rejected: bool = True
    ) -> None:
        self.burst = burst
        self.interval_ms = interval_ms
        self.daily_limit = daily_limit
        # A 429 still occupies the window (the real API may count it): a client that hammers a
        # full window keeps it full. Off: only accepted requests count.
        self.count_rejected = count_rejected
        self._hits: dict[str, deque[float]] = {}
        self._daily: dict[str, int] = {}
        self.monotonic: Callable[[], float] = time.monotonic  # a test may drive the window with a fake clock

    def _window(self, key: str, now: float) -> deque[float]:
        window = self._hits.setdefault(key, deque())
        while window and now - window[0] >= self.interval_ms / 1000:
            window.popleft()
        return window

    def hit(self, key: str) -> tuple[bool, int, int]:
        """Record a request; returns (allowed, remaining in window, remaining today)."""
        now = self.monotonic()
        window = self._window(key, now)
        used_today = self._daily.get(key, 0)
        if len(window) >= self.burst or used_today >= self.daily_limit:
            if self.count_rejected and len(window) >= self.burst:
                window.append(now)
            return False, 0, max(0, self.daily_limit - used_today)
        window.append(now)
        self._daily[key] = used_today + 1
        return True, self.burst - len(window), self.daily_limit - used_today - 1

    def peek(self, key: str) -> tuple[int, int]:
        window = self._window(key, self.monotonic())
        return max(0, self.burst - len(window)), max(0, self.daily_limit - self._daily.get(key, 0))

    def clear(self) -> None:
        self._hits.clear()
        self._daily.clear()


@dataclass
class _OAuthClient:
    client_secret: str
    refresh_token: str
    user_type: Literal["Location", "Company"]
    location_id: str | None
    company_id: str | None
    used_refresh_tokens: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Grant:
    """What an OAuth-issued access token may do."""

    user_type: Literal["Location", "Company"]
    location_id: str | None
    company_id: str | None
    expires_at: float


@dataclass
class _Reply:
    status: int
    body: Any = None  # JSON value, raw str, or None with drop=True
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


class SandboxServer(LocalServer):
    """An in-process fake of the PowerLeads API, served over real HTTP on a daemon thread."""

    thread_name = "powerleads-sandbox"
    poll_interval = 0.02  # keeps stop() cheap in test teardown

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Mapping[str, str | None] | None = None,
        appointments_dir: Path | None = None,
        *,
        rate_limit_burst: int = 100,
        rate_limit_interval_ms: int = 10_000,
        daily_limit: int = 200_000,
        access_token_expires_in: int = 86_399,
        rate_limit_counts_rejected: bool = True,
    ) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.access_token_expires_in = access_token_expires_in
        self.oauth_refresh_count = 0
        self.oauth_reuse_count = 0
        self._tokens: dict[str, str | None] = dict(tokens) if tokens is not None else {DEFAULT_TOKEN: None}
        self._grants: dict[str, _Grant] = {}
        self._clients: dict[str, _OAuthClient] = {}
        self._appointments: dict[str, dict[str, Any]] = {}
        self.related = sandbox_related.RelatedStore()  # contacts, calendars, users, locations
        self._tombstones: dict[str, dict[str, Any]] = {}  # deleted appointments, listed as deleted
        self._list_faults: deque[Fault] = deque()  # consumed by list requests only
        self._faults: deque[Fault] = deque()
        self._latency_ms = 0
        self._list_limit: int | None = None  # cut every events listing at this many (None: never)
        self._forced_zero: list[int] = []  # interval_ms to report, one per upcoming response
        self._log: list[dict[str, Any]] = []
        self._limiter = SlidingWindowLimiter(
            rate_limit_burst, rate_limit_interval_ms, daily_limit, count_rejected=rate_limit_counts_rejected
        )
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.load_appointments(appointments_dir or DEFAULT_APPOINTMENTS_DIR)

    # ----- lifecycle -------------------------------------------------------------------------

    def _make_server(self) -> ThreadingHTTPServer:
        """Bound at ``start()`` (on ``port``, 0 = any; a restart binds the same port again)."""
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), _Handler, self)
        self.port = httpd.server_address[1]
        return httpd

    def _on_stop(self) -> None:
        self._stopping.set()  # wakes any hanging fault so shutdown is immediate

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ----- data ------------------------------------------------------------------------------

    def load_appointments(self, directory: Path) -> None:
        """Load every ``<eventId>.json`` Get Appointment body (``{"event": {...}}``) in a folder."""
        for path in sorted(directory.glob("*.json")):
            self.put_appointment(json.loads(path.read_text(encoding="utf-8"))["event"])

    def put_appointment(self, event: Mapping[str, Any]) -> None:
        if not isinstance(event.get("id"), str) or not event["id"]:
            raise ValueError("appointment needs a non-empty string 'id'")
        with self._lock:
            self._appointments[event["id"]] = copy.deepcopy(dict(event))
        self.related.seed(event)

    def delete_appointment(self, event_id: str) -> None:
        """Gone for Get Appointment (404); still listed by ``/calendars/events`` with ``deleted: true``."""
        with self._lock:
            event = self._appointments.pop(event_id, None)
            if event is not None:
                self._tombstones[event_id] = {**event, "deleted": True, "dateUpdated": _now_text()}

    def appointment_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._appointments)

    def add_token(self, token: str, location_id: str | None = None) -> None:
        """Accept a static bearer token (None = any location), like a Private Integration Token."""
        with self._lock:
            self._tokens[token] = location_id

    # ----- fault injection -------------------------------------------------------------------

    def set_latency(self, ms: int) -> None:
        with self._lock:
            self._latency_ms = max(0, int(ms))

    def queue_faults(self, faults: Iterable[Fault], event_id: str | None = None) -> None:
        """Queue faults (FIFO, one per matching request); ``event_id`` scopes them to one id."""
        with self._lock:
            for fault in faults:
                self._faults.append(
                    dataclasses.replace(fault, event_id=event_id) if event_id is not None else fault
                )

    def set_list_limit(self, limit: int | None) -> None:
        """Answer ``/calendars/events`` with at most ``limit`` events (None: all), nothing saying so."""
        with self._lock:
            self._list_limit = None if limit is None else max(0, int(limit))

    def queue_list_faults(self, faults: Iterable[Fault]) -> None:
        """Faults for the list endpoints (``/calendars/``, ``/calendars/events``), one per request."""
        with self._lock:
            self._list_faults.extend(faults)

    def set_rate_limit_remaining_zero(self, interval_ms: int | None = None, count: int = 1) -> None:
        """Make the next ``count`` appointment responses say ``X-RateLimit-Remaining: 0``.

        The limiter itself is untouched: this tests that a client pauses for
        ``X-RateLimit-Interval-Milliseconds`` (``interval_ms``) before its next call.
        """
        with self._lock:
            value = self._limiter.interval_ms if interval_ms is None else int(interval_ms)
            self._forced_zero.extend([value] * count)

    def reset(self) -> None:
        """Clear faults, latency, the listing cap, the request log and the rate limiter (data and
        tokens stay)."""
        with self._lock:
            self._faults.clear()
            self._list_faults.clear()
            self._latency_ms = 0
            self._list_limit = None
            self._forced_zero.clear()
            self._log.clear()
            self._limiter.clear()

    # ----- request log -----------------------------------------------------------------------

    def requests_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def count(self, path_prefix: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self._log if path_prefix is None or r["path"].startswith(path_prefix))

    # ----- OAuth -----------------------------------------------------------------------------

    def add_oauth_client(
        self,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        user_type: Literal["Location", "Company"] = "Location",
        location_id: str | None = None,
        company_id: str | None = None,
    ) -> None:
        """Register a marketplace app install whose current refresh token is ``refresh_token``."""
        with self._lock:
            self._clients[client_id] = _OAuthClient(
                client_secret, refresh_token, user_type, location_id, company_id
            )

    # ----- request handling (called from handler threads) ------------------------------------

    def _record(self, method: str, path: str, raw_headers: list[tuple[str, str]]) -> dict[str, Any]:
        """Log an upstream call as received (original header names), bearer tokens redacted."""
        redacted = {k: ("Bearer ***" if k.lower() == "authorization" else v) for k, v in raw_headers}
        entry: dict[str, Any] = {
            "method": method,
            "path": path,
            "headers": redacted,
            "time": time.time(),
            "status": None,
        }
        with self._lock:
            self._log.append(entry)
        return entry

    def _set_status(self, entry: dict[str, Any], status: int | None) -> None:
        with self._lock:
            entry["status"] = status

    def _next_fault(self, event_id: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.event_id is None or fault.event_id == event_id:
                    self._faults.remove(fault)
                    return fault
        return None

    def _rate_headers(self, remaining: int, daily_remaining: int, interval_ms: int) -> dict[str, str]:
        return {
            "X-RateLimit-Max": str(self._limiter.burst),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Interval-Milliseconds": str(interval_ms),
            "X-RateLimit-Limit-Daily": str(self._limiter.daily_limit),
            "X-RateLimit-Daily-Remaining": str(daily_remaining),
        }

    def _bearer(self, headers: Mapping[str, str]) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _auth(self, token: str | None) -> tuple[bool, str | None, str | None]:
        """Resolve a bearer token to (valid, bound location or None for any, user type)."""
        if token is None:
            return False, None, None
        with self._lock:
            if token in self._tokens:
                return True, self._tokens[token], "Location"
            grant = self._grants.get(token)
        if grant is None or grant.expires_at <= time.time():
            return False, None, None
        return True, grant.location_id, grant.user_type

    def _get_appointment(self, event_id: str, headers: Mapping[str, str]) -> _Reply:
        """Latency, then a queued fault, then HighLevel's checks in the order the real API applies."""
        if self._latency_ms:
            self._stopping.wait(self._latency_ms / 1000)
        fault = self._next_fault(event_id)
        if fault is not None and fault.kind == "drop":
            return _Reply(0, drop=True)
        if fault is not None and fault.kind == "hang":
            self._stopping.wait(fault.seconds)

        valid, bound_location, user_type = self._auth(self._bearer(headers))
        with self._lock:
            event = copy.deepcopy(self._appointments.get(event_id))
            key = bound_location or (event or {}).get("locationId") or "-"
            if valid and headers.get("version") == API_VERSION and (fault is None or fault.kind == "hang"):
                allowed, remaining, daily = self._limiter.hit(key)
            else:  # rejected before reaching the limiter: report, don't consume
                allowed = True
                remaining, daily = self._limiter.peek(key)
            interval_ms = self._limiter.interval_ms
            if self._forced_zero:
                remaining, interval_ms = 0, self._forced_zero.pop(0)
        rate = self._rate_headers(remaining, daily, interval_ms)

        if fault is not None and fault.kind in ("status", "invalid_body"):
            if fault.status == 429:
                rate["X-RateLimit-Remaining"] = "0"
            body = fault.body if fault.body is not None else _error_body(fault.status)
            return _Reply(fault.status, body, {**rate, **fault.headers})
        forbidden = event is not None and (
            user_type != "Location"  # agency tokens cannot read sub-account data
            or (bound_location is not None and bound_location != event.get("locationId"))
        )
        checks: list[tuple[bool, int, dict[str, Any]]] = [
            (not valid, 401, UNAUTHORIZED),
            (headers.get("version") != API_VERSION, 400, BAD_VERSION),
            (not allowed, 429, TOO_MANY),
            (event is None, 404, NOT_FOUND),
            (forbidden, 403, FORBIDDEN),
        ]
        for failed, status, error in checks:
            if failed:
                return _Reply(status, error, rate)
        return _Reply(200, {"event": event}, rate)

    def _oauth_token(self, form: Mapping[str, str]) -> _Reply:
        """Refresh-token grant. Each refresh token works once: reuse is ``invalid_grant``."""
        client_id = form.get("client_id", "")
        with self._lock:
            client = self._clients.get(client_id)
            if client is None or not secrets.compare_digest(
                client.client_secret, form.get("client_secret", "")
            ):
                return _Reply(
                    401, {"error": "invalid_client", "error_description": "Invalid client credentials"}
                )
            if form.get("grant_type") != "refresh_token":
                return _Reply(
                    400,
                    {"error": "unsupported_grant_type", "error_description": "Use grant_type=refresh_token"},
                )
            presented = form.get("refresh_token", "")
            if not presented or presented != client.refresh_token:
                if presented in client.used_refresh_tokens:
                    self.oauth_reuse_count += 1
                return _Reply(
                    400,
                    {
                        "error": "invalid_grant",
                        "error_description": "Invalid grant: refresh token is invalid",
                    },
                )
            client.used_refresh_tokens.add(presented)
            client.refresh_token = "sbx-rt-" + secrets.token_hex(16)
            self.oauth_refresh_count += 1
            access = self._issue(client.user_type, client.location_id, client.company_id)
            body: dict[str, Any] = {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.access_token_expires_in,
                "refresh_token": client.refresh_token,
                "scope": DEFAULT_SCOPE,
                "userType": client.user_type,
            }
            if client.company_id:
                body["companyId"] = client.company_id
            if client.user_type == "Location":
                body["locationId"] = client.location_id
        return _Reply(200, body)

    def _oauth_location_token(self, form: Mapping[str, str], headers: Mapping[str, str]) -> _Reply:
        """Exchange an agency (Company) access token for a sub-account (Location) token."""
        token = self._bearer(headers)
        with self._lock:
            grant = self._grants.get(token or "")
            if grant is None or grant.expires_at <= time.time():
                return _Reply(401, UNAUTHORIZED)
            missing = [
                f"{name} should not be empty" for name in ("companyId", "locationId") if not form.get(name)
            ]
            if missing:
                return _Reply(400, {"statusCode": 400, "message": missing, "error": "Bad Request"})
            if grant.user_type != "Company" or grant.company_id != form["companyId"]:
                return _Reply(403, FORBIDDEN)
            access = self._issue("Location", form["locationId"], form["companyId"])
        return _Reply(
            200,
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.access_token_expires_in,
                "scope": DEFAULT_SCOPE,
                "locationId": form["locationId"],
                "companyId": form["companyId"],
                "userType": "Location",
            },
        )

    def _issue(
        self, user_type: Literal["Location", "Company"], location_id: str | None, company_id: str | None
    ) -> str:
        # Caller holds the lock.
        access = "sbx-at-" + secrets.token_hex(16)
        expires_at = time.time() + self.access_token_expires_in
        self._grants[access] = _Grant(user_type, location_id, company_id, expires_at)
        return access

    def _control(self, method: str, path: str, payload: Any) -> _Reply:
        """The ``/_sandbox/`` control plane: lets another process steer the sandbox."""
        reply = _Reply(404, {"statusCode": 404, "message": f"Cannot {method} {path}", "error": "Not Found"})
        try:
            if method == "POST" and path == "/_sandbox/faults":
                faults = [Fault.from_dict(f) for f in cast(list[dict[str, Any]], payload or [])]
                self.queue_faults(faults)
                reply = _Reply(200, {"queued": len(faults)})
            elif method == "POST" and path == "/_sandbox/latency":
                self.set_latency(int(payload["ms"]))
                reply = _Reply(200, {"latencyMs": self._latency_ms})
            elif method == "POST" and path == "/_sandbox/rate-limit-zero":
                options = payload or {}
                self.set_rate_limit_remaining_zero(options.get("interval_ms"), int(options.get("count", 1)))
                reply = _Reply(200, {"ok": True})
            elif method == "POST" and path == "/_sandbox/reset":
                self.reset()
                reply = _Reply(200, {"ok": True})
            elif method == "GET" and path == "/_sandbox/requests":
                reply = _Reply(200, self.requests_log())
            elif method == "POST" and path == "/_sandbox/appointments":
                self.put_appointment(payload)
                reply = _Reply(201, {"id": payload["id"]})
            elif method == "DELETE" and path.startswith("/_sandbox/appointments/"):
                self.delete_appointment(unquote(path.removeprefix("/_sandbox/appointments/")))
                reply = _Reply(204)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            reply = _Reply(400, {"statusCode": 400, "message": str(exc), "error": "Bad Request"})
        return reply

    def _dispatch(
        self, method: str, raw_path: str, raw_headers: list[tuple[str, str]], body: bytes
    ) -> _Reply:
        path = urlsplit(raw_path).path
        headers = {name.lower(): value for name, value in raw_headers}
        if path.startswith(CONTROL_PREFIX):
            try:
                payload = json.loads(body) if body else None
            except ValueError:
                return _Reply(400, {"statusCode": 400, "message": "body is not JSON", "error": "Bad Request"})
            return self._control(method, path, payload)

        entry = self._record(method, raw_path, raw_headers)
        query = urlsplit(raw_path).query
        related = sandbox_related.route(path) if method == "GET" else None
        if method == "GET" and path in (CALENDARS_PATH, EVENTS_PATH):
            reply = _list_reply(self, path, {k: v[0] for k, v in parse_qs(query).items()}, headers)
        elif related is not None:
            reply = _related_reply(self, *related, headers)
        else:
            reply = self._upstream(method, path, headers, body)
        self._set_status(entry, None if reply.drop else reply.status)
        return reply

    def _upstream(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        event_id = unquote(path.removeprefix(APPOINTMENTS_PREFIX))
        if method == "GET" and path.startswith(APPOINTMENTS_PREFIX) and event_id and "/" not in event_id:
            return self._get_appointment(event_id, headers)
        if method == "POST" and path in ("/oauth/token", "/oauth/locationToken"):
            parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            form = {k: v[0] for k, v in parsed.items()}
            if path == "/oauth/token":
                return self._oauth_token(form)
            return self._oauth_location_token(form, headers)
        return _Reply(404, {"statusCode": 404, "message": f"Cannot {method} {path}", "error": "Not Found"})


def _list_reply(
    sandbox: SandboxServer, path: str, query: Mapping[str, str], headers: Mapping[str, str]
) -> _Reply:
    """The two list endpoints: auth, Version, rate limit, query checks, then the listing (a function,
    not a method, to keep the server class about serving)."""
    if sandbox._latency_ms:
        sandbox._stopping.wait(sandbox._latency_ms / 1000)
    with sandbox._lock:
        fault = sandbox._list_faults.popleft() if sandbox._list_faults else None
    valid, bound_location, user_type = sandbox._auth(sandbox._bearer(headers))
    location_id = query.get("locationId", "")
    with sandbox._lock:
        key = bound_location or location_id or "-"
        if valid and headers.get("version") == API_VERSION and fault is None:
            allowed, remaining, daily = sandbox._limiter.hit(key)
        else:
            allowed = True
            remaining, daily = sandbox._limiter.peek(key)
        rate = sandbox._rate_headers(remaining, daily, sandbox._limiter.interval_ms)
    if fault is not None:
        if fault.kind == "drop":
            return _Reply(0, drop=True)
        if fault.status == 429:
            rate["X-RateLimit-Remaining"] = "0"
        body = fault.body if fault.body is not None else _error_body(fault.status)
        return _Reply(fault.status, body, {**rate, **fault.headers})
    missing = _missing_list_params(path, query)
    checks: list[tuple[bool, int, dict[str, Any]]] = [
        (not valid, 401, UNAUTHORIZED),
        (headers.get("version") != API_VERSION, 400, BAD_VERSION),
        (not allowed, 429, TOO_MANY),
        (bool(missing), 422, {"statusCode": 422, "message": missing, "error": "Unprocessable Entity"}),
        (user_type != "Location" or bound_location not in (None, location_id), 403, FORBIDDEN),
    ]
    for failed, status, error in checks:
        if failed:
            return _Reply(status, error, rate)
    with sandbox._lock:
        events = [
            copy.deepcopy(e)
            for e in (*sandbox._appointments.values(), *sandbox._tombstones.values())
            if e.get("locationId") == location_id
        ]
    if path == CALENDARS_PATH:
        calendars = sorted({str(e["calendarId"]) for e in events if e.get("calendarId")})
        body = [
            {"id": c, "locationId": location_id, "name": f"Calendar {c}", "isActive": True} for c in calendars
        ]
        return _Reply(200, {"calendars": body}, rate)
    listed = _listed(events, query)
    with sandbox._lock:
        limit = sandbox._list_limit
    return _Reply(200, {"events": listed if limit is None else listed[:limit]}, rate)


def _related_reply(
    sandbox: SandboxServer, segment: str, entity_id: str, headers: Mapping[str, str]
) -> _Reply:
    """Get Contact / Calendar / User / Location (``sandbox_related``), with this module's bodies."""
    status, body, reply_headers = sandbox_related.related_reply(sandbox, segment, entity_id, headers)
    if status == 0:
        return _Reply(0, drop=True)
    if body is None:
        standard = {401: UNAUTHORIZED, 403: FORBIDDEN}
        body = standard.get(status) or _error_body(status)
    return _Reply(status, body, reply_headers)


def _now_text() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _epoch_ms(value: Any) -> int | None:
    """An upstream time (ISO 8601 with offset or ``Z``, or ``YYYY-MM-DD HH:MM:SS`` as UTC) in ms."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _missing_list_params(path: str, query: Mapping[str, str]) -> list[str]:
    """HighLevel-style 422 messages for the query parameters the SDK marks required."""
    problems = [] if query.get("locationId") else ["locationId should not be empty"]
    if path == EVENTS_PATH:
        if not any(query.get(name) for name in ("calendarId", "userId", "groupId")):
            problems.append("one of calendarId, userId or groupId is required")
        for name in ("startTime", "endTime"):
            if not query.get(name, "").isdigit():
                problems.append(f"{name} must be epoch milliseconds")
    return problems


def _listed(events: Iterable[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
    """Events of the calendar / user / group whose start lies in [startTime, endTime] (inclusive)."""
    start, end = int(query["startTime"]), int(query["endTime"])

    def matches(event: dict[str, Any]) -> bool:
        if query.get("calendarId") and event.get("calendarId") != query["calendarId"]:
            return False
        if query.get("groupId") and event.get("groupId") != query["groupId"]:
            return False
        user = query.get("userId")
        if user and user != event.get("assignedUserId") and user not in (event.get("users") or []):
            return False
        moment = _epoch_ms(event.get("startTime"))
        return moment is not None and start <= moment <= end

    return sorted((e for e in events if matches(e)), key=lambda e: (_epoch_ms(e.get("startTime")), e["id"]))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sandbox: SandboxServer
    ) -> None:
        self.sandbox = sandbox
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API, so client pools are exercised
    # Headers and body go out in separate writes; with Nagle on, a kept-alive connection waits
    # for the peer's delayed ACK (~40 ms) on every response.
    disable_nagle_algorithm = True
    server_version = "powerleads-sandbox"
    timeout = 60  # idle keep-alive sockets must not pin handler threads forever

    def _handle(self) -> None:
        sandbox = cast(_HTTPServer, self.server).sandbox
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        reply = sandbox._dispatch(self.command, self.path, list(self.headers.items()), body)
        if reply.drop:
            self.close_connection = True
            return
        if reply.body is None:
            payload = b""
        elif isinstance(reply.body, str):
            payload = reply.body.encode("utf-8")
        else:
            payload = json.dumps(reply.body, separators=(",", ":")).encode("utf-8")
        try:
            self.send_response(reply.status)
            reply_headers = {"Content-Type": "application/json; charset=utf-8", **reply.headers}
            for name, value in reply_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr noise; the request log is the record."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the sandbox PowerLeads API standalone.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="accepted bearer token (any location)")
    args = parser.parse_args(argv)
    server = SandboxServer(args.host, args.port, tokens={args.token: None}).start()
    print(f"PowerLeads sandbox listening on {server.url}", flush=True)
    print(f"bearer token: {args.token}  appointments: {', '.join(server.appointment_ids())}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
