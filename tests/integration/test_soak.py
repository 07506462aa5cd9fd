"""The soak (``make soak``) at 500 webhooks inside ``make test``, plus a self-test of its checker.

The run: 500 signed webhooks, 10 % duplicate deliveries, upstream 429/500 bursts, hangs, dropped
connections, changing latency and 1 % permanently invalid appointments through gateway ->
receiver -> FIFO ingest (moto server process) -> enricher processes -> SNS -> EnrichedQueue.
See ``dev/soak/webhooks.py`` (the checks: ``dev/soak/balance.py``) for what is checked and why order
is checked on a FIFO mirror.
"""

from __future__ import annotations

import copy

import pytest

from dev.soak.balance import check, report
from dev.soak.collect import Collected
from dev.soak.config import SoakConfig
from dev.soak.plan import build_plan
from dev.soak.sender import SendStats
from dev.soak.webhooks import run_soak

pytestmark = pytest.mark.integration


def test_soak_500_webhooks_with_faults_balances() -> None:
    lines: list[str] = []
    result = run_soak(
        SoakConfig(events=500, workers=3, senders=4, seed=11, timeout=300, verbose=False), say=lines.append
    )
    report(result, say=lines.append)
    assert result.verdict.ok, "\n".join(lines)
    figures = result.verdict.figures
    assert figures["accepted"] == 500
    assert figures["uniqueRecords"] + figures["quarantined"] == 500
    assert figures["duplicateDeliveries"] == 50
    assert figures["quarantined"] >= 1  # the invalid appointment really was exercised
    statuses = figures["upstreamStatuses"]
    assert statuses.get(429) and statuses.get(500), statuses  # and the fault bursts really hit
    kinds = figures["changeKinds"]  # the ledger is on: every record says what changed
    assert "None" not in kinds and sum(kinds.values()) == figures["records"], kinds
    assert set(figures["firstChangePerAppointment"]) <= {"created", "deleted"}, figures
    assert figures["sequenceOrderedAppointmentsChecked"] == figures["orderedAppointmentsChecked"] > 0


# ---- the checker itself: each guard must fire on the failure it exists for ------------------


def _balanced():
    plan = build_plan(40, seed=3, duplicate_ratio=0.1, invalid_ratio=0.1, senders=2)
    sent = SendStats(accepted={w.webhook_id for w in plan.webhooks})
    data = Collected()
    for webhook in plan.webhooks:
        if webhook.expect == "record":
            record = {
                "schemaVersion": "1",
                "webhookId": webhook.webhook_id,
                "deleted": webhook.type == "AppointmentDelete",
                "sequence": webhook.seq + 1,  # per appointment, in webhook order (gaps allowed)
            }
            data.records.append(record)
            data.ordered.append(record)
        else:
            body = {"body": webhook.body.decode(), "receivedAt": "x", "dedupeId": webhook.webhook_id}
            attributes = {"errorType": webhook.expect_error or "", "errorMessage": "m", "failedAt": "t"}
            data.quarantine.append((body, attributes))
    return plan, sent, data


def _two_records_of_one_appointment(plan, data):
    by_appointment: dict[str, list[dict]] = {}
    for record in data.records:
        by_appointment.setdefault(plan.by_id[record["webhookId"]].appointment_id, []).append(record)
    return next(records[:2] for records in by_appointment.values() if len(records) >= 2)


def _swap_sequences(plan, sent, data) -> None:
    """Arrival order untouched (moto keeps it anyway); only the sequences say the wrong order."""
    first, second = _two_records_of_one_appointment(plan, data)
    first["sequence"], second["sequence"] = second["sequence"], first["sequence"]


def _repeat_a_sequence(plan, sent, data) -> None:
    first, second = _two_records_of_one_appointment(plan, data)
    second["sequence"] = first["sequence"]


def _problems(plan, sent, data) -> str:
    verdict = check(plan, sent, data)
    return "\n".join(verdict.problems)


def test_checker_accepts_a_balanced_run_apart_from_the_fake_records_schema() -> None:
    plan, sent, data = _balanced()
    problems = _problems(plan, sent, data)
    # The synthetic records are deliberately minimal: only the schema check may complain.
    assert all("validate against" in line for line in problems.splitlines()), problems


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p, s, d: d.records.append(copy.deepcopy(d.records[0])), "published more than once"),
        (lambda p, s, d: d.records.pop(), "no record and no quarantine"),
        (lambda p, s, d: d.quarantine.append(copy.deepcopy(d.quarantine[0])), "quarantined more than once"),
        (lambda p, s, d: d.ingest_dlq.append("{}"), "IngestDLQ"),
        (lambda p, s, d: d.records.append({"webhookId": "soak-stranger"}), "never sent"),
        (lambda p, s, d: d.ordered.reverse(), "out of order"),
        (_swap_sequences, "sorted by sequence, are not in webhook order"),
        (lambda p, s, d: d.records[0].pop("sequence"), "without a sequence"),
        (_repeat_a_sequence, "share a sequence"),
        (lambda p, s, d: s.not_accepted.update({"x": 503}), "not accepted"),
        (
            lambda p, s, d: d.quarantine.__setitem__(0, (d.quarantine[0][0], {"errorType": "Other"})),
            "unexpected errorType",
        ),
    ],
    ids=[
        "duplicate",
        "lost",
        "requarantined",
        "dlq",
        "stranger",
        "order",
        "sequence-order",
        "sequence-missing",
        "sequence-repeated",
        "not-accepted",
        "reason",
    ],
)
def test_checker_reports_each_kind_of_imbalance(mutate, expected) -> None:
    plan, sent, data = _balanced()
    mutate(plan, sent, data)
    assert expected in _problems(plan, sent, data)


def test_late_duplicate_of_a_quarantined_webhook_is_not_quarantined_twice(
    poller, sandbox, local_stack
) -> None:
    import uuid  # noqa: PLC0415

    from dev.fakes.sandbox import Fault  # noqa: PLC0415
    from dev.fakes.signing import ingest_message, make_webhook  # noqa: PLC0415

    appointment_id = "Qa4Rb6Sc8Td0Ue2Vf4Wg"
    sandbox.queue_faults([Fault.error(422)] * 2, event_id=appointment_id)
    body = make_webhook("AppointmentUpdate", {"id": appointment_id}, "0007BWpSzSwfiuSl0tR2", "wh-late-dup-1")
    message = ingest_message(body, "2026-05-01T12:00:00Z", "wh-late-dup-1")
    sqs = local_stack.client("sqs")
    quarantined = []
    for _ in range(2):  # the original, then the same webhook after the deduplication window
        sqs.send_message(
            QueueUrl=local_stack.ingest_queue_url,
            MessageBody=message,
            MessageGroupId=appointment_id,
            MessageDeduplicationId=uuid.uuid4().hex,
        )
        poller.poll_once()
        quarantined += local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0)
    assert len(quarantined) == 1


def test_soak_with_intake_faults_and_highlevel_retry_policy_balances() -> None:
    """Queue writes fail, hang, trickle or land-then-fail at intake; the sender retries only 429
    (6 attempts, Retry-After honoured, 10 minutes compressed to 0.5 s), everything else is final.
    Every webhook still ends as exactly one record or quarantined message; none is given up."""
    lines: list[str] = []
    result = run_soak(
        SoakConfig(
            events=300,
            workers=3,
            senders=4,
            seed=23,
            timeout=300,
            verbose=False,
            intake_faults=True,
            sender="highlevel",
            retry_unit=0.5,
            foreign=10,
        ),
        say=lines.append,
    )
    report(result, say=lines.append)
    assert result.verdict.ok, "\n".join(lines)
    figures = result.verdict.figures
    assert figures["accepted"] == 300
    assert figures["uniqueRecords"] + figures["quarantined"] == 300
    assert figures["senderGivenUp"] == 0
    assert figures["foreignIgnored"] == 10
    hit = figures["intakeFaultsHit"]
    assert sum(hit.values()) >= 5, hit  # the intake faults really were in the path ...
    assert hit.get("hang", 0) + hit.get("trickle", 0) >= 1, hit  # ... slow ones included
    statuses = figures["deliveryStatuses"]
    # botocore's one retry absorbs some fast faults; the rest were answered 429, then retried.
    assert statuses.get(429, 0) >= 1, statuses
    assert not any(status >= 500 for status in statuses), statuses


def test_checker_counts_a_webhook_the_sender_gave_up_on_but_not_a_silent_refusal() -> None:
    plan, sent, data = _balanced()
    webhook = plan.webhooks[0]
    sent.accepted.discard(webhook.webhook_id)
    data.records = [r for r in data.records if r["webhookId"] != webhook.webhook_id]
    data.ordered = [r for r in data.ordered if r["webhookId"] != webhook.webhook_id]
    data.quarantine = [q for q in data.quarantine if webhook.webhook_id not in q[0]["body"]]
    sent.not_accepted[webhook.webhook_id] = 429
    sent.given_up.add(webhook.webhook_id)
    assert "not accepted" not in _problems(plan, sent, data)
    sent.given_up.clear()  # the same 429 without the sender knowing it gave up: a lost event
    assert "not accepted" in _problems(plan, sent, data)
