"""The soaks (`make soak`).

Every webhook accounted for under faults; every lost change recovered by a reconcile pass.
``webhooks`` is the run and its CLI; its pieces (``stack``, ``sender``, ``faults``, ``plan``,
``collect``, ``balance``, ``processes``, ``config``) are importable by any new soak phase.
"""

__all__ = [
    "balance",
    "collect",
    "config",
    "faults",
    "plan",
    "processes",
    "reconcile",
    "sender",
    "stack",
    "webhooks",
]
