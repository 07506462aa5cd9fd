"""The budget every function that calls PowerLeads spends from, built in one place: the shared
DynamoDB bucket when ``BUDGET_TABLE_NAME`` is set, else an in-process one (local runs, tests)."""

from __future__ import annotations

from typing import Any

from .base import Budget, Limits
from .memory import MemoryBudget
from .spend import Spender

ENRICHER_LEASE = Limits().burst  # 7 tokens per conditional write: see docs/ARCHITECTURE.md for the cost
ENRICHER_MAX_WAIT = 1.0  # seconds a request may wait for budget before its item is handed back
# Handed-back work takes a place in its location's queue (budget/base.py, one more conditional
# write per item handed back, only during a backlog): it comes back when the bucket will serve it,
# spread at the bucket's rate, and meanwhile the ingest queue's other messages (other locations'
# included) are received ahead of it; a location whose queue is long hands fresh work back at once.


def build_budget(table_name: str | None, client: Any = None) -> Budget:
    if not table_name:
        return MemoryBudget()
    from .dynamodb import DynamoBudget  # noqa: PLC0415 - only with a table

    if client is None:
        from ..aws.sdk import dynamodb_client  # noqa: PLC0415

        client = dynamodb_client()
    return DynamoBudget(client, table_name)


def enricher_spender(table_name: str | None, client: Any = None) -> Spender:
    return Spender(
        build_budget(table_name, client), lease=ENRICHER_LEASE, max_wait=ENRICHER_MAX_WAIT, queue=True
    )


def reconciler_spender(table_name: str | None, client: Any = None) -> Spender:
    """Single tokens (they fit the bucket's gaps before the enricher's leases: the reconciler's
    reserved place; its ``Pacer`` caps how much it takes) and it waits rather than gives up."""
    return Spender(build_budget(table_name, client), lease=1, max_wait=10.0)
