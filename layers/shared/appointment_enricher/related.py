"""Related entities of an appointment (contact, calendar, assigned user, location): which id names
each, how a contact is cut to ``CONTACT_FIELDS``, and local times. Pure domain: no I/O
(``enrich/related.py`` fetches and caches).

Their shapes (pydantic models) live in ``entities``: the settings and the record builder import
this module in every enricher, and only ``ENRICH_RELATED`` builds need the models (2 ms of a cold
start, with ``enrich/related.py``, which the default build does not import either).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .wire import try_upstream_time

RelatedKind = Literal["contact", "calendar", "assignedUser", "location"]
RELATED_KINDS: Final[tuple[RelatedKind, ...]] = ("contact", "calendar", "assignedUser", "location")
DEFAULT_CONTACT_FIELDS: Final = ("id", "name", "firstName", "lastName", "email", "phone", "timezone", "tags")
# Permanent reasons an entity is null (``relatedErrors``).
Reason = Literal["NotFound", "Invalid", "Forbidden", "NoId"]


def entity_ids(appointment: Any, location_id: str, kinds: Iterable[str]) -> dict[str, str | None]:
    """The id of each requested entity, from the appointment (or the webhook's snapshot): None when
    it names none (``NoId``). An id outside the safe pattern is still returned: the client refuses
    to request it, and the entity is ``Invalid``."""
    sources = {
        "contact": getattr(appointment, "contactId", None),
        "calendar": getattr(appointment, "calendarId", None),
        "assignedUser": getattr(appointment, "assignedUserId", None),
        "location": location_id,
    }
    ids: dict[str, str | None] = {}
    for kind in kinds:
        value = sources[kind]
        ids[kind] = value if isinstance(value, str) and value else None
    return ids


def cut_contact(contact: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """A contact through the ``CONTACT_FIELDS`` allow-list (PII stays out unless named)."""
    return {name: contact[name] for name in fields if name in contact}


@dataclass
class RelatedResult:
    """What one record carries: each requested entity (None when permanently unavailable), the
    reasons, and the timezone (the location's, else the contact's; None when neither is known)."""

    entities: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    timezone: str | None = None
    wants_timezone: bool = False


def pick_timezone(location: Mapping[str, Any] | None, contact: Mapping[str, Any] | None) -> str | None:
    """The location's ``timezone``, else the contact's (read before the contact is cut)."""
    for entity in (location, contact):
        value = (entity or {}).get("timezone")
        if isinstance(value, str) and value:
            return value
    return None


def local_time(value: Any, timezone: str | None) -> str | None:
    """An upstream time in ``timezone`` as RFC 3339 with that zone's offset at that instant; None
    when the time does not parse or the zone is unknown (no failure: the record goes out)."""
    moment = try_upstream_time(value)
    if moment is None or not timezone:
        return None
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return _rfc3339_local(moment.astimezone(zone))


def _rfc3339_local(moment: datetime) -> str:
    if moment.microsecond:
        return moment.isoformat(timespec="milliseconds")
    return moment.isoformat(timespec="seconds")


__all__ = [
    "DEFAULT_CONTACT_FIELDS",
    "RELATED_KINDS",
    "RelatedKind",
    "RelatedResult",
    "cut_contact",
    "entity_ids",
    "local_time",
    "pick_timezone",
]
