"""The related entities' shapes, as HighLevel's OpenAPI specs and the official SDK 3.0.0 give
them: every field optional, unknown fields kept. ``GET /contacts/{id}`` -> ``{"contact": {...}}``,
``GET /calendars/{id}`` -> ``{"calendar": {...}}`` (no timezone), ``GET /users/{id}`` -> the user
itself (no wrapper), ``GET /locations/{id}`` -> ``{"location": {...}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["Calendar", "Contact", "Location", "User", "read_entity"]


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
