"""The enricher's batch logic: one effect per webhook, in order per appointment.

For one SQS batch, each step in its own module:
1. ``parse``: each ingest message -> a parsed item (unparseable -> quarantine);
2-4. ``prepare``, per appointment (the FIFO ``MessageGroupId``, batch order kept inside a group),
   on a bounded thread pool sharing one HTTP session, while the batch's ledger entries are read
   in one call: 2. claim each message (``idempotency``); 3. ``fetch`` each appointment once for
   the whole group and check it (location, 404 grace, stale reads); 4. ``track``: give each record
   its change and write the ledger;
5. ``publish``: publish in rounds (the n-th record of every group in round n, ten per call);
6. ``settle``: quarantine, complete or release claims, count, log.

Why not Powertools' ``SqsFifoPartialProcessor``: it handles records strictly one at a time (even
with ``skip_group_on_error``, which gives the per-group failure rule we follow), so every record
costs its own upstream call and a slow or rate-limited appointment stalls the whole batch. We keep
its ordering guarantee per group but run groups in parallel and share one fetch per appointment,
which is what keeps a burst of updates to one appointment at one upstream call per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..clocks import Monotonic, WallClock, utc_now
from ..config.intake import Tenancy
from ..ledger.base import BatchRead, Ledger
from ..wire import DEFAULT_NOT_FOUND_GRACE_SECONDS
from .announce import announce
from .fetch import AppointmentSource
from .handback import HandBack
from .idempotency import Idempotency, NoIdempotency
from .items import Item, Outcome, ParsedItem, Stats, retry_rest
from .parse import parse_record
from .prepare import GroupContext, GroupPreparer
from .publish import RecordPublisher, publish_in_rounds
from .settle import QuarantineSink, Settler
from .tenancy import refuse_foreign
from .track import NoTracking, ReceiptClaims, Track, Tracker

if TYPE_CHECKING:  # ``enrich.related`` is imported by ENRICH_RELATED builds only (``wiring``)
    from .related import RelatedFetcher

__all__ = [
    "AppointmentSource",
    "EnricherService",
    "Item",
    "Outcome",
    "QuarantineSink",
    "RecordPublisher",
    "Stats",
]

DEADLINE_MARGIN_SECONDS = 5.0  # of a 60 s function timeout (template.yaml)
# No publish attempt (a round, or the publisher's retry within one) starts with less than this
# share of the deadline margin left: 4 s of the default 5 s, so an attempt that starts at the last
# moment (at most ``aws.sdk.PUBLISH_ATTEMPT_SECONDS``, 3 s) still leaves 1 s for announcing, receipts
# and quarantine writes before the Lambda timeout. What is left retries, in order.
PUBLISH_RESERVE_SHARE = 0.8
# Tasks a batch runs on the pool beside its groups: the ledger read, the locations write, the warm-up.
BATCH_TASKS = 3


class EnricherService:
    """Turns an SQS batch into published records, quarantined messages and batch item failures."""

    def __init__(
        self,
        source: AppointmentSource,
        publisher: RecordPublisher,
        quarantine: QuarantineSink,
        idempotency: Idempotency | None = None,
        *,
        ledger: Ledger | None = None,
        not_found_grace_seconds: float = DEFAULT_NOT_FOUND_GRACE_SECONDS,
        suppress_unchanged: bool = False,
        max_workers: int = 8,
        deadline_margin_seconds: float = DEADLINE_MARGIN_SECONDS,
        now: WallClock = utc_now,
        monotonic: Monotonic = time.monotonic,
        log: Callable[..., None] | None = None,
        related: RelatedFetcher | None = None,
        handback: HandBack | None = None,
        tenancy: Tenancy | None = None,
        warm: Callable[[], object] | None = None,
    ) -> None:
        self.source = source
        self.related = related  # ENRICH_RELATED; None: no related entities
        self.tenancy = tenancy  # ``WEBHOOK_LOCATION_IDS`` / ``WEBHOOK_APP_IDS`` (None: any)
        self.publisher = publisher
        self.quarantine = quarantine
        # With a ledger and no idempotency store of its own, the ledger's receipts are the claims.
        self.idempotency = idempotency or (ReceiptClaims(ledger) if ledger is not None else NoIdempotency())
        self.tracker = Tracker(ledger) if ledger is not None else NoTracking()
        self.not_found_grace_seconds = not_found_grace_seconds
        self.suppress_unchanged = suppress_unchanged
        self.now = now
        self.monotonic = monotonic
        self.log = log or (lambda *args, **kwargs: None)
        # ``max_workers`` groups at once, plus the batch's own tasks beside them (the ledger read,
        # the locations write, the warm-up): a full batch's groups all start with the read.
        self._pool = ThreadPoolExecutor(max_workers=max_workers + BATCH_TASKS, thread_name_prefix="enrich")
        self.max_workers = max_workers
        self.deadline_margin_seconds = deadline_margin_seconds
        self.handback = handback
        # Started beside each batch's ledger read: the token secret's cache (a no-op while it is
        # fresh), so a cold container's first fetch does not wait for Secrets Manager after the read.
        self.warm = warm

    def process(
        self,
        records: Sequence[Mapping[str, Any]],
        remaining_ms: Callable[[], int],
        stats: Stats | None = None,
    ) -> list[Item]:
        """Process one SQS batch; every item ends PUBLISHED, SUPPRESSED, DUPLICATE, QUARANTINED or RETRY."""
        stats = stats or Stats()
        # Upstream retries stop this long before the Lambda would be killed, leaving time to
        # publish, quarantine, settle idempotency and report batch item failures.
        deadline = self.monotonic() + remaining_ms() / 1000 - self.deadline_margin_seconds
        items = [parse_record(record) for record in records]
        refuse_foreign(items, self.tenancy)
        stats.add("RecordsReceived", len(items))
        groups: dict[str, list[ParsedItem]] = {}
        for item in items:
            parsed = item.parsed
            if item.outcome is Outcome.PENDING and parsed is not None:
                groups.setdefault(item.group, []).append(ParsedItem(item, parsed))
        tracks = self._prepare(groups, remaining_ms, deadline) if groups else []
        publish_in_rounds(
            self.publisher,
            [[e.item for e in group] for group in groups.values()],
            suppress_unchanged=self.suppress_unchanged,
            time_left=lambda: remaining_ms() >= self.deadline_margin_seconds * PUBLISH_RESERVE_SHARE * 1000,
        )
        settled = announce(self.tracker, tracks, self._pool, self.log)
        if not isinstance(self.idempotency, ReceiptClaims):
            settled = frozenset()  # another idempotency store completes its own claims
        Settler(self.quarantine, self.idempotency, self._pool, now=self.now, log=self.log).settle(
            items, stats, settled=settled
        )
        if self.handback is not None:
            self.handback.hand_back(items, stats)
        return items

    def failures(self, items: Iterable[Item]) -> list[dict[str, str]]:
        return [{"itemIdentifier": item.message_id} for item in items if item.outcome is Outcome.RETRY]

    def _prepare(
        self, groups: dict[str, list[ParsedItem]], remaining_ms: Callable[[], int], deadline: float
    ) -> list[Track]:
        """The batch's one ledger read (entries and receipts) runs on the pool while each group
        fetches its first appointment (``prepare.fetch_early``); the group then claims, tracks
        and writes. ``warm`` starts first: the token it reads (a cold container's only) is what
        the first fetch waits for, and the fetch is the longest step. The batch's new locations
        for the ledger follow the read (``_remember_after``)."""
        ids = sorted({e.parsed.ref.appointment_id for group in groups.values() for e in group})
        dedupe_ids = [e.dedupe_id for group in groups.values() for e in group]
        if self.warm is not None:
            self._pool.submit(self.warm)
        read: Future[BatchRead] = self._pool.submit(self.tracker.read, ids, dedupe_ids)
        locations = sorted({e.parsed.ref.location_id for group in groups.values() for e in group})
        # A failed write is not lost: each group's save writes its location again and raises there.
        self._pool.submit(_remember_after, self.tracker, locations, read)
        batch = self.related.batch(deadline) if self.related is not None else None
        context = GroupContext(remaining_ms, deadline, read.result, self.now(), batch)
        preparer = GroupPreparer(
            self.source, self.idempotency, self.tracker, not_found_grace_seconds=self.not_found_grace_seconds
        )
        futures = [self._pool.submit(self._prepare_group, preparer, g, context) for g in groups.values()]
        return [track for future in futures for track in future.result()]

    def _prepare_group(
        self, preparer: GroupPreparer, group: list[ParsedItem], context: GroupContext
    ) -> list[Track]:
        """One group on a worker thread; an unexpected error retries what is left, in order."""
        try:
            return preparer.prepare(group, context)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose messages or break the order
            self.log(
                "exception", "group failed unexpectedly", error=type(exc).__name__, group=group[0].item.group
            )
            retry_rest(group, "UnexpectedError", f"{type(exc).__name__}: {exc}")
            return []


def _remember_after(tracker: Tracker | NoTracking, locations: list[str], read: Future[BatchRead]) -> None:
    """The batch's new locations, once the read has shown which ones the ledger already holds
    (the location of every entry read): a container's first batch of known appointments writes
    nothing. After a failed read nothing is written: every group retries before its first save."""
    if read.exception() is None:
        tracker.remember(locations)
