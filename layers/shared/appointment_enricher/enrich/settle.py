"""Step 6: settle and report. Quarantine what failed permanently, complete or release each claim,
count outcomes, log one line per item.

Claims are completed after publishing or quarantining (a late duplicate of either does nothing)
and released when the record will be retried, so the retry can finish what failed part-way.
They are settled on the pool (independent DynamoDB writes): a batch of ten pays about one write
round trip instead of ten in a row; the ledger's receipts (``BulkCompletion``) go in one
BatchWriteItem, the same write units as ten PutItems in one request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

from ..clocks import WallClock
from .idempotency import BulkCompletion, Idempotency
from .items import Item, Outcome, Stats

METRICS: Mapping[Outcome, str] = {
    Outcome.DUPLICATE: "DuplicatesSkipped",
    Outcome.QUARANTINED: "RecordsQuarantined",
    Outcome.RETRY: "RecordsRetried",
    Outcome.SUPPRESSED: "UnchangedSuppressed",
    Outcome.COVERED: "ReconcileAlreadyAnnounced",
}


class QuarantineSink(Protocol):
    def send(
        self,
        original_body: str,
        *,
        error_type: str,
        error_message: str,
        source_message_id: str,
        extra: Mapping[str, str | None] | None = None,
        now: datetime | None = None,
    ) -> None: ...


def _metric(item: Item) -> str | None:
    if item.outcome is Outcome.PUBLISHED:
        ready = item.ready
        return "RecordsDeleted" if ready is not None and ready.record.deleted else "RecordsEnriched"
    return METRICS.get(item.outcome)


def _completion(item: Item) -> dict[str, Any] | None:
    """What completes the item's claim (None: release it, the record will be retried)."""
    if item.outcome is Outcome.COVERED:  # receipted, so a redelivery of it is a duplicate
        return {"published": False, "deleted": False, "covered": True}
    if item.outcome in (Outcome.PUBLISHED, Outcome.SUPPRESSED):
        ready = item.ready
        deleted = bool(ready and ready.record.deleted)
        return {"published": item.outcome is Outcome.PUBLISHED, "deleted": deleted}
    if item.outcome is Outcome.QUARANTINED:
        return {"quarantined": True, "errorType": item.error_type}
    return None


class Settler:
    def __init__(
        self,
        quarantine: QuarantineSink,
        idempotency: Idempotency,
        pool: ThreadPoolExecutor,
        *,
        now: WallClock,
        log: Callable[..., None],
    ) -> None:
        self.quarantine = quarantine
        self.idempotency = idempotency
        self.pool = pool
        self.now = now
        self.log = log

    def settle(self, items: list[Item], stats: Stats, *, settled: frozenset[str] = frozenset()) -> None:
        """Quarantine, then settle every claim: ``settled`` are deliveries the ledger's announce
        writes already marked settled (no receipt of their own)."""
        for item in items:
            if item.outcome is Outcome.QUARANTINED:
                try:
                    self._quarantine(item)
                except Exception as exc:  # noqa: BLE001 - could not park it: keep it on the queue
                    item.fail(Outcome.RETRY, "QuarantineFailed", f"{type(exc).__name__}: {exc}")
        claimed = [i for i in items if i.claimed and i.dedupe_id not in settled]
        if isinstance(self.idempotency, BulkCompletion):
            self._settle_in_bulk(self.idempotency, claimed)
        else:
            for _ in self.pool.map(self._settle_claim, claimed):
                pass
        for item in items:
            metric = _metric(item)
            if metric:
                stats.add(metric)
            self._report(item)

    def _report(self, item: Item) -> None:
        parsed = item.parsed
        ready = item.ready
        change = ready.change if ready is not None else None
        self.log(
            "warning" if item.outcome in (Outcome.RETRY, Outcome.QUARANTINED) else "info",
            f"record {item.outcome.value}",
            messageId=item.message_id,
            correlation_id=item.dedupe_id,
            appointmentId=parsed.ref.appointment_id if parsed else None,
            locationId=parsed.ref.location_id if parsed else None,
            changeKind=change.kind if change else None,
            errorType=item.error_type,
            errorMessage=item.error_message,
        )

    def _settle_claim(self, item: Item) -> None:
        """Complete (published, suppressed or quarantined) or release (to be retried); never raises."""
        dedupe = item.dedupe_id
        if dedupe is None:
            return
        try:
            result = _completion(item)
            if result is not None:
                self.idempotency.complete(dedupe, result)
            else:
                self.idempotency.release(dedupe, RuntimeError(item.error_type or "failed"))
        except Exception as exc:  # noqa: BLE001 - the outcome stands; the claim expires on its own
            self.log("warning", "idempotency update failed", error=type(exc).__name__, dedupeId=dedupe)

    def _settle_in_bulk(self, bulk: BulkCompletion, claimed: list[Item]) -> None:
        """Every completion in one request; releases one by one (never raises)."""
        results: dict[str, dict[str, Any]] = {}
        for item in claimed:
            result = _completion(item)
            if item.dedupe_id is not None and result is not None:
                results[item.dedupe_id] = result
            elif result is None:
                self._settle_claim(item)
        try:
            bulk.complete_all(results)
        except Exception as exc:  # noqa: BLE001 - the outcomes stand; a redelivery is caught downstream
            for dedupe in results:
                self.log("warning", "idempotency update failed", error=type(exc).__name__, dedupeId=dedupe)

    def _quarantine(self, item: Item) -> None:
        parsed = item.parsed
        ref = parsed.ref if parsed else None
        self.quarantine.send(
            item.raw,
            error_type=item.error_type or "Unknown",
            error_message=item.error_message or "",
            source_message_id=item.message_id,
            extra={
                "dedupeId": item.dedupe_id,
                "appointmentId": ref.appointment_id if ref else None,
                "locationId": ref.location_id if ref else None,
                "eventType": ref.type if ref else None,
            },
            now=self.now(),
        )
