"""The budget every function that calls PowerLeads spends from, built in one place: the shared
DynamoDB bucket when ``BUDGET_TABLE_NAME`` is set, else an in-process one (local runs, tests)."""

from __future__ import annotations

from typing import Any

from .base import Budget, Limits
from .memory import MemoryBudget
from .spend import Spender

# Requests per interval (of 100) kept out of the shared bucket for the enricher containers' own
# shares (spend.py): a location with a request now and then costs no lease write. Every consumer of
# the bucket (enricher, reconciler, plenrich) must size it alike: FLEET_LIMITS.
CONTAINER_SHARES = 5
# fill 0.926 of the bucket's 95 keeps its burst (the largest lease) at seven tokens, 95 x 0.074:
# the fleet then gets 88 + 5 = 93 requests per 10 s steady, as the 93 % of one bucket of 100 did.
FLEET_LIMITS = Limits(reserved=CONTAINER_SHARES, fill=0.926)
ENRICHER_LEASE = FLEET_LIMITS.burst  # 7 tokens per conditional write: see docs/ARCHITECTURE.md for the cost
ENRICHER_MAX_WAIT = 1.0  # seconds a request may wait for budget before its item is handed back
# Queue places for handed-back work (budget/base.py) stay off: on the bulk soak they measured
# 87 % and 72 % of the limit in two runs against 85-86 % without, noise wider than any gain
# (docs/ARCHITECTURE.md, "The upstream budget").


def build_budget(table_name: str | None, client: Any = None) -> Budget:
    if not table_name:
        return MemoryBudget()
    from .dynamodb import DynamoBudget  # noqa: PLC0415 - only with a table

    if client is None:
        from ..aws.sdk import dynamodb_client  # noqa: PLC0415

        client = dynamodb_client()
    return DynamoBudget(client, table_name)


def enricher_spender(table_name: str | None, client: Any = None, *, containers: int | None = None) -> Spender:
    """``containers``: how many enricher containers may run at once (the event source's maximum
    concurrency). Each has a share of its own only when all of them fit ``CONTAINER_SHARES``;
    unknown or more, none has (the reserve then goes unused: 5 % of the limit)."""
    return Spender(
        build_budget(table_name, client),
        limits=FLEET_LIMITS,
        lease=ENRICHER_LEASE,
        max_wait=ENRICHER_MAX_WAIT,
        queue=False,
        share=has_share(containers),
    )


def has_share(containers: int | None) -> bool:
    return containers is not None and 1 <= containers <= CONTAINER_SHARES


def reconciler_spender(table_name: str | None, client: Any = None) -> Spender:
    """Single tokens (they fit the bucket's gaps before the enricher's leases: the reconciler's
    reserved place; its ``Pacer`` caps how much it takes) and it waits rather than gives up."""
    return Spender(build_budget(table_name, client), limits=FLEET_LIMITS, lease=1, max_wait=10.0)
