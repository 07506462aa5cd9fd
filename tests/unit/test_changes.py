"""The diff rules of ``change`` (pure)."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appointment_enricher.changes import KIND_ORDER, Change, diff, is_stale

BASE: dict[str, Any] = {
    "id": "A1",
    "title": "Consult",
    "appointmentStatus": "confirmed",
    "assignedUserId": "U1",
    "startTime": "2026-12-01T10:00:00+00:00",
    "endTime": "2026-12-01T10:30:00+00:00",
    "dateUpdated": "2026-11-30T09:00:00Z",
    "notes": "first",
}


def _with(**over: Any) -> dict[str, Any]:
    return {**BASE, **over}


def test_no_earlier_state_is_created() -> None:
    change = diff(None, BASE)
    assert change.as_json() == {"kind": "created", "kinds": ["created"], "changedFields": [], "previous": {}}


def test_after_a_tombstone_is_created_again() -> None:
    assert diff(BASE, BASE, earlier_deleted=True).kind == "created"


def test_tombstone_is_deleted_and_a_second_one_unchanged() -> None:
    assert diff(BASE, {"id": "A1"}, deleted=True).kinds == ("deleted",)
    assert diff(BASE, {"id": "A1"}, deleted=True, earlier_deleted=True).kind == "unchanged"
    assert diff(None, {"id": "A1"}, deleted=True).kind == "deleted"


def test_reschedule_and_reassign_together() -> None:
    after = _with(
        startTime="2026-12-01T11:00:00+00:00", endTime="2026-12-01T11:30:00+00:00", assignedUserId="U2"
    )
    change = diff(BASE, after)
    assert change.as_json() == {
        "kind": "rescheduled",
        "kinds": ["rescheduled", "reassigned"],
        "changedFields": ["assignedUserId", "endTime", "startTime"],
        "previous": {
            "assignedUserId": "U1",
            "endTime": "2026-12-01T10:30:00+00:00",
            "startTime": "2026-12-01T10:00:00+00:00",
        },
    }


def test_cancelled_outranks_everything_but_created_and_deleted() -> None:
    after = _with(appointmentStatus="cancelled", startTime="2026-12-01T12:00:00Z", notes="moved")
    change = diff(BASE, after)
    assert change.kinds == ("cancelled", "rescheduled", "updated")
    assert change.previous["appointmentStatus"] == "confirmed"


def test_other_status_change_is_status_changed() -> None:
    assert diff(BASE, _with(appointmentStatus="showed")).kinds == ("statusChanged",)
    assert diff(_with(appointmentStatus="cancelled"), BASE).kinds == ("statusChanged",)


def test_same_instant_in_another_offset_is_no_change() -> None:
    after = _with(startTime="2026-12-01T15:30:00+05:30", endTime="2026-12-01 10:30:00")
    assert diff(BASE, after) == Change(("unchanged",))


def test_date_updated_alone_is_no_change() -> None:
    assert diff(BASE, _with(dateUpdated="2026-11-30T10:00:00Z")).as_json()["kind"] == "unchanged"


def test_any_other_field_is_updated_with_previous_as_published() -> None:
    after = _with(notes="second", address="Main St")
    change = diff(BASE, after)
    assert change.kinds == ("updated",)
    assert change.changed_fields == ("address", "notes")
    assert change.previous == {"address": None, "notes": "first"}


def test_unparseable_times_compare_as_text() -> None:
    assert diff(_with(startTime="soon"), _with(startTime="soon")).kind == "unchanged"
    assert diff(_with(startTime="soon"), _with(startTime="later")).kind == "rescheduled"


def test_json_round_trip() -> None:
    change = diff(BASE, _with(assignedUserId="U9"))
    assert Change.from_json(change.as_json()) == change


@pytest.mark.parametrize(
    ("fetched", "ledger", "deleted", "stale"),
    [
        (0, 1, False, True),
        (1, 1, False, False),
        (2, 1, False, False),
        (1, 1, True, True),
        (2, 1, True, False),
        (None, 1, False, False),
        (1, None, False, False),
    ],
)
def test_stale_reads(fetched: int | None, ledger: int | None, deleted: bool, stale: bool) -> None:
    t0 = datetime(2026, 11, 30, tzinfo=UTC)

    def at(minutes: int | None) -> datetime | None:
        return None if minutes is None else t0 + timedelta(minutes=minutes)

    assert is_stale(at(fetched), at(ledger), ledger_deleted=deleted) is stale


def test_kind_order_is_the_contracts() -> None:
    assert KIND_ORDER[0] == "deleted" and KIND_ORDER[-1] == "unchanged" and len(set(KIND_ORDER)) == 8


def test_domain_modules_import_no_aws_or_http() -> None:
    root = Path(__file__).resolve().parents[2] / "layers" / "shared" / "appointment_enricher"
    for name in ("changes.py", "ledger/base.py", "models.py", "enrichment.py"):
        tree = ast.parse((root / name).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 0
        }
        assert not imported & {"boto3", "botocore", "requests"}, name
