"""The reconcile soak (``make soak-reconcile``) at 300 changes, plus a self-test of its checker.

Webhooks never sent (5 %) and an intake outage the sender treats as final (5 % of the sends) lose
appointment changes; one reconcile pass must leave every appointment's last published record equal
to the sandbox's final state: zero missing, zero stale. See ``dev/soak/reconcile.py``.
"""

from __future__ import annotations

import pytest

from dev.soak.reconcile import ReconcileSoakConfig, compare, plan, report, run_reconcile_soak

pytestmark = pytest.mark.integration


def test_one_reconcile_pass_recovers_every_lost_change() -> None:
    lines: list[str] = []
    result = run_reconcile_soak(ReconcileSoakConfig(events=300, seed=5, timeout=120), say=lines.append)
    report(result, say=lines.append)
    assert result.ok, "\n".join(lines)
    figures = result.figures
    assert figures["webhooksNeverDelivered"] > 0 and figures["webhooks503Final"] > 0  # both losses happened
    # Appointments whose every webhook was lost are missing whatever the timing. A stale one needs
    # its last change lost *and* the earlier change's fetch to have run before the sandbox moved on,
    # which a slow (loaded) machine can turn into a fetch of the newest state: stale may be 0 here
    # (test_reconciler.py::test_recovers_what_no_webhook_delivered... recovers one deterministically).
    assert figures["missingBefore"] > 0
    assert (figures["missingAfter"], figures["staleAfter"]) == (0, 0)
    assert figures["secondPassEnqueued"] == 0
    assert figures["reconcileEnqueued"] >= figures["missingBefore"] + figures["staleBefore"]
    assert figures["recordsFromReconcile"] >= figures["missingBefore"] + figures["staleBefore"]


def test_plan_keeps_each_appointments_changes_in_order_and_drops_some() -> None:
    lanes = plan(ReconcileSoakConfig(events=200, seed=1, drop=0.2))
    seen: dict[str, int] = {}
    for lane in lanes:
        for change in lane:
            assert change.seq == seen.get(change.appointment_id, -1) + 1
            seen[change.appointment_id] = change.seq
    assert any(c.dropped for lane in lanes for c in lane)


@pytest.mark.parametrize(
    ("state", "record", "expected"),
    [
        (("2026-11-30T12:00:00.000Z", False), None, "missing"),
        (
            ("2026-11-30T12:00:00.000Z", False),
            {"appointment": {"dateUpdated": "2026-11-30T11:59:59Z"}},
            "stale",
        ),
        (("2026-11-30T12:00:00.000Z", False), {"appointment": {"dateUpdated": "2026-11-30T12:00:00Z"}}, "ok"),
        (("2026-11-30T12:00:00.000Z", False), {"deleted": True, "appointment": {}}, "stale"),
        (
            ("2026-11-30T12:00:00.000Z", True),
            {"appointment": {"dateUpdated": "2026-11-30T12:00:00Z"}},
            "stale",
        ),
        (("2026-11-30T12:00:00.000Z", True), {"deleted": True, "appointment": {}}, "ok"),
        (("2026-11-30T12:00:00.000Z", True), None, "ok"),  # never published: nothing to retract
    ],
    ids=["missing", "older", "current", "deleted-but-live", "live-but-deleted", "deleted", "unseen-delete"],
)
def test_checker_tells_missing_stale_and_current_apart(state, record, expected) -> None:
    last = {} if record is None else {"A1": record}
    missing, stale = compare({"A1": state}, last)
    got = "missing" if missing else "stale" if stale else "ok"
    assert got == expected
