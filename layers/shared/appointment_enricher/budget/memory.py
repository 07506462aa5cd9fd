"""The in-process bucket: when no table is configured (local runs, unit tests), or as the only
consumer. Same arithmetic as the shared one (``base.decide``), under a lock."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .base import Lease, Limits, State, correct, decide


class MemoryBudget:
    def __init__(self) -> None:
        self._states: dict[str, State] = {}
        self._queues: dict[str, float] = {}
        self._lock = threading.Lock()

    def lease(self, location_id: str, count: int, *, now: float, limits: Limits) -> Lease:
        with self._lock:
            lease, state = decide(self._states.get(location_id, State()), count, now, limits)
            self._states[location_id] = state
        return lease

    def queue_place(self, location_id: str, *, earliest: float, limits: Limits) -> float:
        with self._lock:
            place = max(self._queues.get(location_id, 0.0), earliest) + limits.place_spacing
            self._queues[location_id] = place
        return place

    def observe(self, location_id: str, headers: Mapping[str, Any], *, now: float, limits: Limits) -> None:
        with self._lock:
            state = correct(self._states.get(location_id, State()), headers, now, limits)
            if state is not None:
                self._states[location_id] = state
