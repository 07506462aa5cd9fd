"""Step 5b: after the publish, promote each track's published state to the announced one.

The ledger write ahead of the publish (``track``) holds the new state as ``pending``; only here,
once its record went out, does it become the state the next record diffs against and the
reconciler compares with. The same write marks the deliveries whose records went out as settled
(``settled`` in the item), so they need no receipt item: the writes run on the pool (one per
appointment moved) and the settling (``settle``: quarantine, the other receipts) follows them,
knowing which deliveries they settled.

If this write fails, the record is out and its receipt is written by the settling instead: the
ledger keeps the older announced state, so the next record of the appointment reports the change
again (a repeat, never a loss) and the reconciler may enqueue it once more, which the enricher
settles as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from .track import NoTracking, Track, Tracker


def announce(
    tracker: Tracker | NoTracking,
    tracks: Sequence[Track],
    pool: ThreadPoolExecutor,
    log: Callable[..., None],
) -> frozenset[str]:
    """The announce writes, in parallel; returns the deliveries they settled (never raises)."""

    def one(track: Track) -> frozenset[str]:
        try:
            return tracker.announce(track)
        except Exception as exc:  # noqa: BLE001 - the record is out; the next one repeats the change
            log(
                "warning",
                "ledger announce failed",
                error=type(exc).__name__,
                appointmentId=track.appointment_id,
            )
            return frozenset()

    settled: set[str] = set()
    for done in pool.map(one, tracks):
        settled |= done
    return frozenset(settled)
