"""The budget port and its arithmetic: a GCRA token bucket per location, shared state in storage.

State per location is ``tat`` (the theoretical arrival time, epoch seconds: when the bucket
would be empty again at the handed-out rate), the UTC ``day`` and the requests ``used`` that
day. A lease of ``n`` tokens moves ``tat`` to ``max(tat, now) + n * spacing`` and is granted only
if that is at most ``ahead`` seconds past ``now``. ``spacing`` hands out ``fill`` (93 % by default) of the
documented rate, and ``ahead`` is what is left of one window at that rate, so any window of
``interval`` seconds sees at most ``(interval + ahead) / spacing <= max_requests`` grants: the
upstream's limit holds whether it counts in a sliding or a fixed window. With ``reserved`` (the
containers' own shares, ``spend.py``) the bucket is sized for ``max_requests - reserved``.

Work refused for longer than it may wait takes a place in the location's queue (``qtat``, the
same idea: each place is one token's time after the previous one), so handed-back messages come
back spread at the rate the bucket will serve them, not all at once.

The arithmetic is pure (``decide``); adapters apply it under a lock (``memory``) or a
conditional write (``dynamodb``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..errors import EnricherError

DOCUMENTED_MAX = 100  # requests per interval, per app and location
DOCUMENTED_INTERVAL_SECONDS = 10.0
DOCUMENTED_DAILY = 200_000
EPSILON = 1e-6  # of a token: epoch seconds as floats are exact to ~1e-7 s


@dataclass(frozen=True)
class Limits:
    max_requests: int = DOCUMENTED_MAX
    interval_seconds: float = DOCUMENTED_INTERVAL_SECONDS
    daily: int = DOCUMENTED_DAILY
    fill: float = 0.93
    # Requests per interval kept out of the shared bucket: the containers' own shares (spend.py).
    reserved: int = 0

    @property
    def shared(self) -> int:
        """Requests per interval the shared bucket may hand out: the limit less ``reserved``."""
        return max(1, self.max_requests - self.reserved)

    @property
    def spacing(self) -> float:
        """Seconds of bucket per token."""
        return self.interval_seconds / (self.shared * self.fill)

    @property
    def place_spacing(self) -> float:
        """Seconds between places in a location's queue: the fleet's steady rate, the bucket's
        fill of its part plus the containers' own shares."""
        return self.interval_seconds / (self.shared * self.fill + self.reserved)

    @property
    def ahead(self) -> float:
        """How far past ``now`` the bucket may be filled: ``shared * spacing - interval``."""
        return max(self.spacing, self.shared * self.spacing - self.interval_seconds)

    @property
    def burst(self) -> int:
        """The largest lease ever granted at once."""
        return max(1, int(self.ahead / self.spacing + EPSILON))


@dataclass(frozen=True)
class State:
    tat: float = 0.0
    day: str = ""
    used: int = 0


@dataclass(frozen=True)
class Lease:
    """``tokens`` granted now, or none and ``wait`` seconds until a lease of that size fits;
    ``daily_exhausted`` when today's quota is spent (``wait`` is then the time to the reset)."""

    tokens: int
    wait: float = 0.0
    daily_exhausted: bool = False


def utc_day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def seconds_to_reset(epoch: float) -> float:
    """The daily quota is assumed to reset at 00:00 UTC (HighLevel does not document when)."""
    now = datetime.fromtimestamp(epoch, UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1.0, (midnight - now).total_seconds())


def decide(state: State, count: int, now: float, limits: Limits) -> tuple[Lease, State]:
    """Grant up to ``count`` tokens (at least one, at most ``burst``) or say how long to wait."""
    today = utc_day(now)
    used = state.used if state.day == today else 0
    left_today = limits.daily - used
    if left_today <= 0:
        return Lease(0, seconds_to_reset(now), daily_exhausted=True), state
    wanted = max(1, min(count, limits.burst, left_today))
    start = max(state.tat, now)
    fits = int((now + limits.ahead - start) / limits.spacing + EPSILON)
    if fits <= 0:
        return Lease(0, max(0.001, start + limits.spacing - limits.ahead - now)), state
    granted = min(wanted, fits)
    return Lease(granted), State(start + granted * limits.spacing, today, used + granted)


def correct(state: State, headers: Mapping[str, Any], now: float, limits: Limits) -> State | None:
    """What the upstream's ``X-RateLimit-*`` says beyond our own count, or None when nothing.

    ``Remaining: 0``: the window is full (another consumer, or a stricter count): nobody gets a
    token until one slot of the window frees (``interval / max``) past the bucket's ceiling.
    ``Daily-Remaining``: the day's ``used`` is raised to what upstream has seen.
    """
    remaining = _int(headers.get("X-RateLimit-Remaining"))
    daily_left = _int(headers.get("X-RateLimit-Daily-Remaining"))
    today = utc_day(now)
    used = state.used if state.day == today else 0
    tat = state.tat
    if remaining is not None and remaining <= 0:
        tat = max(tat, now + limits.ahead + limits.interval_seconds / max(1, limits.max_requests))
    # Our count runs ahead of upstream's (leases count unused tokens); correct only a real gap,
    # so the headers cost a write when they tell something, not per response.
    counted = used
    if daily_left is not None and (daily_left <= 0 or limits.daily - daily_left - used > limits.daily // 100):
        used = max(used, limits.daily - daily_left)
    if tat == state.tat and used == counted:
        return None  # nothing new (a new day alone is no news: its count starts at 0 either way)
    return State(tat, today, used)


def limits_from_headers(headers: Mapping[str, Any], current: Limits) -> Limits:
    """``X-RateLimit-Max``/``Interval-Milliseconds``/``Limit-Daily`` replace the documented sizes
    when they are sane (never above the documented limit: a typo upstream must not open the tap)."""
    maximum = _int(headers.get("X-RateLimit-Max"))
    interval_ms = _int(headers.get("X-RateLimit-Interval-Milliseconds"))
    daily = _int(headers.get("X-RateLimit-Limit-Daily"))
    return Limits(
        max_requests=min(maximum, DOCUMENTED_MAX) if maximum and maximum > 0 else current.max_requests,
        interval_seconds=(
            max(interval_ms / 1000, DOCUMENTED_INTERVAL_SECONDS)
            if interval_ms and 0 < interval_ms <= 3_600_000
            else current.interval_seconds
        ),
        daily=min(daily, DOCUMENTED_DAILY) if daily and daily > 0 else current.daily,
        fill=current.fill,
        reserved=current.reserved,
    )


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class Budget(Protocol):
    """The shared bucket: every enricher container and the reconciler lease from it."""

    def lease(self, location_id: str, count: int, *, now: float, limits: Limits) -> Lease: ...

    def observe(
        self, location_id: str, headers: Mapping[str, Any], *, now: float, limits: Limits
    ) -> None: ...

    def queue_place(self, location_id: str, *, earliest: float, limits: Limits) -> float:
        """The epoch time of the next free place in the location's queue, at or after ``earliest``."""
        ...


class BudgetThrottled(EnricherError):
    """No budget for this location before the caller may wait: hand the work back (not a failure)."""

    retryable = True
    error_type = "Throttled"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DailyBudgetExhausted(BudgetThrottled):
    """Today's quota for this location is spent: park the work until the reset (alarmed)."""

    error_type = "DailyBudgetExhausted"
