"""The soak's senders: POST each webhook of a lane through the gateway, retrying as a policy says
(an eager sender, or HighLevel's documented policy), and the bounded waits of the run."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dev.soak.config import SoakConfig
from dev.soak.plan import Plan, Webhook


@dataclass
class SendStats:
    deliveries: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    accepted: set[str] = field(default_factory=set)
    not_accepted: dict[str, int] = field(default_factory=dict)
    given_up: set[str] = field(default_factory=set)  # still 429 after the sender's last attempt
    ignored: set[str] = field(default_factory=set)  # answered 200 ignored
    lock: threading.Lock = field(default_factory=threading.Lock)


HIGHLEVEL_RETRY_SPACING_SECONDS = 600  # documented: every 10 minutes (plus jitter)
HIGHLEVEL_MAX_ATTEMPTS = 6


def highlevel_retry_delay(retry_after: str | None, unit: float, rng: random.Random) -> float:
    """Seconds to wait before the next attempt: HighLevel's 10 minutes, or a longer Retry-After,
    compressed so that 10 minutes last ``unit`` seconds, with up to 20 % jitter."""
    try:
        asked = float(retry_after) if retry_after is not None else 0.0
    except ValueError:
        asked = 0.0
    spacing = max(HIGHLEVEL_RETRY_SPACING_SECONDS, asked)
    return unit * spacing / HIGHLEVEL_RETRY_SPACING_SECONDS * (1 + 0.2 * rng.random())


@dataclass
class SenderPolicy:
    """When a sender retries a delivery, and after how long (``None``: the answer is final).

    ``highlevel``: HighLevel's documented policy, only 429 retried, 6 attempts, Retry-After
    honoured, 10 minutes compressed to ``unit`` seconds. Otherwise an eager sender that retries
    any answer but 2xx, 400, 401 and 413 a few times, briefly (the soak's default)."""

    highlevel: bool = False
    unit: float = 1.0
    rng: random.Random = field(default_factory=random.Random)

    @property
    def attempts(self) -> int:
        return HIGHLEVEL_MAX_ATTEMPTS if self.highlevel else 5

    def delay(self, status: int, attempt: int, retry_after: str | None) -> float | None:
        if attempt >= self.attempts - 1:
            return None
        if self.highlevel:
            return highlevel_retry_delay(retry_after, self.unit, self.rng) if status == 429 else None
        if 200 <= status < 300 or status in (400, 401, 413):
            return None
        return 0.2 * (attempt + 1)


def send_lane(
    url: str,
    lane: list[Webhook],
    stats: SendStats,
    stop: threading.Event,
    *,
    policy: SenderPolicy | None = None,
    backlog: Callable[[], int] | None = None,
    max_backlog: int = 0,
) -> None:
    """POST each webhook in order, retrying as ``policy`` says (a connection error is status 0).

    With ``max_backlog``, wait while more than that many accepted webhooks have no outcome yet:
    moto's SQS gets slower with every queued message, and an unbounded backlog would measure moto
    rather than the pipeline.
    """
    import requests  # noqa: PLC0415

    policy = policy or SenderPolicy()
    session = requests.Session()
    for webhook in lane:
        while backlog is not None and max_backlog and backlog() > max_backlog and not stop.is_set():
            stop.wait(0.05)
        if stop.is_set():
            return
        status, ignored = 0, False
        for attempt in range(policy.attempts):
            retry_after = None
            try:
                response = session.post(url, data=webhook.body, headers=webhook.headers, timeout=30)
                status, retry_after = response.status_code, response.headers.get("retry-after")
                ignored = status == 200 and response.json().get("status") == "ignored"
            except requests.RequestException:
                status = 0
            with stats.lock:
                stats.deliveries += 1
                stats.statuses[status] += 1
                stats.retries += 1 if attempt else 0
            delay = policy.delay(status, attempt, retry_after)
            if delay is None:
                break
            stop.wait(delay)
        _tally(stats, webhook.webhook_id, status, ignored)
    session.close()


def _tally(stats: SendStats, webhook_id: str, status: int, ignored: bool) -> None:
    with stats.lock:
        if status == 202:
            stats.accepted.add(webhook_id)
        elif ignored:
            stats.ignored.add(webhook_id)
        else:
            stats.not_accepted[webhook_id] = status
            if status == 429:
                stats.given_up.add(webhook_id)  # the sender's last attempt was still a 429


def send_late_duplicates(
    send: Callable[[list[Webhook], SendStats, threading.Event], None], plan: Plan, sent: SendStats
) -> None:
    """Late duplicates: the originals are settled and deleted, so intake lets them through."""
    late = SendStats()
    send(plan.late_duplicates, late, threading.Event())
    sent.deliveries += late.deliveries
    sent.statuses.update(late.statuses)
    for webhook_id, status in late.not_accepted.items():
        sent.not_accepted[f"{webhook_id}(late duplicate)"] = status


def wait_for_threads(
    threads: list[threading.Thread],
    deadline: float,
    *,
    stop_early: Callable[[], bool],
    progress: Callable[[], None],
    every: float = 15.0,
) -> None:
    """Until the threads end, ``deadline`` (monotonic) or ``stop_early()``; ``progress()`` every so often."""
    next_progress = time.monotonic() + every
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        time.sleep(0.5)
        if stop_early():
            return
        if time.monotonic() >= next_progress:
            next_progress += every
            progress()


def wait_until(condition: Callable[[], bool], deadline: float, step: float = 0.5) -> bool:
    """Poll ``condition`` until true or ``deadline`` (monotonic): a bounded loop."""
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def make_sender(config: SoakConfig, url: str) -> Callable[..., None]:
    """The sender the soak plays: the plain one, or one that follows HighLevel's retry policy."""

    def send(lane: list[Webhook], stats: SendStats, stop: threading.Event, **kw: Any) -> None:
        policy = SenderPolicy(
            highlevel=config.sender == "highlevel",
            unit=config.retry_unit,
            rng=random.Random(config.seed + len(lane)),
        )
        send_lane(url, lane, stats, stop, policy=policy, **kw)

    return send
