"""The publish-outage soak (``make soak``'s third part) at 20 appointments: publishing fails past
``maxReceiveCount``, the DLQ is redriven, and the consumer finds every change announced once with
the right kind, in ``sequence`` order. See ``dev/soak/publish_outage.py``."""

from __future__ import annotations

import pytest

from dev.soak.publish_outage import Consumer, OutageSoakConfig, check, report, run_outage_soak

pytestmark = pytest.mark.integration


def test_a_publish_outage_and_a_redrive_lose_and_repeat_no_change() -> None:
    lines: list[str] = []
    result = run_outage_soak(OutageSoakConfig(appointments=20, timeout=120), say=lines.append)
    report(result, say=lines.append)
    assert result.ok, "\n".join(lines)
    figures = result.figures
    assert figures["deadLettered"] == 20  # every change of the outage went past maxReceiveCount
    assert figures["kind.rescheduled"] == 20  # the lost change, announced once per appointment
    assert figures["kind.cancelled"] == 20 and figures["kind.created"] == 20
    assert figures["kind.unchanged"] == 10  # redrives of appointments a newer webhook already moved
    assert figures["duplicates"] == 0 and figures["olderDropped"] == 0


def test_the_checker_finds_a_change_reported_against_an_unseen_state() -> None:
    consumer = Consumer(stack=None)
    created = {"appointmentId": "A", "sequence": 1, "change": {"kind": "created"}}
    created["appointment"] = {"id": "A", "startTime": "2026-12-01T10:00:00Z", "assignedUserId": "u1"}
    moved = {"appointmentId": "A", "sequence": 3, "change": {"kind": "reassigned"}}
    moved["appointment"] = {"id": "A", "startTime": "2026-12-01T12:00:00Z", "assignedUserId": "u2"}
    consumer.kept = {"A": [created, moved]}  # the reschedule in between was never published
    problems = check(consumer, {"A": moved["appointment"]})
    assert problems == ["A: sequence 3 says reassigned, the consumer saw rescheduled"]
