"""One reconcile run at a time.

Two runs at once would each take the reconciler's whole share of every location's rate limit
(double the share the enricher leaves room for) and race each other's cursors. The template's
``ReservedConcurrentExecutions: 1`` keeps two Lambda invocations apart (a manual invoke during a
scheduled run is throttled), but ``plenrich reconcile`` runs the reconciler in the operator's own
process, outside Lambda's count. So every run that enqueues holds a lease first: one item in
the ledger table, taken by a conditional ``PutItem`` when it is absent, expired or already ours,
and given back (expired at once) when the run ends. A run that finds it held sweeps nothing and
says until when it is held. A run killed mid-way (a Lambda timeout, a killed laptop) holds it
only until its own deadline plus ``LEASE_SLACK_SECONDS``.

The item is ``id = "cursor#~lease"``: inside the reconciler's own key space (``cursor#*``, the only
keys its role may write), and ``~`` is outside the location id pattern, so it is never a
location's cursor. Attributes: ``owner`` (S, one per run), ``until`` (N, epoch seconds),
``expiration`` (N, TTL).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..clocks import Epoch
from .run import LocationTally, Reconciler, summarise

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LEASE_KEY = "cursor#~lease"
LEASE_SLACK_SECONDS = 30.0  # past the run's deadline: storing cursors and returning
LEASE_TTL_SECONDS = 86_400  # the item itself, once nobody holds it


class RunLease(Protocol):
    def acquire(self, seconds: float) -> float | None:
        """Hold the lease for ``seconds``: None when held now, else the epoch second when the
        current holder's lease ends."""
        ...

    def release(self) -> None:
        """Give it back (a no-op when it is no longer ours)."""
        ...


class DynamoRunLease:
    """``RunLease`` on the ledger table; one instance is one run's identity (``owner``)."""

    def __init__(self, client: DynamoDBClient, table: str, epoch: Epoch = time.time) -> None:
        self.client, self.table, self.epoch = client, table, epoch
        self.owner = uuid.uuid4().hex

    def acquire(self, seconds: float) -> float | None:
        now = self.epoch()
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._item(now + seconds, now),
                ConditionExpression="attribute_not_exists(id) OR #until < :now OR #owner = :me",
                ExpressionAttributeNames={"#until": "until", "#owner": "owner"},
                ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}, ":me": {"S": self.owner}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            held: Any = exc.response.get("Item") or {}
            return float(held.get("until", {}).get("N", now))
        return None

    def release(self) -> None:
        now = self.epoch()
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._item(0.0, now),
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": self.owner}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return  # expired and taken by another run meanwhile: not ours to give back

    def _item(self, until: float, now: float) -> dict[str, Any]:
        return {
            "id": {"S": LEASE_KEY},
            "owner": {"S": self.owner},
            "until": {"N": f"{until:.3f}"},
            "expiration": {"N": str(int(now) + LEASE_TTL_SECONDS)},
        }


def run_alone(
    reconciler: Reconciler,
    lease: RunLease | None,
    location_ids: list[str],
    deadline: float,
    on_step: Callable[[LocationTally], None] | None = None,
) -> dict[str, Any]:
    """``reconciler.run`` under the lease (None: no lease, e.g. a dry run that writes nothing).

    Held by another run: nothing is swept; the summary says ``busy`` and ``leaseHeldUntil``. The
    lease store unreachable: nothing is swept either (the ledger is in the same table), one error.
    """
    if lease is None:
        return reconciler.run(location_ids, deadline, on_step=on_step)
    seconds = max(0.0, deadline - reconciler.monotonic()) + LEASE_SLACK_SECONDS
    try:
        held_until = lease.acquire(seconds)
    except Exception as exc:  # noqa: BLE001 - without the lease, no run: the next one tries again
        reconciler.log("error", "reconcile lease unavailable", error=type(exc).__name__)
        return summarise([], 1, False, 0.0)
    if held_until is not None:
        until = datetime.fromtimestamp(held_until, UTC).isoformat(timespec="seconds")
        reconciler.log("warning", "another reconcile run holds the lease", leaseHeldUntil=until)
        return {**summarise([], 0, False, 0.0), "busy": True, "leaseHeldUntil": until}
    try:
        return reconciler.run(location_ids, deadline, on_step=on_step)
    finally:
        try:
            lease.release()
        except Exception as exc:  # noqa: BLE001 - it expires on its own shortly
            reconciler.log("warning", "reconcile lease not released", error=type(exc).__name__)
