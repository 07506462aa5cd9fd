"""The rule that settles a reconcile duplicate without a fetch (``Track.covers``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from appointment_enricher.enrich.track import Track
from appointment_enricher.ledger.base import (
    DELETED_BY_NOT_FOUND,
    DELETED_BY_WEBHOOK,
    LedgerEntry,
    LedgerState,
)
from appointment_enricher.wire import WebhookRef

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 30, 10, 5, tzinfo=UTC)
REF = WebhookRef("AppointmentUpdate", "Loc1", "Appt1", "wh-1", None)


def track(**over: object) -> Track:
    fields: dict[str, object] = {"date_updated": T0, "deleted": False, **over}
    return Track(REF, LedgerEntry("Appt1", "Loc1", **fields))  # type: ignore[arg-type]


def test_a_reconcile_of_the_announced_state_or_older_is_covered() -> None:
    assert track().covers("reconcile", False, T0)
    assert track(date_updated=T1).covers("reconcile", False, T0)


@pytest.mark.parametrize(
    ("read", "trigger", "deleted", "date"),
    [
        ({}, "reconcile", False, T1),  # newer: fetched and published
        ({}, "backfill", False, T0),  # an operator's request always publishes
        ({}, "webhook", False, T0),
        ({}, "reconcile", False, None),  # nothing to compare with
        ({}, "reconcile", True, T0),  # listed deleted, announced live
        ({"deleted": True, "deleted_by": DELETED_BY_WEBHOOK}, "reconcile", False, T0),
        ({"deleted": True, "deleted_by": DELETED_BY_NOT_FOUND}, "reconcile", False, T0),  # a repair
        ({"announced": False, "pending": LedgerState(T0, False)}, "reconcile", False, T0),  # pending only
    ],
)
def test_anything_else_is_processed_as_before(
    read: dict[str, object], trigger: str, deleted: bool, date: datetime | None
) -> None:
    assert not track(**read).covers(trigger, deleted, date)


def test_a_missing_entry_is_not_covered_and_a_tombstone_covers_its_delete() -> None:
    assert not Track(REF, None).covers("reconcile", False, T0)
    assert track(deleted=True, deleted_by=DELETED_BY_WEBHOOK).covers("reconcile", True, T0)
