"""Test fakes shared by more than one test file.

``FakeClock``: a clock that moves only when a test advances it or when the code under test sleeps
on it, so pacing, expiry and windows are asserted, never timed. Pass the instance itself where a
``monotonic`` / ``time.time``-like callable is expected and ``clock.sleep`` where a sleep is.
"""

from __future__ import annotations

import threading


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()  # several threads ("containers") may share one clock

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
