"""Wire formats shared by every module: ids, event types and upstream times.

Kept free of pydantic so the receiver's cold start does not pay for it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
_ID_RE = re.compile(ID_PATTERN)

APPOINTMENT_EVENT_TYPES: frozenset[str] = frozenset(
    {"AppointmentCreate", "AppointmentUpdate", "AppointmentDelete"}
)


def is_valid_id(value: object) -> bool:
    """True for ids safe to put in a URL path, a queue group id or a log line."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def parse_upstream_time(value: str | datetime) -> datetime:
    """Parse an upstream time: ISO 8601 (offset, ``Z`` or none) or ``YYYY-MM-DD HH:MM:SS``.

    A value without an offset is taken as UTC: the API documents no other zone for it.
    """
    if isinstance(value, datetime):
        parsed = value
    else:
        text = value.strip()
        if not text or len(text) > 64:
            raise ValueError("not a date-time")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(
                "expected ISO 8601 date-time (e.g. 2023-09-25T16:00:00+05:30) or YYYY-MM-DD HH:MM:SS"
            ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed.astimezone(UTC)  # year 1 with +offset / year 9999 with -offset overflow in UTC
    except OverflowError:
        raise ValueError("date-time out of range once converted to UTC") from None
    return parsed


def rfc3339(moment: datetime) -> str:
    """UTC with a ``Z`` suffix; milliseconds only when present."""
    utc = moment.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
