"""What one soak run is asked to do (``python -m dev.soak.webhooks`` options)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SoakConfig:
    events: int = 10_000
    workers: int = 3
    senders: int = 4
    seed: int = 7
    duplicates: float = 0.10
    invalid: float = 0.01
    timeout: float = 1800.0
    visibility_timeout: int = 8
    function_timeout: float = 7.0
    max_receive_count: int = 5
    faults: bool = True
    verbose: bool = True
    max_backlog: int = 200
    intake_faults: bool = False  # queue-write faults through dev/fakes/faultproxy.py
    sender: str = "retry-all"  # or "highlevel": only 429 retried, 6 attempts
    retry_unit: float = 1.0  # seconds that stand for HighLevel's 10-minute retry spacing
    foreign: int = 0  # verified deliveries for another app, to be ignored
