"""HTTP adapter for the PowerLeads (HighLevel) API: Get Appointment (and the appointment's contact,
calendar, user and location), with the retries it needs.

One pooled ``requests.Session`` per container, shared by the enricher's worker threads.
Retries with exponential backoff and full jitter on 429, 5xx, connection errors and timeouts;
``Retry-After`` and the ``X-RateLimit-*`` headers are honoured; the whole retry budget is bounded
by a deadline (the Lambda's remaining time minus a margin), after which the caller gets a
retryable error and the message returns to the queue.

Hand-written retry loop (not urllib3 ``Retry``): urllib3 cannot bound total time by a deadline,
does not read ``X-RateLimit-Remaining``/``Interval-Milliseconds``, and hides per-attempt latency
from our metrics.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote, urlencode
from urllib.request import getproxies

import requests

from ..budget.spend import Spender
from ..clocks import Monotonic
from ..errors import EnricherError
from ..wire import (
    CALENDARS_API_VERSION,
    CONTACTS_API_VERSION,
    DEFAULT_API_VERSION,
    LOCATIONS_API_VERSION,
    USERS_API_VERSION,
    is_valid_id,
)
from .tokens import TokenSource

# ENRICH_RELATED's names -> (path, the endpoint's Version); official SDK 3.0.0 and OpenAPI specs.
RELATED_ENDPOINTS: Final = {
    "contact": ("contacts", CONTACTS_API_VERSION),
    "calendar": ("calendars", CALENDARS_API_VERSION),
    "assignedUser": ("users", USERS_API_VERSION),
    "location": ("locations", LOCATIONS_API_VERSION),
}
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# (connect, read) seconds per attempt, each also capped by the time left; with ``RetryPolicy``'s
# defaults, the one home of the upstream timeout and retry defaults (``config`` reads them here).
DEFAULT_TIMEOUT: Final = (3.05, 10.0)


class PowerLeadsError(EnricherError):
    """Base of upstream failures. ``retryable`` decides batch item failure vs quarantine."""

    retryable = True
    error_type = "UpstreamError"

    def __init__(self, message: str, *, status: int | None = None, trace_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.trace_id = trace_id


class UpstreamUnavailable(PowerLeadsError):
    """429, 5xx, timeouts, connection errors: try again later."""

    error_type = "UpstreamUnavailable"
    retry_after: float | None = None


class UpstreamAuthError(PowerLeadsError):
    """401/403: the token is wrong or lacks scope. Retryable (a fixed token heals it) and alarmed."""

    error_type = "UpstreamAuthError"


class UpstreamRejected(PowerLeadsError):
    """400/422 and other 4xx: the request itself is wrong; retrying cannot help."""

    retryable = False
    error_type = "UpstreamRejected"


class InvalidUpstreamBody(PowerLeadsError):
    """A 2xx whose body is not JSON: permanent for this message."""

    retryable = False
    error_type = "InvalidUpstreamBody"


class AppointmentNotFound(PowerLeadsError):
    """404: the appointment is gone; the enricher publishes a ``deleted`` record."""

    retryable = False
    error_type = "AppointmentNotFound"


def error_message(response: requests.Response) -> tuple[str, str | None]:
    """``{statusCode, message, error?, traceId?}``; ``message`` may be a string or a list."""
    try:
        payload = response.json()
    except ValueError:
        return f"HTTP {response.status_code}", None
    if not isinstance(payload, dict):
        return f"HTTP {response.status_code}", None
    message = payload.get("message")
    if isinstance(message, list):
        message = "; ".join(str(part) for part in message)
    parts = [str(p) for p in (payload.get("error"), message) if p]
    trace = payload.get("traceId")
    return f"HTTP {response.status_code}: {': '.join(parts) or 'no message'}"[:500], (
        str(trace) if trace else None
    )


def retry_after_seconds(value: str | None, epoch: float | None = None) -> float | None:
    """``Retry-After`` as delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if 0 <= seconds < math.inf else None  # NaN, inf and negatives: unreadable
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if epoch is None else epoch))


@dataclass
class RateLimitGate:
    """Per-location pause when the upstream says ``X-RateLimit-Remaining: 0``.

    Shared by all worker threads, so one exhausted window stops every request for that location
    until ``X-RateLimit-Interval-Milliseconds`` has passed.
    """

    monotonic: Monotonic = time.monotonic
    _resume_at: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_needed(self, location_id: str) -> float:
        with self._lock:
            return max(0.0, self._resume_at.get(location_id, 0.0) - self.monotonic())

    def observe(self, location_id: str, headers: Any, retry_after: float | None = None) -> None:
        """Read one response's headers. An explicit ``Retry-After`` is the more precise signal
        and replaces the window length for that response."""
        remaining = headers.get("X-RateLimit-Remaining")
        interval_ms = headers.get("X-RateLimit-Interval-Milliseconds")
        if remaining is None or interval_ms is None:
            return
        try:
            exhausted = int(remaining) <= 0
            interval = min(int(interval_ms), 60_000) / 1000
        except ValueError:
            return
        if exhausted:
            pause = interval if retry_after is None else retry_after
            with self._lock:
                self._resume_at[location_id] = self.monotonic() + pause


@dataclass(frozen=True)
class RetryPolicy:
    base_delay: float = 0.2
    max_delay: float = 5.0
    max_attempts: int = 6

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)]."""
        return rng() * min(self.max_delay, self.base_delay * (1 << attempt))


ResponseObserver = Callable[[int | None, float], None]


class HeadersOnly(requests.auth.AuthBase):
    """A session's auth that leaves each request's own ``Authorization`` header as it is.

    With no auth at all, requests looks for a ``~/.netrc`` entry on every request (importing
    ``netrc`` on the first: ~1.5 ms of a cold start), and an entry for the API's host would
    replace the bearer token with its Basic credentials."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


def read_environment_once(session: requests.Session) -> None:
    """Take the environment's HTTP settings once instead of on every request.

    requests re-reads proxies, ``no_proxy`` and the CA bundle (``REQUESTS_CA_BUNDLE``,
    ``CURL_CA_BUNDLE``) from ``os.environ`` on each request (``trust_env``): two scans of the whole
    environment, 90 of a warm GET's 530 us of CPU with 35 variables (measured 2026-12-07). A
    function's environment is fixed for its life, so with no proxy configured the CA bundle is read here
    and the session stops consulting the environment (netrc included). With a proxy, requests
    keeps its own per-request rules, ``no_proxy`` and all."""
    if getproxies():
        return
    session.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle


def pooled_session(pool_size: int = 16) -> requests.Session:
    """One keep-alive pool for the container; retries are ours (see the module docstring)."""
    session = requests.Session()
    session.auth = HeadersOnly()
    read_environment_once(session)
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class PowerLeadsClient:
    """Get Appointment over one pooled session."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        *,
        api_version: str = DEFAULT_API_VERSION,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        gate: RateLimitGate | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Monotonic = time.monotonic,
        observe: ResponseObserver | None = None,
        pool_size: int = 16,
        budget: Spender | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.api_version = api_version
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.gate = gate or RateLimitGate(monotonic=monotonic)
        self.sleep = sleep
        self.monotonic = monotonic
        self.observe = observe
        self.session = session or pooled_session(pool_size)
        # The fleet's upstream budget: every request of every endpoint takes a token first.
        self.budget = budget

    def get_appointment(self, event_id: str, location_id: str, *, deadline: float) -> dict[str, Any]:
        """``GET /calendars/events/appointments/{eventId}``; returns the parsed JSON body.

        ``deadline`` is a ``monotonic()`` value; no attempt or wait starts past it.
        """
        if not is_valid_id(event_id):
            raise UpstreamRejected("refusing to request an appointment id outside [A-Za-z0-9_-]{1,128}")
        url = f"{self.base_url}/calendars/events/appointments/{quote(event_id, safe='')}"
        return self._get_with_retries(url, location_id, deadline)

    def list_calendars(self, location_id: str, *, deadline: float) -> list[dict[str, Any]]:
        """``GET /calendars/?locationId=L`` -> the ``calendars`` array (same retries and gate)."""
        _require_ids(location_id=location_id)
        payload = self._get_with_retries(
            f"{self.base_url}/calendars/?{urlencode({'locationId': location_id})}", location_id, deadline
        )
        return _objects(payload, "calendars")

    def list_events(
        self, location_id: str, calendar_id: str, start_ms: int, end_ms: int, *, deadline: float
    ) -> list[dict[str, Any]]:
        """``GET /calendars/events`` for one calendar, ``startTime``/``endTime`` in epoch ms -> ``events``."""
        _require_ids(location_id=location_id, calendar_id=calendar_id)
        query = urlencode(
            {"locationId": location_id, "calendarId": calendar_id, "startTime": start_ms, "endTime": end_ms}
        )
        payload = self._get_with_retries(f"{self.base_url}/calendars/events?{query}", location_id, deadline)
        return _objects(payload, "events")

    def get_related(self, kind: str, entity_id: str, location_id: str, *, deadline: float) -> dict[str, Any]:
        """``GET /contacts/{id}``, ``/calendars/{id}``, ``/users/{id}`` or ``/locations/{id}`` (``kind``
        as in ENRICH_RELATED) with that endpoint's own ``Version``; the parsed body as returned.
        Same token source, gate and retries as the appointment; a 404 raises ``AppointmentNotFound``
        (the class of every upstream 404)."""
        path, version = RELATED_ENDPOINTS[kind]
        _require_ids(**{f"{kind} id": entity_id})
        url = f"{self.base_url}/{path}/{quote(entity_id, safe='')}"
        return self._get_with_retries(url, location_id, deadline, version=version)

    def _get_with_retries(
        self, url: str, location_id: str, deadline: float, *, version: str | None = None
    ) -> dict[str, Any]:
        """One GET with the retry loop every endpoint shares (``version``: the endpoint's own)."""
        attempt = 0
        while True:
            # Another worker may have seen ``X-RateLimit-Remaining: 0`` for this location.
            pause = self.gate.wait_needed(location_id)
            if pause:
                self._wait(pause, deadline, "rate limit window exhausted")
            if self.budget is not None:
                self.budget.take(location_id, deadline=deadline)  # BudgetThrottled: hand it back
            try:
                return self._attempt(url, location_id, deadline, version or self.api_version)
            except PowerLeadsError as exc:
                attempt += 1
                if not exc.retryable or attempt >= self.retry.max_attempts:
                    raise
                if isinstance(exc, UpstreamAuthError):
                    if attempt > 1:
                        raise
                    continue  # once, at once, with the token re-read (it may have been rotated)
                retry_after = exc.retry_after if isinstance(exc, UpstreamUnavailable) else None
                # Retry-After wins over our own backoff; an exhausted rate-limit window is waited
                # out in full either way (max, not sum: the gate check above is then a no-op).
                delay = retry_after if retry_after is not None else self.retry.backoff(attempt)
                delay = max(delay, self.gate.wait_needed(location_id))
                self._wait(delay, deadline, str(exc), cause=exc)

    def _wait(self, delay: float, deadline: float, why: str, cause: PowerLeadsError | None = None) -> None:
        """Sleep ``delay`` unless that runs past ``deadline``: then give up (retryable) at once."""
        if self.monotonic() + delay > deadline:
            raise UpstreamUnavailable(
                f"retry budget exhausted after: {why}", status=cause.status if cause else None
            ) from cause
        if delay > 0:
            self.sleep(delay)

    def _attempt(self, url: str, location_id: str, deadline: float, version: str) -> dict[str, Any]:
        left = deadline - self.monotonic()
        if left <= 0:
            raise UpstreamUnavailable("retry budget exhausted before the request could start")
        # No single attempt may outlive the budget: cap both timeouts by what is left.
        timeout = (min(self.timeout[0], left), min(self.timeout[1], left))
        headers = {
            # The token lookup may wait on another container's OAuth refresh: same deadline.
            "Authorization": f"Bearer {self.tokens.token_for(location_id, deadline=deadline)}",
            "Version": version,
            "Accept": "application/json",
        }
        response = self._send(url, headers, timeout)
        status = response.status_code
        retry_after = retry_after_seconds(response.headers.get("Retry-After")) if status >= 400 else None
        if self.budget is None or retry_after is not None:  # an explicit Retry-After is honoured here
            self.gate.observe(location_id, response.headers, retry_after)
        if self.budget is not None:  # the shared bucket, not a flat pause, waits for the window to free
            self.budget.observe(location_id, response.headers)
        if 200 <= status < 300:
            try:
                payload = response.json()
            except ValueError:
                raise InvalidUpstreamBody(
                    f"HTTP {status} with a body that is not JSON", status=status
                ) from None
            if not isinstance(payload, dict):
                raise InvalidUpstreamBody(
                    f"HTTP {status} with a JSON body that is not an object", status=status
                )
            return payload
        message, trace_id = error_message(response)
        if status in (401, 403):
            self.tokens.invalidate(location_id)
            raise UpstreamAuthError(message, status=status, trace_id=trace_id)
        if status == 404:
            raise AppointmentNotFound(message, status=status, trace_id=trace_id)
        if status in RETRYABLE_STATUS or status >= 500:
            error = UpstreamUnavailable(message, status=status, trace_id=trace_id)
            error.retry_after = retry_after
            raise error
        raise UpstreamRejected(message, status=status, trace_id=trace_id)

    def _send(self, url: str, headers: dict[str, str], timeout: tuple[float, float]) -> requests.Response:
        """The GET itself; a timeout or a broken connection is retryable ``UpstreamUnavailable``."""
        started = self.monotonic()
        try:
            response = self.session.get(url, headers=headers, timeout=timeout, allow_redirects=False)
        except requests.Timeout as exc:
            self._observed(None, started)
            raise UpstreamUnavailable(f"timeout: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            self._observed(None, started)
            raise UpstreamUnavailable(f"connection error: {type(exc).__name__}") from None
        finally:
            if self.budget is not None:
                self.budget.settle()  # an own-share request counts from its answer (budget/spend.py)
        self._observed(response.status_code, started)
        return response

    def _observed(self, status: int | None, started: float) -> None:
        if self.observe is not None:
            self.observe(status, (self.monotonic() - started) * 1000)


def _require_ids(**ids: str) -> None:
    """Never put an id from outside into a request unless it is ``[A-Za-z0-9_-]{1,128}``."""
    for name, value in ids.items():
        if not is_valid_id(value):
            raise UpstreamRejected(f"refusing to request a {name} outside [A-Za-z0-9_-]{{1,128}}")


def _objects(payload: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The list under ``key``; a missing list is empty, anything else is a broken response."""
    items = payload.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidUpstreamBody(f"{key} is not a list")
    return [item for item in items if isinstance(item, dict)]
