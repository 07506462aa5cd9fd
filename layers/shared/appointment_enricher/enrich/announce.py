"""Step 5b: after the publish, promote each track's published state to the announced one.

The ledger write ahead of the publish (``track``) holds the new state as ``pending``; only here,
once its record went out, does it become the state the next record diffs against and the
reconciler compares with. The writes run on the pool (one per appointment moved) while the
batch is settled (``settle``: quarantine, receipts), since neither waits for the other: a crash
between them leaves one of the two states below, both already safe.

If this write fails, the record is out and its receipt follows: the ledger keeps the older
announced state, so the next record of the appointment reports the change again (a repeat, never
a loss) and the reconciler may enqueue it once more, which the enricher settles as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

from .track import NoTracking, Track, Tracker


def announce(
    tracker: Tracker | NoTracking,
    tracks: Sequence[Track],
    pool: ThreadPoolExecutor,
    log: Callable[..., None],
) -> Callable[[], None]:
    """Start the announce writes; the returned call waits for them (it never raises)."""

    def one(track: Track) -> None:
        try:
            tracker.announce(track)
        except Exception as exc:  # noqa: BLE001 - the record is out; the next one repeats the change
            log(
                "warning",
                "ledger announce failed",
                error=type(exc).__name__,
                appointmentId=track.appointment_id,
            )

    futures = [pool.submit(one, track) for track in tracks]

    def done() -> None:
        if futures:
            wait(futures)

    return done
