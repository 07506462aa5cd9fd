"""The budget every function that calls PowerLeads spends from, built in one place: the shared
DynamoDB bucket when ``BUDGET_TABLE_NAME`` is set, else an in-process one (local runs, tests)."""

from __future__ import annotations

from typing import Any

from .base import Budget, Limits
from .memory import MemoryBudget
from .spend import Spender

# Requests per interval (of 100) at most kept out of the shared bucket for the enricher
# containers' own shares (spend.py): each of the ``containers`` that may run at once gets
# ``SHARE_RESERVE // containers`` requests per location and interval without a write, and the
# bucket is sized for the rest. Quiet and moderately busy locations (up to 9 requests per 10 s per
# container at the default five containers) then cost no write. A share is private, though: it
# pays only if its container spends it. A backlog comes back from its queue places in clumps (SQS
# visibilities are whole seconds) that one receive takes whole, so with many containers each sees
# a clump now and then and spends little of a small share: at 20 containers shares of two or three
# were spent 78-83 % of the time on the bulk soak, and the drain lost the rest (85 % of the limit).
# Below ``MIN_SHARE`` per container there are no shares and the bucket has the whole limit.
# Every consumer of the bucket (enricher, reconciler) must size it alike: ``fleet_limits`` with
# the same ``containers``.
# Above ``MAX_SHARE`` a share's burst (all of it at once, at the start of a backlog and again an
# interval later) meets upstream's window with the requests of the previous burst still arriving:
# two containers with 24 each drew ten 429s in a 120-change bulk where ten each drew none.
SHARE_RESERVE = 48
MIN_SHARE, MAX_SHARE = 4, 10
# The bucket's fill (base.py): what it hands out of its part; ``ahead`` (the largest lease) is
# what the rest leaves of one window. 0.9 of the 55 left by five containers' shares gives leases of
# five tokens, 0.95 of the whole 100 also five (a lease write per five requests a backlog needs).
SHARED_FILL, UNSHARED_FILL = 0.9, 0.95
ENRICHER_MAX_WAIT = 1.0  # seconds a request may wait for budget before its item is handed back
# Handed-back work takes a place in its location's queue (``queue=True``, budget/base.py): a
# backlog comes back at the fleet's rate and stays out of other locations' way until then
# (docs/ARCHITECTURE.md, "The upstream budget"; make soak-bulk).


def share_per_container(containers: int | None) -> int:
    """Requests per location and interval each container has of its own: none when the number of
    containers is unknown or the share would be under ``MIN_SHARE`` (above 12 containers: the
    bucket then has the whole limit)."""
    if containers is None or containers < 1:
        return 0
    share = min(MAX_SHARE, SHARE_RESERVE // containers)
    return share if share >= MIN_SHARE else 0


def fleet_limits(containers: int | None) -> Limits:
    """The bucket's size when ``containers`` (the enricher event source's maximum concurrency) may
    each spend their own share: the documented limit less every share."""
    share = share_per_container(containers)
    if not share:
        return Limits(fill=UNSHARED_FILL)
    return Limits(reserved=share * int(containers or 0), fill=SHARED_FILL)


def build_budget(table_name: str | None, client: Any = None) -> Budget:
    if not table_name:
        return MemoryBudget()
    from .dynamodb import DynamoBudget  # noqa: PLC0415 - only with a table

    if client is None:
        from ..aws.sdk import dynamodb_client  # noqa: PLC0415

        client = dynamodb_client()
    return DynamoBudget(client, table_name)


def enricher_spender(
    table_name: str | None, client: Any = None, *, containers: int | None = None, related: int = 0
) -> Spender:
    """``containers``: how many enricher containers may run at once (the event source's maximum
    concurrency); each then has ``share_per_container`` of its own. ``related``: the related
    entities each record may fetch after its appointment. Leases are the bucket's burst, or behind
    a backlog the container knows of, what its worker threads asking may spend."""
    limits = fleet_limits(containers)
    return Spender(
        build_budget(table_name, client),
        limits=limits,
        lease=limits.burst,
        max_wait=ENRICHER_MAX_WAIT,
        queue=True,
        share=share_per_container(containers),
        requests_per_ask=1 + related,
    )


def reconciler_spender(
    table_name: str | None, client: Any = None, *, containers: int | None = None
) -> Spender:
    """Single tokens (they fit the bucket's gaps before the enricher's leases: the reconciler's
    reserved place; its ``Pacer`` caps how much it takes) and it waits rather than gives up.
    ``containers``: the enricher's, so the bucket is sized as the enricher sizes it."""
    return Spender(build_budget(table_name, client), limits=fleet_limits(containers), lease=1, max_wait=10.0)
