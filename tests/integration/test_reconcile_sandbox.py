"""The list endpoints: the sandbox API's behaviour over HTTP, and the PowerLeads client's methods."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from appointment_enricher.powerleads.client import (
    PowerLeadsClient,
    RetryPolicy,
    UpstreamAuthError,
    UpstreamRejected,
)
from appointment_enricher.powerleads.tokens import StaticTokens
from dev.fakes.sandbox import DEFAULT_TOKEN, SandboxServer
from dev.stack.reconcile_local import recent_event

pytestmark = pytest.mark.integration

LOC = "ListLoc001"
HEADERS = {"Authorization": f"Bearer {DEFAULT_TOKEN}", "Version": "2021-04-15"}
DAY = 86_400_000


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as sandbox:
        now = int(time.time() * 1000)
        sandbox.put_appointment(recent_event("ListSoon01", LOC, "ListCalA", start_in=timedelta(days=1)))
        sandbox.put_appointment(recent_event("ListLater1", LOC, "ListCalA", start_in=timedelta(days=30)))
        sandbox.put_appointment(
            recent_event("ListOther1", LOC, "ListCalB", assignedUserId="ListUser9", groupId="ListGrp9")
        )
        sandbox.put_appointment(recent_event("ListGone01", LOC, "ListCalB"))
        sandbox.delete_appointment("ListGone01")
        sandbox.put_appointment(recent_event("ListElse01", "ListLoc999", "ListCalZ"))
        sandbox.now_ms = now  # type: ignore[attr-defined]
        yield sandbox


def get(
    server: SandboxServer, path: str, headers: dict[str, str] | None = None, **query: Any
) -> requests.Response:
    return requests.get(
        f"{server.url}{path}", params=query, headers=HEADERS if headers is None else headers, timeout=5
    )


def ids(response: requests.Response, key: str = "events") -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()[key]]


def test_calendars_of_a_location(server: SandboxServer) -> None:
    response = get(server, "/calendars/", locationId=LOC)
    assert ids(response, "calendars") == ["ListCalA", "ListCalB"]
    assert response.headers["X-RateLimit-Max"] == "100"


def test_events_filtered_by_calendar_user_group_and_window(server: SandboxServer) -> None:
    now = server.now_ms  # type: ignore[attr-defined]
    window = {"locationId": LOC, "startTime": now - DAY, "endTime": now + 7 * DAY}
    assert ids(get(server, "/calendars/events", calendarId="ListCalA", **window)) == ["ListSoon01"]
    wide = {**window, "endTime": now + 60 * DAY}
    assert ids(get(server, "/calendars/events", calendarId="ListCalA", **wide)) == [
        "ListSoon01",
        "ListLater1",
    ]
    assert ids(get(server, "/calendars/events", userId="ListUser9", **window)) == ["ListOther1"]
    assert ids(get(server, "/calendars/events", groupId="ListGrp9", **window)) == ["ListOther1"]


def test_a_deleted_appointment_is_listed_deleted_and_gone_for_get_appointment(server: SandboxServer) -> None:
    now = server.now_ms  # type: ignore[attr-defined]
    events = get(
        server,
        "/calendars/events",
        locationId=LOC,
        calendarId="ListCalB",
        startTime=now - DAY,
        endTime=now + 7 * DAY,
    )
    gone = next(e for e in events.json()["events"] if e["id"] == "ListGone01")
    assert gone["deleted"] is True
    assert get(server, "/calendars/events/appointments/ListGone01").status_code == 404


@pytest.mark.parametrize(
    ("query", "missing"),
    [
        ({"calendarId": "ListCalA", "startTime": 1, "endTime": 2}, "locationId"),
        ({"locationId": LOC, "startTime": 1, "endTime": 2}, "calendarId, userId or groupId"),
        ({"locationId": LOC, "calendarId": "ListCalA", "endTime": 2}, "startTime"),
        ({"locationId": LOC, "calendarId": "ListCalA", "startTime": 1}, "endTime"),
        ({"locationId": LOC, "calendarId": "ListCalA", "startTime": "2026-01-01", "endTime": 2}, "startTime"),
    ],
)
def test_events_answer_422_on_a_missing_query_parameter(
    server: SandboxServer, query: dict[str, Any], missing: str
) -> None:
    response = get(server, "/calendars/events", **query)
    assert response.status_code == 422
    assert missing in " ".join(response.json()["message"])


def test_auth_and_version_are_checked(server: SandboxServer) -> None:
    assert get(server, "/calendars/", headers={"Version": "2021-04-15"}, locationId=LOC).status_code == 401
    assert (
        get(
            server, "/calendars/", headers={"Authorization": HEADERS["Authorization"]}, locationId=LOC
        ).status_code
        == 400
    )
    assert get(server, "/calendars/", locationId="").status_code == 422


def test_client_lists_and_refuses_unsafe_ids_without_a_request(server: SandboxServer) -> None:
    client = PowerLeadsClient(server.url, StaticTokens(DEFAULT_TOKEN), retry=RetryPolicy(max_attempts=2))
    deadline = time.monotonic() + 10
    assert [c["id"] for c in client.list_calendars(LOC, deadline=deadline)] == ["ListCalA", "ListCalB"]
    now = server.now_ms  # type: ignore[attr-defined]
    listed = client.list_events(LOC, "ListCalA", now - DAY, now + 7 * DAY, deadline=deadline)
    assert [e["id"] for e in listed] == ["ListSoon01"]
    server.clear_log()
    with pytest.raises(UpstreamRejected):
        client.list_calendars("../x", deadline=deadline)
    with pytest.raises(UpstreamRejected):
        client.list_events(LOC, "a b", 0, 1, deadline=deadline)
    assert server.requests_log() == []
    with pytest.raises(UpstreamAuthError):
        PowerLeadsClient(server.url, StaticTokens("wrong")).list_calendars(LOC, deadline=deadline)
