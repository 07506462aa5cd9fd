"""The sandbox PowerLeads API over real HTTP: if these break, client tests would prove nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from dev.fakes.sandbox import DEFAULT_APPOINTMENTS_DIR, Fault, SandboxServer

pytestmark = pytest.mark.integration

SEED_ID = "ocQHyuzHvysMo5N5VsXc"
LOCATION = "0007BWpSzSwfiuSl0tR2"
OTHER_LOCATION = "ve9EPM428h8vShlRW1KT"
HEADERS = {"Authorization": "Bearer sandbox-token", "Version": "2021-04-15", "Accept": "application/json"}
REQUIRED = [
    "id", "title", "calendarId", "locationId", "contactId", "groupId", "appointmentStatus",
    "assignedUserId", "users", "startTime", "endTime", "dateAdded", "dateUpdated",
]  # fmt: skip


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(
        tokens={"sandbox-token": None, "loc-token": LOCATION},
        rate_limit_burst=5,
        rate_limit_interval_ms=400,
    ) as server:
        yield server


def get(sandbox: SandboxServer, event_id: str = SEED_ID, headers: dict[str, str] | None = None, **kw):
    return requests.get(
        f"{sandbox.url}/calendars/events/appointments/{event_id}",
        headers=HEADERS if headers is None else headers,
        timeout=kw.pop("timeout", 5),
        **kw,
    )


# ----- data --------------------------------------------------------------------------------


def test_sample_files_are_named_by_id_and_have_required_fields() -> None:
    files = sorted(DEFAULT_APPOINTMENTS_DIR.glob("*.json"))
    assert len(files) >= 6
    for path in files:
        event = json.loads(path.read_text())["event"]
        assert path.stem == event["id"]
        assert [k for k in REQUIRED if k not in event] == []


def test_seed_example_is_served_verbatim(sandbox: SandboxServer) -> None:
    response = get(sandbox)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    expected = json.loads((DEFAULT_APPOINTMENTS_DIR / f"{SEED_ID}.json").read_text())
    assert response.json() == expected
    assert response.json()["event"]["isRecurring"] == "true"  # the spec's string, untouched
    assert response.json()["event"]["endTime"] == response.json()["event"]["startTime"]


def test_recurring_instance_id_is_served(sandbox: SandboxServer) -> None:
    response = get(sandbox, f"{SEED_ID}_1729821600000_1800")
    assert response.status_code == 200
    assert response.json()["event"]["masterEventId"] == SEED_ID


def test_put_and_delete_appointment(sandbox: SandboxServer) -> None:
    sandbox.put_appointment({"id": "New1", "locationId": LOCATION, "title": "t"})
    assert get(sandbox, "New1").json() == {"event": {"id": "New1", "locationId": LOCATION, "title": "t"}}
    sandbox.delete_appointment("New1")
    assert get(sandbox, "New1").status_code == 404


def test_custom_appointments_dir(tmp_path: Path) -> None:
    (tmp_path / "A1.json").write_text(json.dumps({"event": {"id": "A1", "locationId": LOCATION}}))
    with SandboxServer(appointments_dir=tmp_path) as server:
        assert server.appointment_ids() == ["A1"]
        assert get(server, "A1").status_code == 200
        assert get(server, SEED_ID).status_code == 404


# ----- auth, version, errors ---------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, "Bearer nope", "Basic c2FuZGJveC10b2tlbg==", "Bearer "])
def test_missing_or_unknown_token_is_401(sandbox: SandboxServer, auth: str | None) -> None:
    headers = {"Version": "2021-04-15"} | ({"Authorization": auth} if auth else {})
    response = get(sandbox, headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "statusCode": 401,
        "message": "Invalid token: access token is invalid",
        "error": "Unauthorized",
    }


def test_token_bound_to_other_location_is_403(sandbox: SandboxServer) -> None:
    headers = HEADERS | {"Authorization": "Bearer loc-token"}
    assert get(sandbox, headers=headers).status_code == 200  # its own location
    response = get(sandbox, "Qa4Rb6Sc8Td0Ue2Vf4Wg", headers=headers)  # the other location
    assert response.status_code == 403
    assert response.json() == {
        "statusCode": 403,
        "message": "The token is not authorized for this location",
        "error": "Forbidden",
    }
    assert get(sandbox, "Qa4Rb6Sc8Td0Ue2Vf4Wg").status_code == 200  # an any-location token


@pytest.mark.parametrize("version", [None, "2021-07-28", "v3"])
def test_missing_or_wrong_version_is_400_with_list_message(
    sandbox: SandboxServer, version: str | None
) -> None:
    headers = {"Authorization": "Bearer sandbox-token"} | ({"Version": version} if version else {})
    response = get(sandbox, headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == ["version must be one of the following values: 2021-04-15"]
    assert body["statusCode"] == 400
    assert body["error"] == "Bad Request"


def test_unknown_id_and_unknown_path_are_404_json(sandbox: SandboxServer) -> None:
    response = get(sandbox, "doesNotExist")
    assert response.status_code == 404
    assert response.json() == {"statusCode": 404, "message": "Appointment not found", "error": "Not Found"}
    other = requests.get(f"{sandbox.url}/opportunities/abc", headers=HEADERS, timeout=5)  # not served
    assert other.status_code == 404
    assert other.json()["statusCode"] == 404


# ----- rate limits -------------------------------------------------------------------------


def test_rate_limit_headers_and_sliding_window_429(sandbox: SandboxServer) -> None:
    remaining = []
    for _ in range(5):
        response = get(sandbox)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Max"] == "5"
        assert response.headers["X-RateLimit-Interval-Milliseconds"] == "400"
        assert int(response.headers["X-RateLimit-Daily-Remaining"]) > 0
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    limited = get(sandbox)
    assert limited.status_code == 429
    assert limited.json() == {"statusCode": 429, "message": "Too many requests"}
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    # The limit is per location: the other location still has its whole burst.
    assert get(sandbox, "Qa4Rb6Sc8Td0Ue2Vf4Wg").status_code == 200
    time.sleep(0.45)  # the window slides past all five hits
    assert get(sandbox).status_code == 200


def test_every_appointment_response_carries_rate_headers(sandbox: SandboxServer) -> None:
    for response in (get(sandbox, headers={}), get(sandbox, "nope"), get(sandbox, headers={"Version": "x"})):
        assert {"X-RateLimit-Max", "X-RateLimit-Remaining", "X-RateLimit-Interval-Milliseconds"} <= set(
            response.headers
        )
        assert "X-RateLimit-Daily-Remaining" in response.headers


def test_forced_remaining_zero(sandbox: SandboxServer) -> None:
    sandbox.set_rate_limit_remaining_zero(interval_ms=1234)
    first = get(sandbox)
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Remaining"] == "0"
    assert first.headers["X-RateLimit-Interval-Milliseconds"] == "1234"
    assert get(sandbox).headers["X-RateLimit-Remaining"] != "0"  # only the next response


def test_reset_clears_limiter(sandbox: SandboxServer) -> None:
    for _ in range(5):
        get(sandbox)
    assert get(sandbox).status_code == 429
    sandbox.reset()
    assert get(sandbox).status_code == 200
    assert sandbox.count() == 1


# ----- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 400, 422])
def test_status_faults(sandbox: SandboxServer, status: int) -> None:
    sandbox.queue_faults([Fault.error(status)])
    response = get(sandbox)
    assert response.status_code == status
    assert response.json()["statusCode"] == status
    assert get(sandbox).status_code == 200  # consumed


def test_429_fault_with_and_without_retry_after(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.error(429, headers={"Retry-After": "2"}), Fault.error(429)])
    first, second = get(sandbox), get(sandbox)
    assert (first.status_code, second.status_code) == (429, 429)
    assert first.headers["Retry-After"] == "2"
    assert "Retry-After" not in second.headers
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert get(sandbox).status_code == 200


def test_faults_are_fifo_and_custom_body(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.error(503), Fault.error(500, body={"statusCode": 500, "traceId": "t-1"})])
    assert get(sandbox).status_code == 503
    second = get(sandbox)
    assert second.status_code == 500
    assert second.json() == {"statusCode": 500, "traceId": "t-1"}


def test_faults_scoped_to_event_id(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.error(502)], event_id="Bx7kQ2mN9pLr4TsVw1Yz")
    assert get(sandbox).status_code == 200  # other ids are unaffected
    assert get(sandbox, "Bx7kQ2mN9pLr4TsVw1Yz").status_code == 502
    assert get(sandbox, "Bx7kQ2mN9pLr4TsVw1Yz").status_code == 200


def test_invalid_body_faults(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.invalid_body(), Fault.invalid_body("<html>oops</html>")])
    schema_broken = get(sandbox)
    assert schema_broken.status_code == 200
    assert schema_broken.json() == {"event": {"id": "x"}}
    not_json = get(sandbox)
    assert not_json.status_code == 200
    with pytest.raises(ValueError):
        not_json.json()


def test_drop_fault_closes_connection(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.drop()])
    with pytest.raises(requests.ConnectionError):
        get(sandbox)
    assert get(sandbox).status_code == 200
    assert [r["status"] for r in sandbox.requests_log()] == [None, 200]


def test_hang_fault_triggers_client_timeout(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.hang(3)])
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        get(sandbox, timeout=(1, 0.3))
    assert time.monotonic() - started < 2.5  # the client's 0.3 s, not the 3 s hang
    assert get(sandbox).status_code == 200  # the server keeps serving other requests meanwhile


def test_latency(sandbox: SandboxServer) -> None:
    sandbox.set_latency(250)
    started = time.monotonic()
    assert get(sandbox).status_code == 200
    assert time.monotonic() - started >= 0.25
    # Cleared: with a minute of latency left in place, this read (5 s timeout) would time out.
    sandbox.set_latency(60_000)
    sandbox.set_latency(0)
    assert get(sandbox, timeout=(1, 5)).status_code == 200


def test_stop_is_fast_even_with_a_hanging_request() -> None:
    server = SandboxServer().start()
    server.queue_faults([Fault.hang(30)])
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(get(server, timeout=(1, 10)).status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    time.sleep(0.2)
    server.stop()
    worker.join(timeout=5)
    assert not worker.is_alive()  # released at stop, well before its 10 s read timeout
    assert outcome  # the hanging request was released, not left to its 10 s timeout


# ----- request log -------------------------------------------------------------------------


def test_log_records_raw_path_and_redacts_token(sandbox: SandboxServer) -> None:
    get(sandbox, params={"x": "1"})
    get(sandbox, "nope")
    requests.post(f"{sandbox.url}/_sandbox/latency", json={"ms": 0}, timeout=5)  # not logged
    log = sandbox.requests_log()
    assert [entry["path"] for entry in log] == [
        f"/calendars/events/appointments/{SEED_ID}?x=1",
        "/calendars/events/appointments/nope",
    ]
    assert log[0]["method"] == "GET"
    assert log[0]["headers"]["Authorization"] == "Bearer ***"
    assert log[0]["headers"]["Version"] == "2021-04-15"
    assert "sandbox-token" not in json.dumps(log)
    assert isinstance(log[0]["time"], float)
    assert sandbox.count() == 2
    assert sandbox.count(f"/calendars/events/appointments/{SEED_ID}") == 1
    log.clear()
    assert sandbox.count() == 2  # requests_log returned a copy
    sandbox.clear_log()
    assert sandbox.requests_log() == []


# ----- control plane -----------------------------------------------------------------------


def test_http_control_plane(sandbox: SandboxServer) -> None:
    base = f"{sandbox.url}/_sandbox"
    faults = [
        {"status": 503},
        {"status": 429, "headers": {"Retry-After": "1"}},
        {"kind": "invalid_body"},
        {"kind": "drop"},
        {"status": 500, "event_id": "Bx7kQ2mN9pLr4TsVw1Yz"},
    ]
    assert requests.post(f"{base}/faults", json=faults, timeout=5).json() == {"queued": 5}
    assert get(sandbox).status_code == 503
    assert get(sandbox).headers["Retry-After"] == "1"
    assert get(sandbox).json() == {"event": {"id": "x"}}
    with pytest.raises(requests.ConnectionError):
        get(sandbox)
    assert get(sandbox).status_code == 200
    assert get(sandbox, "Bx7kQ2mN9pLr4TsVw1Yz").status_code == 500

    event = {"id": "Ctl1", "locationId": LOCATION, "title": "via control plane"}
    assert requests.post(f"{base}/appointments", json=event, timeout=5).status_code == 201
    assert get(sandbox, "Ctl1").json() == {"event": event}

    requests.post(f"{base}/latency", json={"ms": 200}, timeout=5)
    started = time.monotonic()
    get(sandbox)
    assert time.monotonic() - started >= 0.2

    logged = requests.get(f"{base}/requests", timeout=5).json()
    assert len(logged) == sandbox.count() == 8
    assert all(not entry["path"].startswith("/_sandbox") for entry in logged)

    requests.post(f"{base}/faults", json=[{"status": 500}], timeout=5)
    requests.post(f"{base}/latency", json={"ms": 60_000}, timeout=5)
    assert requests.post(f"{base}/reset", timeout=5).status_code == 200
    assert sandbox.count() == 0
    # fault and latency cleared: a minute of latency would time this read (5 s) out
    assert get(sandbox, timeout=(1, 5)).status_code == 200

    bad = requests.post(f"{base}/faults", json=[{"kind": "explode"}], timeout=5)
    assert bad.status_code == 400


def test_control_plane_is_not_rate_limited(sandbox: SandboxServer) -> None:
    for _ in range(20):
        assert requests.get(f"{sandbox.url}/_sandbox/requests", timeout=5).status_code == 200


# ----- OAuth -------------------------------------------------------------------------------


def refresh(sandbox: SandboxServer, refresh_token: str, client_secret: str = "s3cret") -> requests.Response:
    form = {
        "client_id": "app-1",
        "client_secret": client_secret,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "user_type": "Location",
    }
    return requests.post(f"{sandbox.url}/oauth/token", data=form, timeout=5)


def test_oauth_refresh_rotates_and_rejects_reuse(sandbox: SandboxServer) -> None:
    sandbox.add_oauth_client("app-1", "s3cret", "rt-0", location_id=LOCATION, company_id="Comp1")
    first = refresh(sandbox, "rt-0")
    assert first.status_code == 200
    body = first.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86399
    assert body["userType"] == "Location"
    assert body["locationId"] == LOCATION
    assert body["scope"]
    assert body["refresh_token"] not in ("", "rt-0")

    # The issued access token works on Get Appointment for its own location only.
    auth = HEADERS | {"Authorization": f"Bearer {body['access_token']}"}
    assert get(sandbox, headers=auth).status_code == 200
    assert get(sandbox, "Qa4Rb6Sc8Td0Ue2Vf4Wg", headers=auth).status_code == 403

    reused = refresh(sandbox, "rt-0")
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert sandbox.oauth_reuse_count == 1

    second = refresh(sandbox, body["refresh_token"])
    assert second.status_code == 200
    assert second.json()["refresh_token"] != body["refresh_token"]
    assert sandbox.oauth_refresh_count == 2

    assert refresh(sandbox, second.json()["refresh_token"], client_secret="wrong").status_code == 401
    assert sandbox.oauth_refresh_count == 2


def test_concurrent_refresh_with_one_token_succeeds_once(sandbox: SandboxServer) -> None:
    sandbox.add_oauth_client("app-1", "s3cret", "rt-0", location_id=LOCATION)
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(r.status_code for r in pool.map(lambda _: refresh(sandbox, "rt-0"), range(8)))
    assert codes == [200] + [400] * 7
    assert sandbox.oauth_refresh_count == 1
    assert sandbox.oauth_reuse_count == 7


def test_expired_access_token_is_401() -> None:
    with SandboxServer(access_token_expires_in=0) as server:
        server.add_oauth_client("app-1", "s3cret", "rt-0", location_id=LOCATION)
        token = refresh(server, "rt-0").json()["access_token"]
        assert get(server, headers=HEADERS | {"Authorization": f"Bearer {token}"}).status_code == 401


def test_location_token_from_agency_token(sandbox: SandboxServer) -> None:
    sandbox.add_oauth_client("app-1", "s3cret", "rt-0", user_type="Company", company_id="Comp1")
    agency = refresh(sandbox, "rt-0").json()
    assert agency["userType"] == "Company"
    assert agency["companyId"] == "Comp1"
    assert "locationId" not in agency
    agency_auth = HEADERS | {"Authorization": f"Bearer {agency['access_token']}"}
    assert get(sandbox, headers=agency_auth).status_code == 403  # needs a sub-account token

    url = f"{sandbox.url}/oauth/locationToken"
    form = {"companyId": "Comp1", "locationId": LOCATION}
    response = requests.post(
        url, data=form, headers={"Authorization": agency_auth["Authorization"]}, timeout=5
    )
    assert response.status_code == 200
    body = response.json()
    assert body["userType"] == "Location"
    assert body["locationId"] == LOCATION
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86399
    assert body["scope"]
    location_auth = HEADERS | {"Authorization": f"Bearer {body['access_token']}"}
    assert get(sandbox, headers=location_auth).status_code == 200

    assert requests.post(url, data=form, timeout=5).status_code == 401
    wrong_company = {"companyId": "Other", "locationId": LOCATION}
    forbidden = requests.post(
        url, data=wrong_company, headers={"Authorization": agency_auth["Authorization"]}, timeout=5
    )
    assert forbidden.status_code == 403
    location_as_agency = requests.post(
        url, data=form, headers={"Authorization": location_auth["Authorization"]}, timeout=5
    )
    assert location_as_agency.status_code == 403


# ----- standalone ----------------------------------------------------------------------------


def test_default_token_and_url() -> None:
    with SandboxServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.port > 0
        assert get(server).status_code == 200
