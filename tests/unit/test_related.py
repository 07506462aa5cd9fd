"""Related entities, narrow units: shapes, the contact allow-list, local times, failure reasons,
the TTL cache (a fake monotonic clock) and the settings."""

from __future__ import annotations

from typing import Any

import pytest

from appointment_enricher.budget.base import BudgetThrottled
from appointment_enricher.config import EnricherSettings
from appointment_enricher.enrich.related import (
    Found,
    Missing,
    RelatedCache,
    RelatedFetcher,
    Transient,
    classify_failure,
)
from appointment_enricher.enrich.service import Outcome
from appointment_enricher.entities import read_entity
from appointment_enricher.errors import ConfigError
from appointment_enricher.powerleads.client import (
    AppointmentNotFound,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from appointment_enricher.related import cut_contact, local_time, pick_timezone
from tests.unit.test_enricher import Memory, Parked, Sink, Source, run, service, sqs

BASE = {"QUARANTINE_QUEUE_URL": "q", "OUTPUT_QUEUE_URL": "o", "POWERLEADS_TOKEN": "t"}


def test_read_entity_follows_each_endpoints_shape_and_keeps_unknown_fields() -> None:
    assert read_entity("contact", {"contact": {"id": "c1", "dnd": True}}) == {"id": "c1", "dnd": True}
    assert read_entity("calendar", {"calendar": {"id": "k1", "name": "Demo"}}) == {"id": "k1", "name": "Demo"}
    assert read_entity("assignedUser", {"id": "u1", "roles": {"type": "account"}}) == {
        "id": "u1",
        "roles": {"type": "account"},
    }
    assert read_entity("location", {"location": {"id": "l1", "timezone": "Europe/Paris"}}) == {
        "id": "l1",
        "timezone": "Europe/Paris",
    }
    assert read_entity("contact", {"id": "c1"}) is None  # no wrapper: not a Get Contact body
    assert read_entity("location", {"location": {"timezone": 5}}) is None  # the wrong type


def test_contacts_are_cut_to_the_allow_list_and_the_timezone_is_read_before() -> None:
    contact = {"id": "c1", "email": "a@example.com", "timezone": "Asia/Kolkata", "customFields": []}
    assert cut_contact(contact, ["id", "phone"]) == {"id": "c1"}
    assert pick_timezone(None, contact) == "Asia/Kolkata"
    assert pick_timezone({"timezone": "America/Chicago"}, contact) == "America/Chicago"
    assert pick_timezone({"timezone": ""}, {"name": "x"}) is None


def test_local_times_carry_the_zones_offset_at_that_instant() -> None:
    assert local_time("2026-01-15T15:00:00Z", "America/New_York") == "2026-01-15T10:00:00-05:00"
    assert local_time("2026-07-15T15:00:00Z", "America/New_York") == "2026-07-15T11:00:00-04:00"
    assert local_time("2023-09-25T16:00:00+05:30", "Europe/London") == "2023-09-25T11:30:00+01:00"
    assert local_time("2026-07-15 15:00:00", "Asia/Kolkata") == "2026-07-15T20:30:00+05:30"
    assert local_time("2026-07-15T15:00:00.250Z", "UTC") == "2026-07-15T15:00:00.250+00:00"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", None, "../etc/passwd"])
def test_an_unknown_zone_gives_no_local_time_and_no_failure(zone: str | None) -> None:
    assert local_time("2026-07-15T15:00:00Z", zone) is None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (AppointmentNotFound("x", status=404), Missing("NotFound")),
        (UpstreamRejected("x", status=400), Missing("Invalid")),
        (UpstreamRejected("x", status=422), Missing("Invalid")),
        (UpstreamRejected("refusing an id"), Missing("Invalid")),
        (UpstreamAuthError("x", status=403), Missing("Forbidden")),
    ],
)
def test_permanent_failures_name_their_reason(error: Exception, expected: Missing) -> None:
    assert classify_failure(error) == expected


@pytest.mark.parametrize(
    "error",
    [
        UpstreamUnavailable("x", status=429),
        UpstreamUnavailable("x", status=503),
        UpstreamAuthError("x", status=401),
    ],
)
def test_transient_failures_retry_the_message(error: Exception) -> None:
    assert isinstance(classify_failure(error), Transient)


def test_no_fleet_budget_for_an_entity_hands_the_message_back_like_the_appointments_fetch() -> None:
    answer = classify_failure(BudgetThrottled("no upstream budget", retry_after=2.5))
    assert isinstance(answer, Transient) and answer.throttled_for == 2.5
    assert classify_failure(UpstreamUnavailable("x", status=429)) == Transient(
        "UpstreamUnavailable", "UpstreamUnavailable fetching a related entity: x"
    )

    class Throttled(Source):
        def get_related(
            self, kind: str, entity_id: str, location_id: str, *, deadline: float
        ) -> dict[str, Any]:
            if kind == "assignedUser":
                raise BudgetThrottled("no upstream budget", retry_after=2.5)
            return {"contact": {"id": entity_id}}

    source, sink = Throttled(), Sink()
    fetcher = RelatedFetcher(source, ["contact", "assignedUser"], ["id"], RelatedCache(3600, 300))
    svc = service(source, sink, Parked(), Memory(), related=fetcher)
    items, failures, _ = run(svc, [sqs(1, "a1"), sqs(2, "a1"), sqs(3, "a2")])
    assert sink.delivered == [] and len(failures) == 3
    assert {(i.outcome, i.throttled_for) for i in items} == {(Outcome.RETRY, 2.5)}  # HandBack's cue


class Counting:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def get_related(self, kind: str, entity_id: str, location_id: str, *, deadline: float) -> dict[str, Any]:
        self.calls.append((kind, entity_id))
        return {"calendar": {"id": entity_id}} if kind == "calendar" else {"contact": {"id": entity_id}}


def test_the_cache_keeps_each_kind_for_its_own_time() -> None:
    clock = [0.0]
    source = Counting()
    fetcher = RelatedFetcher(
        source, ["contact", "calendar"], ["id"], RelatedCache(3600, 300, monotonic=lambda: clock[0])
    )
    calendar, contact = ("calendar", "L1", "K1"), ("contact", "L1", "C1")
    assert fetcher.fetch(calendar, 0) == Found({"id": "K1"}) and fetcher.fetch(contact, 0) == Found(
        {"id": "C1"}
    )
    clock[0] = 299.0
    fetcher.fetch(calendar, 0), fetcher.fetch(contact, 0)
    assert len(source.calls) == 2
    clock[0] = 301.0
    fetcher.fetch(calendar, 0), fetcher.fetch(contact, 0)
    assert source.calls[2:] == [("contact", "C1")]  # the contact expired, the calendar did not
    clock[0] = 3601.0
    fetcher.fetch(calendar, 0)
    assert source.calls[3:] == [("calendar", "K1")]


def test_settings_read_the_related_variables() -> None:
    settings = EnricherSettings.from_env(
        {
            **BASE,
            "ENRICH_RELATED": "location, contact",
            "CONTACT_FIELDS": "id,firstName",
            "CONTACT_CACHE_SECONDS": "60",
        }
    )
    assert settings.ENRICH_RELATED == ["location", "contact"]
    assert settings.CONTACT_FIELDS == ["id", "firstName"]
    assert (settings.RELATED_CACHE_SECONDS, settings.CONTACT_CACHE_SECONDS) == (3600, 60)
    default = EnricherSettings.from_env(BASE)
    assert default.ENRICH_RELATED == []
    assert default.CONTACT_FIELDS == [
        "id",
        "name",
        "firstName",
        "lastName",
        "email",
        "phone",
        "timezone",
        "tags",
    ]
    with pytest.raises(ConfigError, match="ENRICH_RELATED"):
        EnricherSettings.from_env({**BASE, "ENRICH_RELATED": "contact,opportunity"})
