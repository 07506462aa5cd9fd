"""The client side of the budget: each request takes one token, from a short-lived local lease.

One ``Spender`` per container (shared by its worker threads). A token comes from the location's
local lease when it holds one still fresh (``lease_seconds``); otherwise a lease of ``lease``
tokens is taken from the shared bucket, by one thread of the container at a time. With no budget
left the caller waits when the wait is short (``max_wait``, all waits together) and within its
deadline, else ``BudgetThrottled`` says when to come back: the enricher hands the message back
with that visibility, it never sits out the batch. With ``queue`` that time is a place in the
location's queue.

Unused tokens of a lease expire after ``lease_seconds``: they were counted in the shared bucket
when granted, so spending them later could exceed the upstream window.

With ``share`` (n) the container also has a share of its own (``share.OwnShare``): n requests
per location in any interval, taken before any lease and written nowhere, each counted from its
answer (``settle``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ..clocks import Epoch, Monotonic
from .base import (
    Budget,
    BudgetThrottled,
    DailyBudgetExhausted,
    Limits,
    limits_from_headers,
    seconds_to_reset,
)
from .share import OwnShare

# How often the work asking now has been received (its messages' highest receive count; 0 when
# not known). On its first try (1), while the container knows its location has a queue (it took a
# place there that is still ahead), work does not wait for budget (``max_wait``) but takes its
# place at once (``queue``), so a backlog's first pass holds no batch and the ingest queue's next
# messages, other locations' included, are reached at once. Without a known queue it may wait as
# any work (a short burst is served, not handed back). Back at its place (2) and still without a
# token, it comes back after the bucket's short wait instead of taking a new place
# (``_throttled``). Set per unit of work by the caller (``receiving``); a context variable because
# the request is made deep in the PowerLeads client, which knows nothing of messages.
_receives: ContextVar[int] = ContextVar("budget_receives", default=0)
FIRST_TRY, BACK_AT_ITS_PLACE = 1, 2


@contextmanager
def receiving(receives: int) -> Iterator[None]:
    """Inside, ``take`` knows how often the work asking has been received (``_receives``)."""
    token = _receives.set(receives)
    try:
        yield
    finally:
        _receives.reset(token)


# The longest bucket wait after which work back at its place comes back without a new place.
RETURN_RETRY_SECONDS = 2.0


@dataclass
class _Held:
    tokens: int
    until: float


class Spender:
    def __init__(
        self,
        budget: Budget,
        *,
        limits: Limits | None = None,
        lease: int = 5,
        lease_seconds: float = 0.5,
        max_wait: float = 2.0,
        queue: bool = False,
        share: int = 0,
        requests_per_ask: int | None = None,
        epoch: Epoch = time.time,
        monotonic: Monotonic = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.budget = budget
        self.default_limits = limits or Limits()
        self.lease_size = lease
        self.lease_seconds = lease_seconds
        self.max_wait = max_wait
        self.queue = queue
        self.epoch, self.monotonic, self.sleep = epoch, monotonic, sleep
        self.own_share = OwnShare(share, monotonic)  # requests per location and interval of its own
        self._held: dict[str, _Held] = {}
        self._limits: dict[str, Limits] = {}
        self._lock = threading.Lock()
        # One lease request per location at a time from this container: the worker threads of a
        # batch ask together, and each conditional write they race with is a billed write that
        # fails; the ones that queue here take from the lease the first one got.
        self._leasing: dict[str, threading.Lock] = {}
        # Per location: this container's threads asking now. With ``requests_per_ask`` (what one
        # unit of work may request in a row) a lease behind a known backlog is sized to them, up
        # to ``lease``: tokens leased for nobody expire unspent, and during a backlog spread over
        # twenty containers that was 7 % of the fleet's budget (leases of five, two or three
        # threads asking).
        self.requests_per_ask = requests_per_ask
        self._asking: dict[str, int] = {}
        self._queued_until: dict[str, float] = {}  # per location: the last place taken (epoch)

    def limits(self, location_id: str) -> Limits:
        with self._lock:
            return self._limits.get(location_id, self.default_limits)

    def take(self, location_id: str, *, deadline: float) -> None:
        """One token for one request to ``location_id``, or ``BudgetThrottled``.

        ``max_wait`` bounds the waits for the bucket in all, not each wait: many threads sharing a
        full bucket would otherwise each wait one slot after another and hold their batch, and a
        batch held on one location's budget keeps the queue's next messages, other locations'
        included, waiting.

        With ``queue``, work that gives up takes a place in the location's queue: it comes back
        when the bucket will serve it, and is out of the ingest queue's way until then.
        """
        self.own_share.forget()
        with self._lock:
            self._asking[location_id] = self._asking.get(location_id, 0) + 1
        try:
            return self._take(location_id, deadline)
        finally:
            with self._lock:
                self._asking[location_id] -= 1

    def _take(self, location_id: str, deadline: float) -> None:
        waited = 0.0
        first_try = _receives.get() == FIRST_TRY
        max_wait = 0.0 if first_try and self._backlogged(location_id) else self.max_wait
        while True:
            limits = self.limits(location_id)
            if self._from_held(location_id) or self.own_share.take(location_id, limits.interval_seconds):
                return
            # Not bounded by max_wait: the request ahead is one conditional write (bounded by the
            # SDK's timeouts), and a thread that gave up here would hand back work that the lease
            # being written is about to serve (more receives, more hand-backs: measured slower).
            with self._lease_lock(location_id):
                if self._from_held(location_id):  # another thread leased while this one queued
                    return
                wanted = self._wanted(location_id)
                lease = self.budget.lease(location_id, wanted, now=self.epoch(), limits=limits)
                if lease.tokens:
                    with self._lock:
                        self._held[location_id] = _Held(
                            lease.tokens - 1, self.monotonic() + self.lease_seconds
                        )
                    return
            if lease.daily_exhausted:
                self.own_share.close(location_id, lease.wait)
                raise DailyBudgetExhausted(
                    "daily upstream quota spent for this location", retry_after=lease.wait
                )
            if waited + lease.wait > max_wait or self.monotonic() + lease.wait > deadline:
                raise self._throttled(location_id, limits, lease.wait)
            self.sleep(lease.wait)
            waited += lease.wait

    def _backlogged(self, location_id: str) -> bool:
        """This container took a place in the location's queue that is still ahead."""
        if not self.queue:
            return False
        with self._lock:
            return self._queued_until.get(location_id, 0.0) > self.epoch()

    def _wanted(self, location_id: str) -> int:
        """The lease to ask for: ``lease``, or behind a known backlog what the threads asking now
        may spend of it (outside a backlog a whole lease serves the threads of the batch that
        arrive a moment later, instead of one small lease each)."""
        if self.requests_per_ask is None or not self._backlogged(location_id):
            return self.lease_size
        with self._lock:
            asking = self._asking.get(location_id, 1)
        return max(1, min(self.lease_size, asking * self.requests_per_ask))

    def _throttled(self, location_id: str, limits: Limits, wait: float) -> BudgetThrottled:
        """Give up for now: come back in ``wait``, or (``queue``) when the place taken is served.

        Work back at its place behind a known backlog that still found no token comes back once
        after the bucket's short wait rather than at the end of the queue: its place was spent
        without a request, and sent to the end it would leave a hole there too, budget nobody asks
        for (at 20 containers with the bucket alone the drain lost 6 % so). Only once: work that
        came back again and again would crowd the front of the queue (measured: other locations'
        p99 delay rose to 22 s)."""
        retry_after = wait
        if self.queue and not (
            wait <= RETURN_RETRY_SECONDS
            and _receives.get() == BACK_AT_ITS_PLACE
            and self._backlogged(location_id)
        ):
            now = self.epoch()
            place = self.budget.queue_place(location_id, earliest=now + wait, limits=limits)
            with self._lock:
                self._queued_until[location_id] = place
            retry_after = max(wait, place - now)
        return BudgetThrottled("no upstream budget for this location yet", retry_after=retry_after)

    def observe(self, location_id: str, headers: Mapping[str, Any]) -> None:
        """Every response's ``X-RateLimit-*``: sizes the bucket and corrects the shared count."""
        if "X-RateLimit-Remaining" not in headers and "X-RateLimit-Daily-Remaining" not in headers:
            return
        limits = limits_from_headers(headers, self.limits(location_id))
        spent = {
            name: str(headers.get(name, "1")).strip() in ("0", "-1")
            for name in ("X-RateLimit-Remaining", "X-RateLimit-Daily-Remaining")
        }
        with self._lock:
            self._limits[location_id] = limits
            if any(spent.values()):
                self._held.pop(location_id, None)  # the window or the day is spent: spares are void
        if spent["X-RateLimit-Daily-Remaining"]:
            self.own_share.close(location_id, seconds_to_reset(self.epoch()))
        elif spent["X-RateLimit-Remaining"]:
            self.own_share.close(location_id, limits.interval_seconds)
        self.budget.observe(location_id, headers, now=self.epoch(), limits=limits)

    def settle(self) -> None:
        """Call right after each request, whatever its outcome: an own-share request counts from
        its answer (``share.OwnShare.settle``)."""
        self.own_share.settle()

    def _lease_lock(self, location_id: str) -> threading.Lock:
        with self._lock:
            return self._leasing.setdefault(location_id, threading.Lock())

    def _from_held(self, location_id: str) -> bool:
        with self._lock:
            held = self._held.get(location_id)
            if held is None or held.tokens <= 0 or held.until < self.monotonic():
                return False
            held.tokens -= 1
            return True
