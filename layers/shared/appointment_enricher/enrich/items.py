"""One SQS record through the enricher, and the state it is in: a type per stage.

``Unparsed`` (quarantined at once) -> ``Parsed`` (ingest message, routing fields, webhook) ->
``Ready`` (record built, measured and tracked; waiting for its publish round), or ``Covered``
(a reconcile message with nothing new, waiting for its round to settle without a record). The
outcome is separate: an item may stop at any stage as DUPLICATE, QUARANTINED or RETRY.
"""

from __future__ import annotations

import enum
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..changes import Change
from ..models import AppointmentWebhook, EnrichedRecord
from ..outbound import OutboundMessage
from ..wire import IngestMessage, WebhookRef


class Outcome(enum.Enum):
    PENDING = "pending"
    PUBLISHED = "published"
    SUPPRESSED = "suppressed"  # an ``unchanged`` record not published (opt-in), counted and logged
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    RETRY = "retry"
    RESENT = "resent"  # throttled, sent again as a new message (``handback``): acknowledged
    # A reconcile message whose state a record already announced (or one earlier in its group
    # announces): no fetch, no record; receipted like a publish (``prepare.covered``).
    COVERED = "covered"


@dataclass(frozen=True)
class Unparsed:
    """An SQS record that is not an ingest message carrying an appointment webhook."""


@dataclass(frozen=True)
class Parsed:
    ingest: IngestMessage
    ref: WebhookRef
    webhook: AppointmentWebhook


@dataclass(frozen=True)
class Ready:
    """Built once: the record, the message that will carry it (measured), and its change."""

    parsed: Parsed
    record: EnrichedRecord
    outbound: OutboundMessage
    change: Change | None


@dataclass(frozen=True)
class Covered:
    """A reconcile message the ledger's state already covers: settled in its place in the
    publish rounds (so it shares the fate of an earlier record of its group), never published."""

    parsed: Parsed


Stage = Unparsed | Parsed | Ready | Covered


@dataclass
class Item:
    """One SQS record: its id, original body, FIFO group, stage and outcome."""

    message_id: str
    raw: str
    group: str
    stage: Stage
    outcome: Outcome = Outcome.PENDING
    error_type: str | None = None
    error_message: str | None = None
    claimed: bool = False
    # Set when the upstream budget, not a failure, stopped it: hand it back visible again in
    # this many seconds (``handback``). ``receipt`` and ``receives`` come from the SQS record.
    throttled_for: float | None = None
    receipt: str | None = None
    receives: int = 1

    def fail(self, outcome: Outcome, error_type: str, message: str) -> None:
        self.outcome, self.error_type, self.error_message = outcome, error_type, message[:500]

    @property
    def parsed(self) -> Parsed | None:
        stage = self.stage
        if isinstance(stage, Ready | Covered):
            return stage.parsed
        return stage if isinstance(stage, Parsed) else None

    @property
    def ready(self) -> Ready | None:
        return self.stage if isinstance(self.stage, Ready) else None

    @property
    def webhook(self) -> AppointmentWebhook | None:
        parsed = self.parsed
        return parsed.webhook if parsed else None

    @property
    def dedupe_id(self) -> str | None:
        parsed = self.parsed
        return parsed.ingest.dedupe_id if parsed else None


@dataclass(frozen=True)
class ParsedItem:
    """An item known to be parsed, for the steps that need it (no Optional, no assert)."""

    item: Item
    parsed: Parsed

    @property
    def dedupe_id(self) -> str:
        return self.parsed.ingest.dedupe_id


def retry_rest(
    items: Iterable[Item | ParsedItem], error_type: str, message: str, *, throttled_for: float | None = None
) -> None:
    """Fail every still-pending item given: they return to the queue, in order (``throttled_for``:
    handed back by the upstream budget, not failed)."""
    for entry in items:
        item = entry.item if isinstance(entry, ParsedItem) else entry
        if item.outcome is Outcome.PENDING:
            item.fail(Outcome.RETRY, error_type, message)
            item.throttled_for = throttled_for


@dataclass
class Stats:
    """Thread-safe tallies the handler turns into metrics after the batch."""

    counts: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, value: int = 1) -> None:
        with self._lock:
            self.counts[name] += value

    def upstream(self, status: int | None, elapsed_ms: float) -> None:
        with self._lock:
            self.latencies_ms.append(elapsed_ms)
            self.counts["UpstreamCalls"] += 1
            if status == 429:
                self.counts["Upstream429"] += 1
            if status in (401, 403):
                self.counts["UpstreamAuthFailure"] += 1

    def drain(self) -> dict[str, int]:
        """Counts since the last drain (one invocation's worth)."""
        with self._lock:
            counts, self.counts = dict(self.counts), Counter()
        return counts

    def drain_latencies(self) -> list[float]:
        with self._lock:
            latencies, self.latencies_ms = self.latencies_ms, []
        return latencies
