"""Dev helpers for the reconciler: appointments dated around now for the sandbox, ledger entries
written through the ledger's adapter for tests, and ``make run``'s reconcile schedule.

Dev only, never ships.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def iso_ms(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def recent_event(
    appointment_id: str,
    location_id: str,
    calendar_id: str = "ReconCal001",
    *,
    start_in: timedelta = timedelta(days=1),
    updated: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Get Appointment ``event`` (every documented required field) starting ``start_in`` from now."""
    start = datetime.now(UTC).replace(microsecond=0) + start_in
    return {
        "id": appointment_id,
        "title": f"Reconcile {appointment_id}",
        "calendarId": calendar_id,
        "locationId": location_id,
        "contactId": "ReconContact1",
        "groupId": "ReconGroup1",
        "appointmentStatus": "confirmed",
        "assignedUserId": "ReconUser1",
        "users": ["ReconUser1"],
        "startTime": iso_ms(start),
        "endTime": iso_ms(start + timedelta(minutes=30)),
        "dateAdded": "2026-01-05T10:00:00.000Z",
        "dateUpdated": iso_ms(updated or datetime.now(UTC)),
        **extra,
    }


def seed_ledger(
    ddb: Any,
    table: str,
    appointment_id: str,
    location_id: str,
    date_updated: str | None,
    *,
    deleted: bool = False,
) -> None:
    """One appointment entry written through the ledger's own adapter (as the enricher writes it),
    and its location in the ``locations`` set."""
    from appointment_enricher.ledger.base import LedgerEntry  # noqa: PLC0415
    from appointment_enricher.ledger.dynamodb import DynamoLedger  # noqa: PLC0415 - the layer's package

    ledger = DynamoLedger(ddb, table)
    current = ledger.entries([appointment_id]).get(appointment_id)
    moment = datetime.fromisoformat(date_updated.replace("Z", "+00:00")) if date_updated else None
    ledger.save(
        LedgerEntry(
            appointment_id,
            location_id,
            moment,
            deleted,
            revision=current.revision if current is not None else 0,
        )
    )
    ledger.remember_locations([location_id])


class ReconcileLoop:
    """``make run``'s stand-in for the schedule: invoke the reconciler handler every ``every``
    seconds on a daemon thread and say what it recovered."""

    def __init__(self, handler: Any, every: float, say: Any, timeout_seconds: float = 25.0) -> None:
        import threading  # noqa: PLC0415

        self.handler, self.every, self.say, self.timeout_seconds = handler, every, say, timeout_seconds
        self.runs: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconcile-schedule", daemon=True)

    def start(self) -> ReconcileLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_seconds + 5)

    def run_once(self) -> dict[str, Any]:
        from dev.fakes.lambda_context import make_context  # noqa: PLC0415

        summary: dict[str, Any] = self.handler(
            {}, make_context("ReconcilerFunction", timeout_seconds=self.timeout_seconds)
        )
        self.runs.append(summary)
        self.say(describe_run(summary))
        return summary

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - a dev loop: report and carry on
                self.say(f"<<< reconcile failed: {type(exc).__name__}: {exc}")


def describe_run(summary: dict[str, Any]) -> str:
    """One line per run, plus one per recovered kind."""
    if summary.get("busy"):
        return f"<<< reconcile: skipped, another run holds the lease until {summary.get('leaseHeldUntil')}"
    recovered = ", ".join(f"{n} {kind}" for kind, n in sorted((summary.get("recovered") or {}).items()))
    return (
        f"<<< reconcile: {summary.get('locations')} location(s), {summary.get('calendars')} calendar(s), "
        f"{summary.get('listed')} listed, {summary.get('enqueued')} recovered"
        f"{f' ({recovered})' if recovered else ''}, {summary.get('errors')} error(s), "
        f"{summary.get('requests')} upstream request(s) in {summary.get('durationMs')} ms"
        f"{', stopped early' if summary.get('stoppedEarly') else ''}"
    )


def reconciler_env(stack_env: dict[str, str], fallback_table: str, *location_ids: str) -> dict[str, str]:
    """What the local stack's env lacks for the reconciler: the ledger table (the stack's own when
    it declares one) and the locations to sweep."""
    extra = {"RECONCILE_LOCATION_IDS": ",".join(location_ids)}
    if not stack_env.get("LEDGER_TABLE_NAME"):
        extra["LEDGER_TABLE_NAME"] = fallback_table
    return extra
