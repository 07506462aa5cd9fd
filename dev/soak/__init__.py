"""The soaks (`make soak`).

Every webhook accounted for under faults; every lost change recovered by a reconcile pass.
"""

__all__ = ["reconcile", "webhooks"]
