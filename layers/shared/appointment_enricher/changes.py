"""What changed since the last record of an appointment: the ``change`` object of every record.

Pure rules (no I/O). Inputs are appointment objects as published (JSON-ready dicts, API field
names); the earlier one comes from the ledger.

* ``kinds``: every kind that applies, in precedence order; ``kind`` is the first of them.
* ``changedFields``: sorted names whose value differs; times compared as instants (the same
  moment written in another offset is no change); ``dateUpdated`` alone is no change.
* ``previous``: the earlier values of those fields, as earlier published (null when absent).
* A tombstone is ``deleted`` (nothing compared: a delete carries only the webhook's snapshot);
  a tombstone over a tombstone is ``unchanged``. Anything after no state or after a tombstone
  is ``created``, with nothing compared either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from .wire import try_upstream_time

ChangeKind = Literal[
    "deleted", "created", "cancelled", "rescheduled", "statusChanged", "reassigned", "updated", "unchanged"
]
KIND_ORDER: Final[tuple[ChangeKind, ...]] = (
    "deleted",
    "created",
    "cancelled",
    "rescheduled",
    "statusChanged",
    "reassigned",
    "updated",
    "unchanged",
)
TIME_FIELDS: Final = frozenset({"startTime", "endTime", "dateAdded", "dateUpdated"})
IGNORED_FIELDS: Final = frozenset({"dateUpdated"})
CANCELLED: Final = "cancelled"


@dataclass(frozen=True)
class Change:
    kinds: tuple[ChangeKind, ...]
    changed_fields: tuple[str, ...] = ()
    previous: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> ChangeKind:
        return self.kinds[0]

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "kinds": list(self.kinds),
            "changedFields": list(self.changed_fields),
            "previous": dict(self.previous),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        return cls(tuple(data["kinds"]), tuple(data["changedFields"]), dict(data["previous"]))


UNCHANGED: Final = Change(("unchanged",))


def _instant(value: Any) -> datetime | Any:
    parsed = try_upstream_time(value)
    return parsed if parsed is not None else value


def _same(name: str, before: Any, after: Any) -> bool:
    if name in TIME_FIELDS:
        return bool(_instant(before) == _instant(after))
    return bool(before == after)


def diff(
    earlier: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    *,
    deleted: bool = False,
    earlier_deleted: bool = False,
) -> Change:
    """The change from ``earlier`` (None: no earlier state) to ``current``."""
    if deleted:
        return UNCHANGED if earlier_deleted else Change(("deleted",))
    if earlier is None or earlier_deleted:
        return Change(("created",))
    changed = sorted(
        name
        for name in set(earlier) | set(current)
        if name not in IGNORED_FIELDS and not _same(name, earlier.get(name), current.get(name))
    )
    kinds: list[ChangeKind] = []
    status_changed = "appointmentStatus" in changed
    if status_changed and current.get("appointmentStatus") == CANCELLED:
        kinds.append("cancelled")
    if "startTime" in changed or "endTime" in changed:
        kinds.append("rescheduled")
    if status_changed and current.get("appointmentStatus") != CANCELLED:
        kinds.append("statusChanged")
    if "assignedUserId" in changed:
        kinds.append("reassigned")
    if set(changed) - {"appointmentStatus", "startTime", "endTime", "assignedUserId"}:
        kinds.append("updated")
    if not kinds:
        return UNCHANGED
    return Change(tuple(kinds), tuple(changed), {name: earlier.get(name) for name in changed})


def is_stale(fetched: datetime | None, ledger: datetime | None, *, ledger_deleted: bool) -> bool:
    """A fetch older than what the ledger holds is a lagging read, never a reversal.

    Equal ``dateUpdated`` after a tombstone is the pre-delete state read again: stale too.
    Unknown on either side: not stale (nothing to compare).
    """
    if fetched is None or ledger is None:
        return False
    return fetched < ledger or (ledger_deleted and fetched == ledger)
