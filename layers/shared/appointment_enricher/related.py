"""Related entities of an appointment (contact, calendar, assigned user, location): their shapes,
which id names each, how a contact is cut to ``CONTACT_FIELDS``, and local times. Pure domain: no
I/O (``enrich/related.py`` fetches and caches).

Shapes as HighLevel's OpenAPI specs and the official SDK 3.0.0 give them: every field optional,
unknown fields kept. ``GET /contacts/{id}`` -> ``{"contact": {...}}``, ``GET /calendars/{id}`` ->
``{"calendar": {...}}`` (no timezone), ``GET /users/{id}`` -> the user itself (no wrapper),
``GET /locations/{id}`` -> ``{"location": {...}}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, ValidationError

from .wire import try_upstream_time

RelatedKind = Literal["contact", "calendar", "assignedUser", "location"]
RELATED_KINDS: Final[tuple[RelatedKind, ...]] = ("contact", "calendar", "assignedUser", "location")
DEFAULT_CONTACT_FIELDS: Final = ("id", "name", "firstName", "lastName", "email", "phone", "timezone", "tags")
# Permanent reasons an entity is null (``relatedErrors``).
Reason = Literal["NotFound", "Invalid", "Forbidden", "NoId"]


class _Entity(BaseModel):
    # Built on first use, not at import: only ``ENRICH_RELATED`` builds use them, and building the
    # four validators cost every enricher cold start ~6 ms (BENCHMARKS.md).
    model_config = ConfigDict(extra="allow", defer_build=True)

    id: str | None = None
    name: str | None = None


class Contact(_Entity):
    """``contact`` of Get Contact."""

    locationId: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    email: str | None = None
    phone: str | None = None
    timezone: str | None = None
    tags: list[str] | None = None


class Calendar(_Entity):
    """``calendar`` of Get Calendar (``CalendarDTO``; it has no timezone)."""

    locationId: str | None = None


class User(_Entity):
    """Get User's body (``UserSuccessfulResponseDto``)."""

    firstName: str | None = None
    lastName: str | None = None
    email: str | None = None
    phone: str | None = None


class Location(_Entity):
    """``location`` of Get Location (``GetLocationByIdSchema``)."""

    timezone: str | None = None


_MODELS: Final[dict[str, type[_Entity]]] = {
    "contact": Contact,
    "calendar": Calendar,
    "assignedUser": User,
    "location": Location,
}
_WRAPPERS: Final[dict[str, str | None]] = {
    "contact": "contact",
    "calendar": "calendar",
    "assignedUser": None,
    "location": "location",
}


def read_entity(kind: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The entity in a 200 body, validated, as the API returned it; None when the body is not one
    (no wrapper object, a field of the wrong type): ``Invalid``."""
    wrapper = _WRAPPERS[kind]
    body = payload.get(wrapper) if wrapper else payload
    if not isinstance(body, dict):
        return None
    try:
        entity = _MODELS[kind].model_validate(body)
    except ValidationError:
        return None
    return entity.model_dump(mode="json", exclude_unset=True)


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
    "Calendar",
    "Contact",
    "Location",
    "RelatedKind",
    "RelatedResult",
    "User",
    "cut_contact",
    "entity_ids",
    "local_time",
    "pick_timezone",
    "read_entity",
]
