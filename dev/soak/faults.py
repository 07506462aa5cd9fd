"""The soak's faults: upstream bursts in the sandbox, queue-write faults at intake (through the
fault proxy), and what the sandbox serves for the plan."""

from __future__ import annotations

import itertools
import os
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dev.soak.config import SoakConfig
from dev.soak.plan import Plan

INTAKE_WRITES_BETWEEN_FAULTS = 8  # queue writes that go through between two rounds of intake faults


@dataclass
class IntakeFaultStats:
    queued: Counter[str] = field(default_factory=Counter)


def inject_intake_faults(
    proxy: Any, rng: random.Random, stop: threading.Event, stats: IntakeFaultStats
) -> None:
    """Every ~0.7 s (when the last ones were used up and at least ``INTAKE_WRITES_BETWEEN_FAULTS``
    queue writes went through since), the next one or two queue writes fail: mostly fast (500,
    503, throttling, landed then 500); the first time and every 8th after it slow (hang,
    trickle), which costs the receiver its whole budget: first, so that a short run (a few
    seconds of sends on a fast local stack) meets one too. Faults never pile up into a long
    outage: the point is transient failures, which a sender retrying only 429 must ride out.

    The gap is counted in writes, not only in time: the sender's 10-minute retry spacing is
    compressed to about half a second, so on a slow (loaded) machine a time-based cadence alone
    lets one retrying webhook be the next write after six fault rounds in a row and be given up,
    an outage no real intake fault rate makes."""
    from dev.fakes.faultproxy import Fault  # noqa: PLC0415

    fast = [Fault.error(500), Fault.error(503), Fault.throttle(), Fault.landed_then_error(500)]
    slow = [Fault.hang(5.0), Fault.trickle(4.0)]
    slow_due = False
    next_after = 0  # SendMessage requests the proxy must have seen before the next faults
    for round_ in itertools.count(1):
        if stop.wait(0.7):
            return
        slow_due = slow_due or round_ % 8 == 1  # kept until it can be queued
        with proxy.stats.lock:
            writes = proxy.stats.requests["SendMessage"]
        if proxy.pending() or writes < next_after:
            continue
        faults = [rng.choice(fast) for _ in range(rng.randint(1, 2))]
        if slow_due:
            faults, slow_due = [rng.choice(slow)], False
        proxy.queue(faults)
        next_after = writes + len(faults) + INTAKE_WRITES_BETWEEN_FAULTS
        for fault in faults:
            stats.queued[fault.kind] += 1


@dataclass
class FaultStats:
    bursts_429: int = 0
    bursts_500: int = 0
    hangs: int = 0
    drops: int = 0
    latency_changes: int = 0


def inject_faults(sandbox: Any, rng: random.Random, stop: threading.Event, stats: FaultStats) -> None:
    """Every ~1.5 s while webhooks are being sent: a burst of 429s or 500s, sometimes a hang or a
    dropped connection, and a new base latency. Unscoped faults hit whichever appointment asks next."""
    from dev.fakes.sandbox import Fault  # noqa: PLC0415

    while not stop.wait(1.5):
        roll = rng.random()
        if roll < 0.45:
            sandbox.queue_faults([Fault.error(429, headers={"Retry-After": "0.2"})] * rng.randint(3, 8))
            stats.bursts_429 += 1
        elif roll < 0.85:
            sandbox.queue_faults([Fault.error(500)] * rng.randint(2, 5))
            stats.bursts_500 += 1
        if rng.random() < 0.3:
            sandbox.queue_faults([Fault.hang(rng.choice((0.3, 0.8)))])
            stats.hangs += 1
        if rng.random() < 0.15:
            sandbox.queue_faults([Fault.drop()])
            stats.drops += 1
        sandbox.set_latency(rng.choice((0, 5, 20, 60)))
        stats.latency_changes += 1


def serve_plan(sandbox: Any, plan: Plan) -> None:
    """The sandbox serves every valid appointment and answers 422 for the 422-invalid ones."""
    from dev.fakes.sandbox import Fault  # noqa: PLC0415

    for appointment_id, event in plan.appointments.items():
        if event is not None:
            sandbox.put_appointment(event)
        else:
            count = sum(1 for w in plan.webhooks if w.appointment_id == appointment_id)
            sandbox.queue_faults([Fault.error(422)] * (count + 2), event_id=appointment_id)


def intake_environment(config: SoakConfig, endpoint: str) -> Any:
    """The webhook handler's environment for this run (``os.environ``, read at its cold start):
    its SQS endpoint behind a fault proxy with ``intake_faults`` (returned, started), and with
    ``foreign`` deliveries planned, it serves the dev marketplace app only."""
    if config.foreign:
        from dev.fakes.signing import DEV_APP_ID  # noqa: PLC0415

        os.environ["WEBHOOK_APP_IDS"] = DEV_APP_ID
    if not config.intake_faults:
        return None
    from dev.fakes.faultproxy import FaultProxy  # noqa: PLC0415

    proxy = FaultProxy(endpoint).start()
    os.environ["AWS_ENDPOINT_URL"] = proxy.url
    return proxy


def start_fault_injection(
    config: SoakConfig,
    sandbox: Any,
    *,
    proxy: Any,
    rng: random.Random,
    stop: threading.Event,
    faults: FaultStats,
    intake_faults: IntakeFaultStats,
) -> None:
    """Upstream faults in the sandbox (``--faults``) and queue faults at intake (``--intake-faults``)."""
    if config.faults:
        threading.Thread(target=inject_faults, args=(sandbox, rng, stop, faults), daemon=True).start()
    if proxy is not None:
        threading.Thread(
            target=inject_intake_faults,
            args=(proxy, random.Random(config.seed + 1), stop, intake_faults),
            daemon=True,
        ).start()
