"""A container's own share of a location's budget: n requests per interval, written nowhere.

The fleet's ``Limits`` keep ``reserved`` requests per interval out of the shared bucket for these
shares, n for each container that may run at once (``wiring.fleet_limits``), so any window sees at
most the bucket's part plus every container's n. A location that sees a few requests per interval
(most of them, most of the time) then costs no DynamoDB write and no round trip before its fetch,
and a backlog spread over the containers is mostly served without one. ``Spender`` takes from the
share before any lease.

The window slides over the container's last n requests, and a request counts from when it was
answered (``settle``), not from when it was granted: upstream counts it when it arrives,
somewhere between the two, so a share spent in a burst and granted again one interval after the
grants could meet upstream's window while the previous burst's requests were still arriving (a
token lookup, a slow connection). Stamped at the answer, the next grant comes one interval after
the arrival at the latest, whatever the delay.
"""

from __future__ import annotations

import threading
import time

from ..clocks import Monotonic


class OwnShare:
    """``share`` requests per location in any ``interval`` for one container (thread-safe)."""

    def __init__(self, share: int, monotonic: Monotonic = time.monotonic) -> None:
        self.share = int(share)
        self.monotonic = monotonic
        # Per location: the times of its last ``share`` requests, each one cell (a one-item list)
        # so that ``settle`` can restamp it when the request is answered.
        self._log: dict[str, list[list[float]]] = {}
        self._closed: dict[str, float] = {}  # per location: no request from the share until then
        self._granted = threading.local()  # the cell of this thread's last grant
        self._lock = threading.Lock()

    def forget(self) -> None:
        """A new request starts on this thread: nothing of an earlier one is left to settle."""
        self._granted.cell = None

    def take(self, location_id: str, interval: float) -> bool:
        """One request from the share, if it has one: fewer than ``share`` requests in the last
        ``interval``, and upstream has not closed it."""
        if not self.share:
            return False
        with self._lock:
            now = self.monotonic()
            if self._closed.get(location_id, now) > now:
                return False
            log = self._log.setdefault(location_id, [])
            if len(log) < self.share:
                cell = [now]
                log.append(cell)
            else:
                cell = min(log, key=lambda stamped: stamped[0])  # share <= 10 cells
                if now - cell[0] < interval:
                    return False
                cell[0] = now
            self._granted.cell = cell
            return True

    def settle(self) -> None:
        """The request this thread's last grant allowed has been answered (or has failed): it
        counts from now. A request never made may stay stamped at its grant."""
        cell = getattr(self._granted, "cell", None)
        if cell is None:
            return
        self._granted.cell = None
        with self._lock:
            cell[0] = max(cell[0], self.monotonic())

    def close(self, location_id: str, seconds: float) -> None:
        """No request from the share for ``seconds``: upstream said the window or the day is spent."""
        if not self.share:
            return
        with self._lock:
            until = self.monotonic() + seconds
            self._closed[location_id] = max(self._closed.get(location_id, until), until)

    def times(self, location_id: str) -> list[float]:
        """When the location's last requests counted from (oldest grant first)."""
        with self._lock:
            return [cell[0] for cell in self._log.get(location_id, [])]
