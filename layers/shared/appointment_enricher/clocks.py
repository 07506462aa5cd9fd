"""The three clocks, one name each across the package (parameters and attributes alike).

* ``now`` (``WallClock``): the wall clock as an aware UTC ``datetime``, for what is written down
  (``receivedAt``, ``enrichedAt``, TTLs, the replay window, the not-found grace).
* ``monotonic`` (``Monotonic``): ``time.monotonic`` seconds, for every deadline, pause and
  duration inside one process. Every ``deadline`` the package passes around is a value of this
  clock: the handler computes it (``monotonic() + remaining_ms / 1000 - margin``), and the HTTP
  client, the token sources, the secret store and the reconciler compare against the same clock.
* ``epoch`` (``Epoch``): ``time.time`` seconds, for times shared with other processes through
  storage (OAuth expiry and refresh leases in the secret, cursor TTLs).

Tests inject fakes under these names. Imports nothing of the package.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias

WallClock: TypeAlias = Callable[[], datetime]
Monotonic: TypeAlias = Callable[[], float]
Epoch: TypeAlias = Callable[[], float]


def utc_now() -> datetime:
    """The default ``now``."""
    return datetime.now(UTC)


monotonic: Monotonic = time.monotonic
epoch: Epoch = time.time
