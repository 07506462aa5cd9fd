"""The sandbox's related-entity endpoints: Get Contact, Get Calendar, Get User, Get Location.

Shapes and versions as HighLevel's OpenAPI specs (apps/contacts.json, calendars.json, users.json,
locations.json) and the official SDK 3.0.0 give them:

* ``GET /contacts/{id}``  ``Version: 2021-07-28`` -> ``{"contact": {...}}``
* ``GET /calendars/{id}`` ``Version: 2021-04-15`` -> ``{"calendar": {...}}`` (no timezone)
* ``GET /users/{id}``     ``Version: 2021-07-28`` -> the user object itself
* ``GET /locations/{id}`` ``Version: 2021-07-28`` -> ``{"location": {...}}``

A wrong ``Version`` is a 400 naming the one allowed, like the API. An unknown id: 422 when it is
not shaped like a HighLevel id (letters and digits), else 400 for a contact ("Contact not found")
and 404 for the others; the specs document 400/422 only, the real API answers all three.
A location-bound token reading another location's entity, or an agency token, gets 403.

Every entity an appointment names is seeded when the appointment is put (``RelatedStore.seed``),
with realistic, deterministic names, emails, phones and timezones, so ``make run`` shows enriched
records. Kept out of ``sandbox.py`` (its own section of the fake API).
"""

from __future__ import annotations

import copy
import hashlib
import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from .sandbox import Fault, SandboxServer

# (status, body, headers); status 0 = drop the connection, body None = the sandbox's standard
# error body for that status (401, 403, 429, ...).
Answer = tuple[int, Any, dict[str, str]]

# path segment -> (the entity name in ENRICH_RELATED, the one Version the endpoint accepts, wrapper)
ENDPOINTS: dict[str, tuple[str, str, str | None]] = {
    "contacts": ("contact", "2021-07-28", "contact"),
    "calendars": ("calendar", "2021-04-15", "calendar"),
    "users": ("assignedUser", "2021-07-28", None),
    "locations": ("location", "2021-07-28", "location"),
}
_PATH = re.compile(r"^/(contacts|calendars|users|locations)/([^/]+)$")
_HIGHLEVEL_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_RESERVED = {"calendars": {"events", "groups", "resources", "blocked-slots"}}

FIRST = ["Ava", "Liam", "Maya", "Noah", "Zoe", "Ethan", "Priya", "Lucas", "Chloe", "Mateo", "Aisha", "Owen"]
LAST = ["Garcia", "Nguyen", "Patel", "Smith", "Okafor", "Kowalski", "Rossi", "Tanaka", "Silva", "Brown"]
ZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Phoenix",
    "Europe/London",
    "Australia/Sydney",
    "Asia/Kolkata",
]
CITIES = ["Austin", "Denver", "Boston", "Seattle", "Tampa", "Phoenix", "Leeds", "Sydney", "Pune", "Tulsa"]
KINDS = ["Consultation", "Follow-up", "Demo", "Intro call", "Site visit", "Onboarding"]


def route(path: str) -> tuple[str, str] | None:
    """(segment, id) when ``path`` is one of the four Get-by-id endpoints."""
    match = _PATH.fullmatch(path)
    if match is None or match[2] in _RESERVED.get(match[1], set()):
        return None
    return match[1], unquote(match[2])


def _pick(seed: str, choices: list[str], salt: str = "") -> str:
    digest = hashlib.sha256(f"{salt}:{seed}".encode()).digest()
    return choices[int.from_bytes(digest[:4], "big") % len(choices)]


def _person(entity_id: str) -> dict[str, Any]:
    first, last = _pick(entity_id, FIRST, "first"), _pick(entity_id, LAST, "last")
    digits = int(hashlib.sha256(entity_id.encode()).hexdigest()[:7], 16) % 10_000_000
    return {
        "id": entity_id,
        "name": f"{first} {last}",
        "firstName": first,
        "lastName": last,
        "email": f"{first}.{last}.{entity_id[:6]}@example.com".lower(),
        "phone": f"+1555{digits:07d}",
    }


def make_contact(contact_id: str, location_id: str) -> dict[str, Any]:
    contact = {**_person(contact_id), "locationId": location_id, "type": "lead", "source": "booking widget"}
    contact["tags"] = [_pick(contact_id, ["new lead", "returning", "vip", "webinar"], "tag")]
    contact["timezone"] = _pick(contact_id, ZONES, "tz")
    contact["dnd"] = False
    contact["customFields"] = [{"id": "cf" + contact_id[:8], "value": "referral"}]
    return contact


def make_calendar(calendar_id: str, location_id: str) -> dict[str, Any]:
    return {
        "id": calendar_id,
        "locationId": location_id,
        "name": f"{_pick(calendar_id, KINDS, 'kind')} ({calendar_id[:4]})",
        "calendarType": "round_robin",
        "slotDuration": 30,
        "isActive": True,
    }


def make_user(user_id: str, location_id: str) -> dict[str, Any]:
    return {
        **_person(user_id),
        "extension": "",
        "roles": {"type": "account", "role": "user", "locationIds": [location_id]},
    }


def make_location(location_id: str) -> dict[str, Any]:
    city = _pick(location_id, CITIES, "city")
    return {
        "id": location_id,
        "companyId": "company" + location_id[:6],
        "name": f"{city} Clinic ({location_id[:4]})",
        "city": city,
        "timezone": _pick(location_id, ZONES, "loctz"),
        "email": f"frontdesk.{location_id[:6]}@example.com".lower(),
    }


class RelatedStore:
    """Entities by (kind, id), each with the location that owns it (for 403 checks)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def put(self, kind: str, entity: Mapping[str, Any], owner_location_id: str) -> None:
        with self._lock:
            self._items[(kind, str(entity["id"]))] = (owner_location_id, copy.deepcopy(dict(entity)))

    def forget(self, kind: str, entity_id: str) -> None:
        """The entity is gone: its endpoint answers "not found" from now on."""
        with self._lock:
            self._items.pop((kind, entity_id), None)

    def get(self, kind: str, entity_id: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            found = self._items.get((kind, entity_id))
            return (found[0], copy.deepcopy(found[1])) if found else None

    def seed(self, event: Mapping[str, Any]) -> None:
        """Every entity ``event`` names, generated once (an existing one is kept as it is)."""
        location = event.get("locationId")
        if not isinstance(location, str) or not location:
            return
        wanted: list[tuple[str, dict[str, Any]]] = [("location", make_location(location))]
        if isinstance(event.get("contactId"), str) and event["contactId"]:
            wanted.append(("contact", make_contact(event["contactId"], location)))
        if isinstance(event.get("calendarId"), str) and event["calendarId"]:
            wanted.append(("calendar", make_calendar(event["calendarId"], location)))
        users = [event.get("assignedUserId"), *(event.get("users") or [])]
        wanted.extend(("assignedUser", make_user(u, location)) for u in users if isinstance(u, str) and u)
        with self._lock:
            for kind, entity in wanted:
                self._items.setdefault((kind, entity["id"]), (location, entity))

    def seed_all(self, events: Iterable[Mapping[str, Any]]) -> None:
        for event in events:
            self.seed(event)


def _next_fault(sandbox: SandboxServer, entity_id: str) -> Fault | None:
    """A queued fault scoped to exactly this id (unscoped faults stay the appointment's)."""
    with sandbox._lock:
        for fault in sandbox._faults:
            if fault.event_id == entity_id:
                sandbox._faults.remove(fault)
                return fault
    return None


def related_reply(sandbox: SandboxServer, segment: str, entity_id: str, headers: Mapping[str, str]) -> Answer:
    """Auth, Version, rate limit, then the entity (or HighLevel's "not available" answers)."""
    kind, version, wrapper = ENDPOINTS[segment]
    if sandbox._latency_ms:
        sandbox._stopping.wait(sandbox._latency_ms / 1000)
    fault = _next_fault(sandbox, entity_id)
    valid, bound_location, user_type = sandbox._auth(sandbox._bearer(headers))
    found = sandbox.related.get(kind, entity_id)
    version_ok = headers.get("version") == version
    with sandbox._lock:
        key = bound_location or (found[0] if found else "-")
        if valid and version_ok and fault is None:
            allowed, remaining, daily = sandbox._limiter.hit(key)
        else:
            allowed = True
            remaining, daily = sandbox._limiter.peek(key)
        rate = sandbox._rate_headers(remaining, daily, sandbox._limiter.interval_ms)
    if fault is not None:
        if fault.kind == "drop":
            return 0, None, {}
        if fault.status == 429:
            rate["X-RateLimit-Remaining"] = "0"
        return fault.status, fault.body, {**rate, **fault.headers}
    label = segment[:-1].capitalize()
    bad_version = {
        "statusCode": 400,
        "message": [f"version must be one of the following values: {version}"],
        "error": "Bad Request",
    }
    checks: list[tuple[bool, int, Any]] = [
        (not valid, 401, None),
        (not version_ok, 400, bad_version),
        (not allowed, 429, None),
        (found is None and not _HIGHLEVEL_ID.fullmatch(entity_id), 422, None),
        (found is None and segment == "contacts", 400, _not_found(400, label)),
        (found is None, 404, _not_found(404, label)),
        (user_type != "Location" or bound_location not in (None, found[0] if found else None), 403, None),
    ]
    for failed, status, error in checks:
        if failed:
            return status, error, rate
    assert found is not None  # the checks above answered for a missing entity
    return 200, ({wrapper: found[1]} if wrapper else found[1]), rate


def _not_found(status: int, label: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "message": f"{label} not found",
        "error": "Not Found" if status == 404 else "Bad Request",
    }
