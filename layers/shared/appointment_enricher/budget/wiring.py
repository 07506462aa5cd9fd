"""The budget every function that calls PowerLeads spends from, built in one place: the shared
DynamoDB bucket when ``BUDGET_TABLE_NAME`` is set, else an in-process one (local runs, tests)."""

from __future__ import annotations

from typing import Any

from .base import Budget, Limits
from .memory import MemoryBudget
from .spend import Spender

ENRICHER_LEASE = Limits().burst  # 7 tokens per conditional write: see docs/ARCHITECTURE.md for the cost
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


def enricher_spender(table_name: str | None, client: Any = None) -> Spender:
    return Spender(
        build_budget(table_name, client), lease=ENRICHER_LEASE, max_wait=ENRICHER_MAX_WAIT, queue=False
    )


def reconciler_spender(table_name: str | None, client: Any = None) -> Spender:
    """Single tokens (they fit the bucket's gaps before the enricher's leases: the reconciler's
    reserved place; its ``Pacer`` caps how much it takes) and it waits rather than gives up."""
    return Spender(build_budget(table_name, client), lease=1, max_wait=10.0)
