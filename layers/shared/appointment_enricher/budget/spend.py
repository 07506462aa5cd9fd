"""The client side of the budget: each request takes one token, from a short-lived local lease.

One ``Spender`` per container (shared by its worker threads). A token comes from the location's
local lease when it holds one still fresh (``lease_seconds``); otherwise a lease of ``lease``
tokens is taken from the shared bucket, by one thread of the container at a time. With no budget
left the caller waits when the wait is short (``max_wait``, all waits together) and within its
deadline, else ``BudgetThrottled`` says when to come back: the enricher hands the message back
with that visibility, it never sits out the batch. With ``queue`` that time is a place in the
location's queue, and a container that knows the queue is long hands fresh work back at once.

Unused tokens of a lease expire after ``lease_seconds``: they were counted in the shared bucket
when granted, so spending them later could exceed the upstream window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..clocks import Epoch, Monotonic
from .base import Budget, BudgetThrottled, DailyBudgetExhausted, Limits, limits_from_headers


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
        self._held: dict[str, _Held] = {}
        self._limits: dict[str, Limits] = {}
        self._lock = threading.Lock()
        # One lease request per location at a time from this container: the worker threads of a
        # batch ask together, and each conditional write they race with is a billed write that
        # fails; the ones that queue here take from the lease the first one got.
        self._leasing: dict[str, threading.Lock] = {}
        self._queued_until: dict[str, float] = {}  # epoch of the last queue place handed out here
        self._asking: dict[str, int] = {}  # threads of this container in take() per location

    def limits(self, location_id: str) -> Limits:
        with self._lock:
            return self._limits.get(location_id, self.default_limits)

    def take(self, location_id: str, *, deadline: float) -> None:
        """One token for one request to ``location_id``, or ``BudgetThrottled``.

        ``max_wait`` bounds the time spent here in all (waits for the bucket and for this
        container's lease request alike), not each wait: many threads sharing a full bucket would
        otherwise each wait one slot after another and hold their batch, and a batch held on one
        location's budget keeps the queue's next messages, other locations' included, waiting.

        With ``queue``, work that gives up takes a place in the location's queue (it comes back
        when the bucket will serve it), and while this container knows the queue to be longer
        than ``max_wait``, a request that finds no token at once gives up at once: waiting could
        only take a token from work queued before it, and the batch is better handed back fast.
        """
        with self._lock:
            self._asking[location_id] = self._asking.get(location_id, 0) + 1
        try:
            self._take(location_id, deadline)
        finally:
            with self._lock:
                self._asking[location_id] -= 1

    def _take(self, location_id: str, deadline: float) -> None:
        started = self.monotonic()
        while True:
            if self._from_held(location_id):
                return
            limits = self.limits(location_id)
            lock = self._lease_lock(location_id)
            if not lock.acquire(
                timeout=max(
                    0.0, min(self.max_wait - (self.monotonic() - started), deadline - self.monotonic())
                )
            ):
                raise self._throttled(location_id, limits, limits.spacing)
            try:
                if self._from_held(location_id):  # another thread leased while this one queued
                    return
                lease = self.budget.lease(
                    location_id, self._lease_size(location_id), now=self.epoch(), limits=limits
                )
                if lease.tokens:
                    with self._lock:
                        self._held[location_id] = _Held(
                            lease.tokens - 1, self.monotonic() + self.lease_seconds
                        )
                    return
            finally:
                lock.release()
            if lease.daily_exhausted:
                raise DailyBudgetExhausted(
                    "daily upstream quota spent for this location", retry_after=lease.wait
                )
            now = self.monotonic()
            if (
                self._backlogged(location_id)
                or now - started + lease.wait > self.max_wait
                or now + lease.wait > deadline
            ):
                raise self._throttled(location_id, limits, lease.wait)
            self.sleep(lease.wait)

    def _throttled(self, location_id: str, limits: Limits, wait: float) -> BudgetThrottled:
        """Give up for now: come back in ``wait``, or (``queue``) when the place taken is served."""
        retry_after = wait
        if self.queue:
            now = self.epoch()
            place = self.budget.queue_place(location_id, earliest=now + wait, limits=limits)
            with self._lock:
                self._queued_until[location_id] = max(self._queued_until.get(location_id, 0.0), place)
            retry_after = max(wait, place - now)
        return BudgetThrottled("no upstream budget for this location yet", retry_after=retry_after)

    def _lease_size(self, location_id: str) -> int:
        """``lease`` tokens, or during a backlog only as many as this container's threads are
        asking for: every token is then someone's turn, and one that expires unspent is lost to
        the whole fleet (a batch of returning work is often one or two messages)."""
        if not self._backlogged(location_id):
            return self.lease_size
        with self._lock:
            return max(1, min(self.lease_size, self._asking.get(location_id, 1)))

    def _backlogged(self, location_id: str) -> bool:
        """This container's last place in the location's queue is further away than ``max_wait``."""
        if not self.queue:
            return False
        with self._lock:
            return self._queued_until.get(location_id, 0.0) > self.epoch() + self.max_wait

    def observe(self, location_id: str, headers: Mapping[str, Any]) -> None:
        """Every response's ``X-RateLimit-*``: sizes the bucket and corrects the shared count."""
        if "X-RateLimit-Remaining" not in headers and "X-RateLimit-Daily-Remaining" not in headers:
            return
        limits = limits_from_headers(headers, self.limits(location_id))
        with self._lock:
            self._limits[location_id] = limits
            if any(
                str(headers.get(name, "1")).strip() in ("0", "-1")
                for name in ("X-RateLimit-Remaining", "X-RateLimit-Daily-Remaining")
            ):
                self._held.pop(location_id, None)  # the window or the day is spent: spares are void
        self.budget.observe(location_id, headers, now=self.epoch(), limits=limits)

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
