"""Dev helpers for the reconciler: appointments dated around now for the sandbox, and ledger items
in the ledger's agreed layout (``appointment#<id>``, ``locations``) for tests and the soak.

Dev only, never ships.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def iso_ms(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def recent_event(
    appointment_id: str,
    location_id: str,
    calendar_id: str = "ReconCal001",
    *,
    start_in: timedelta = timedelta(days=1),
    updated: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Get Appointment ``event`` (every documented required field) starting ``start_in`` from now."""
    start = datetime.now(UTC).replace(microsecond=0) + start_in
    return {
        "id": appointment_id,
        "title": f"Reconcile {appointment_id}",
        "calendarId": calendar_id,
        "locationId": location_id,
        "contactId": "ReconContact1",
        "groupId": "ReconGroup1",
        "appointmentStatus": "confirmed",
        "assignedUserId": "ReconUser1",
        "users": ["ReconUser1"],
        "startTime": iso_ms(start),
        "endTime": iso_ms(start + timedelta(minutes=30)),
        "dateAdded": "2026-01-05T10:00:00.000Z",
        "dateUpdated": iso_ms(updated or datetime.now(UTC)),
        **extra,
    }


def seed_ledger(
    ddb: Any,
    table: str,
    appointment_id: str,
    location_id: str,
    date_updated: str | None,
    *,
    deleted: bool = False,
) -> None:
    """One appointment item in the agreed layout, and its location in the ``locations`` set."""
    item: dict[str, Any] = {
        "id": {"S": f"appointment#{appointment_id}"},
        "locationId": {"S": location_id},
        "deleted": {"BOOL": deleted},
        "expiration": {"N": str(int(datetime.now(UTC).timestamp()) + 86_400)},
    }
    if date_updated is not None:
        item["dateUpdated"] = {"S": date_updated}
    ddb.put_item(TableName=table, Item=item)
    ddb.update_item(
        TableName=table,
        Key={"id": {"S": "locations"}},
        UpdateExpression="ADD locationIds :l",
        ExpressionAttributeValues={":l": {"SS": [location_id]}},
    )
