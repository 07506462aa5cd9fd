"""The soak's balance: every accepted webhook is exactly one record or one quarantine message,
records valid, order kept per appointment (as published, and as a consumer re-sorts by
``sequence``); the verdict, its figures and the report."""

from __future__ import annotations

import importlib
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dev.soak.collect import Collected
from dev.soak.plan import Plan, Webhook
from dev.soak.sender import SendStats

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "schemas" / "enriched-record-v1.json"

EXIT_OK = 0
EXIT_UNBALANCED = 1
EXIT_INFRA = 2


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def none(self, found: set[str], what: str) -> None:
        """Fail with ``what`` and a few examples unless ``found`` is empty."""
        if found:
            self.fail(f"{len(found)} {what}: {_examples(found)}")


def _examples(items: Any, limit: int = 5) -> str:
    values = sorted(items)[:limit]
    return ", ".join(map(str, values)) + (" ..." if len(items) > limit else "")


def _quarantine_index(data: Collected, verdict: Verdict) -> tuple[Counter[str], dict[str, set[str]]]:
    """Quarantine messages per webhook id, and their errorTypes."""
    counts: Counter[str] = Counter()
    errors: dict[str, set[str]] = defaultdict(set)
    unparsed = 0
    for body, attributes in data.quarantine:
        try:
            webhook_id = str(json.loads(body["body"])["webhookId"])
        except (KeyError, TypeError, ValueError):
            unparsed += 1
            continue
        counts[webhook_id] += 1
        errors[webhook_id].add(attributes.get("errorType", ""))
        if not attributes.get("errorMessage") or not attributes.get("failedAt"):
            verdict.fail(f"quarantine message for {webhook_id} lacks errorMessage/failedAt")
    if unparsed:
        verdict.fail(f"{unparsed} quarantine messages whose body is not an ingest message")
    return counts, errors


def _check_records(plan: Plan, data: Collected, verdict: Verdict) -> None:
    """Every record schema-valid, ``deleted`` exactly for deletes."""
    # No type stubs for jsonschema in the dev requirements: used untyped on purpose.
    jsonschema: Any = importlib.import_module("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    invalid_records = sum(1 for record in data.records if not validator.is_valid(record))
    if invalid_records:
        verdict.fail(f"{invalid_records} records do not validate against {SCHEMA_PATH.name}")
    for record in data.records:
        webhook = plan.by_id.get(str(record.get("webhookId")))
        if webhook is not None and record.get("deleted") != (webhook.type == "AppointmentDelete"):
            verdict.fail(f"record {webhook.webhook_id} has deleted={record.get('deleted')}")


def _sequences(plan: Plan, records: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Per appointment, the sequence numbers of its records in the order read."""
    per_appointment: dict[str, list[int]] = defaultdict(list)
    for record in records:
        webhook = plan.by_id.get(str(record.get("webhookId")))
        if webhook is not None:
            per_appointment[webhook.appointment_id].append(webhook.seq)
    return per_appointment


def _check_order(plan: Plan, data: Collected, verdict: Verdict) -> dict[str, Any]:
    """Order at publish time (the FIFO mirror), per appointment; EnrichedQueue's order for information."""
    per_appointment = _sequences(plan, data.ordered)
    out_of_order = {a for a, seqs in per_appointment.items() if any(x >= y for x, y in pairs(seqs))}
    if out_of_order:
        verdict.fail(
            f"{len(out_of_order)} appointments published out of order: "
            + "; ".join(f"{a}: {per_appointment[a]}" for a in sorted(out_of_order)[:3])
        )
    mirrored = {str(r.get("webhookId")) for r in data.ordered}
    published = {str(r.get("webhookId")) for r in data.records}
    if mirrored != published:
        verdict.fail(
            f"FIFO mirror and EnrichedQueue disagree: {len(mirrored ^ published)} webhook ids differ"
        )
    standard = _sequences(plan, data.records)
    return {
        "orderedAppointmentsChecked": len(per_appointment),
        "standardQueueOrderInversions(info)": sum(
            1 for seqs in standard.values() for x, y in pairs(seqs) if x >= y
        ),
    }


def _check_sequence(plan: Plan, data: Collected, verdict: Verdict) -> dict[str, Any]:
    """Order at the consumer. EnrichedQueue is standard (AWS gives it no order; that moto's keeps
    arrival order proves nothing), so a consumer re-sorts each appointment's records by their
    ``sequence``: every record must carry one (the ledger is on), distinct per appointment, and
    sorted by it the records must come in the order their webhooks were sent."""
    sequences: dict[str, tuple[Webhook, int]] = {}  # webhook id -> (webhook, sequence), first record
    missing: set[str] = set()
    for record in data.records:
        webhook = plan.by_id.get(str(record.get("webhookId")))
        if webhook is None or webhook.webhook_id in sequences:
            continue  # a stranger or a duplicate: reported by the balance above
        sequence = record.get("sequence")
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
            missing.add(webhook.webhook_id)
            continue
        sequences[webhook.webhook_id] = (webhook, sequence)
    verdict.none(missing, "records without a sequence")
    per_appointment: dict[str, list[tuple[int, int]]] = defaultdict(list)  # (sequence, webhook seq)
    for webhook, sequence in sequences.values():
        per_appointment[webhook.appointment_id].append((sequence, webhook.seq))
    repeated = {a for a, found in per_appointment.items() if len({s for s, _ in found}) < len(found)}
    verdict.none(repeated, "appointments whose records share a sequence")
    misordered = {
        a
        for a, found in per_appointment.items()
        if a not in repeated and any(x[1] >= y[1] for x, y in itertools.pairwise(sorted(found)))
    }
    if misordered:
        verdict.fail(
            f"{len(misordered)} appointments whose records, sorted by sequence, are not in webhook order: "
            + "; ".join(f"{a}: {sorted(per_appointment[a])}" for a in sorted(misordered)[:3])
        )
    return {"sequenceOrderedAppointmentsChecked": len(per_appointment)}


def check(plan: Plan, sent: SendStats, data: Collected) -> Verdict:
    """Exactly one outcome per accepted webhook, the right one, in order, schema-valid."""
    verdict = Verdict()
    # A webhook the sender gave up on (still 429 after its last attempt) is accounted for: the
    # sender knows it failed. Any other refusal is an event lost without anyone knowing.
    refused = {w: s for w, s in sent.not_accepted.items() if w not in sent.given_up}
    if refused:
        verdict.fail(
            f"{len(refused)} webhooks not accepted (status: "
            f"{dict(Counter(refused.values()))}): {_examples(refused)}"
        )
    accepted = sent.accepted & set(plan.by_id)
    records = Counter(str(r.get("webhookId")) for r in data.records)
    quarantined, reasons = _quarantine_index(data, verdict)

    def expect(webhook_id: str) -> Webhook:
        return plan.by_id[webhook_id]

    verdict.none((set(records) | set(quarantined)) - set(plan.by_id), "outcomes for webhooks never sent")
    verdict.none({w for w, n in records.items() if n > 1}, "webhooks published more than once")
    verdict.none({w for w, n in quarantined.items() if n > 1}, "webhooks quarantined more than once")
    verdict.none(set(records) & set(quarantined), "webhooks both published and quarantined")
    verdict.none(
        {w for w in accepted if w not in records and w not in quarantined},
        "accepted webhooks with no record and no quarantine",
    )
    wrong_kind = {
        w
        for w in accepted
        if (expect(w).expect == "record" and w in quarantined)
        or (expect(w).expect == "quarantine" and w in records)
    }
    verdict.none(
        {f"{w}:{sorted(reasons.get(w, {'record'}))}" for w in wrong_kind}, "webhooks with the wrong outcome"
    )
    verdict.none(
        {
            w
            for w in accepted
            if expect(w).expect == "quarantine"
            and w in quarantined
            and reasons[w] != {expect(w).expect_error}
        },
        "quarantined with an unexpected errorType",
    )
    if data.ingest_dlq:
        verdict.fail(f"{len(data.ingest_dlq)} messages reached IngestDLQ (retries exhausted)")
    _check_records(plan, data, verdict)
    order = _check_order(plan, data, verdict)
    order.update(_check_sequence(plan, data, verdict))

    verdict.figures.update(
        {
            "webhooks": len(plan.webhooks),
            "appointments": len(plan.appointments),
            "accepted": len(accepted),
            "expectedRecords": sum(1 for w in plan.webhooks if w.expect == "record"),
            "expectedQuarantine": sum(1 for w in plan.webhooks if w.expect == "quarantine"),
            "records": sum(records.values()),
            "uniqueRecords": len(records),
            "quarantined": sum(quarantined.values()),
            "quarantineReasons": dict(Counter(a.get("errorType", "") for _, a in data.quarantine)),
            "ingestDlq": len(data.ingest_dlq),
            "deletedRecords": sum(1 for r in data.records if r.get("deleted")),
            **order,
            # With the ledger on (the local stack's default) every record says what changed.
            "changeKinds": dict(Counter(str((r.get("change") or {}).get("kind")) for r in data.records)),
            "firstChangePerAppointment": dict(Counter(_first_kinds(data.ordered, plan))),
        }
    )
    return verdict


def _first_kinds(ordered: list[dict[str, Any]], plan: Plan) -> Iterator[str]:
    """The change kind of each appointment's first published record (FIFO mirror order)."""
    seen: set[str] = set()
    for record in ordered:
        webhook = plan.by_id.get(str(record.get("webhookId")))
        if webhook is not None and webhook.appointment_id not in seen:
            seen.add(webhook.appointment_id)
            yield str((record.get("change") or {}).get("kind"))


def pairs(values: list[int]) -> Iterator[tuple[int, int]]:
    return itertools.pairwise(values)


@dataclass
class SoakResult:
    verdict: Verdict
    elapsed: float
    log_path: Path

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.verdict.ok else EXIT_UNBALANCED


def check_foreign_ignored(verdict: Verdict, sent: SendStats, foreign: list[Webhook]) -> set[str]:
    """Every delivery for another app was answered ``ignored``; returns those that were."""
    ignored = sent.ignored & {w.webhook_id for w in foreign}
    if len(ignored) != len(foreign):
        verdict.fail(f"{len(foreign) - len(ignored)} deliveries for another app were not ignored")
    return ignored


def report(result: SoakResult, say: Callable[[str], None] = print) -> None:
    figures = result.verdict.figures
    width = max(len(k) for k in figures) if figures else 0
    for key, value in figures.items():
        say(f"  {key:<{width}}  {value}")
    if result.verdict.ok:
        say(
            f"BALANCED: {figures.get('accepted')} accepted = {figures.get('uniqueRecords')} records "
            f"+ {figures.get('quarantined')} quarantined; no duplicates, order kept "
            f"({figures.get('throughputWebhooksPerSecond')} webhooks/s)"
        )
    else:
        say(f"NOT BALANCED ({len(result.verdict.problems)} problems; worker log {result.log_path}):")
        for problem in result.verdict.problems:
            say(f"  - {problem}")
