"""Step 1b: tenancy binds the enricher too. A parsed message for a location (or, when the message
carries ``appId``, an app) this deployment does not serve is quarantined as ``ForeignTenant``:
the receiver already ignores such webhooks, so one here came another way (a redrive, a backfill,
a reconcile run from before the allow-list changed) and a human should see it. Reconciler and
backfill messages carry no ``appId``: only their location is checked.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..config.intake import Tenancy
from .items import Item, Outcome


def refuse_foreign(items: Iterable[Item], tenancy: Tenancy | None) -> None:
    if tenancy is None or (tenancy.app_ids is None and tenancy.location_ids is None):
        return
    for item in items:
        parsed = item.parsed
        if item.outcome is not Outcome.PENDING or parsed is None:
            continue
        ref = parsed.ref
        check = tenancy if ref.app_id is not None else Tenancy(None, tenancy.location_ids)
        reason = check.foreign(ref)
        if reason is not None:
            item.fail(Outcome.QUARANTINED, "ForeignTenant", f"{reason}: not served by this deployment")
