"""OAuthTokens against in-memory fakes of Secrets Manager (with label compare-and-swap) and HTTP."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest

from appointment_enricher.powerleads.oauth import (
    LEASE_STAGE,
    OAuthError,
    OAuthTokens,
    _Token,
    is_oauth_document,
)
from appointment_enricher.powerleads.secret_store import WRITE_BACK_FAILED, Snapshot
from appointment_enricher.powerleads.tokens import TokenUnavailable
from tests.fakes import FakeClock

BASE = "https://api.example.test"
LOCATION = "loc_1"
NOW = 1_800_000_000.0


class ParamError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.response = {"Error": {"Code": "InvalidParameterException", "Message": message}}


class Throttled(Exception):
    def __init__(self) -> None:
        super().__init__("Rate exceeded")
        self.response = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}


class FakeSecrets:
    """Versions with staging labels; UpdateSecretVersionStage is a CAS on RemoveFromVersionId."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.lock = threading.Lock()
        self.versions: dict[str, dict[str, Any]] = {}
        self.puts = 0
        self.throttled_puts: set[int] = set()  # 1-based numbers of PutSecretValue calls to throttle
        self.before_move: Callable[[], None] | None = None
        self._add(json.dumps(document), ["AWSCURRENT"])

    def _add(self, text: str, stages: list[str]) -> str:
        version = str(uuid.uuid4())
        for other in self.versions.values():
            for stage in stages:
                if stage in other["stages"]:
                    other["stages"].remove(stage)
        self.versions[version] = {"text": text, "stages": list(stages)}
        return version

    def current(self) -> tuple[str, dict[str, Any]]:
        with self.lock:
            for version, value in self.versions.items():
                if "AWSCURRENT" in value["stages"]:
                    return version, json.loads(value["text"])
        raise AssertionError("no AWSCURRENT")

    def publish(self, document: dict[str, Any]) -> None:
        """Another container (or a human) makes a new current version."""
        with self.lock:
            self._add(json.dumps(document), ["AWSCURRENT"])

    def get_secret_value(self, SecretId: str, VersionStage: str = "AWSCURRENT") -> dict[str, Any]:
        assert VersionStage == "AWSCURRENT"
        version, document = self.current()
        return {"VersionId": version, "SecretString": json.dumps(document)}

    def put_secret_value(
        self, SecretId: str, ClientRequestToken: str, SecretString: str, VersionStages: list[str]
    ) -> dict[str, Any]:
        assert VersionStages == [LEASE_STAGE]
        with self.lock:
            self.puts += 1
            if self.puts in self.throttled_puts:
                raise Throttled()
            return {"VersionId": self._add(SecretString, VersionStages)}

    def update_secret_version_stage(
        self, SecretId: str, VersionStage: str, MoveToVersionId: str, RemoveFromVersionId: str
    ) -> dict[str, Any]:
        hook, self.before_move = self.before_move, None
        if hook:
            hook()
        with self.lock:
            if VersionStage not in self.versions[RemoveFromVersionId]["stages"]:
                raise ParamError(f"Version stage {VersionStage} not found in version {RemoveFromVersionId}")
            self.versions[RemoveFromVersionId]["stages"].remove(VersionStage)
            self.versions[MoveToVersionId]["stages"].append(VersionStage)
        return {}


class FakeResponse:
    def __init__(self, status: int, payload: Any) -> None:
        self.status_code = status
        self._payload = payload

    def json(self) -> Any:
        return self._payload


class FakeUpstream:
    """POST /oauth/token (single-use refresh tokens) and /oauth/locationToken."""

    def __init__(self, refresh_token: str = "rt-0", expires_in: int = 86_399) -> None:
        self.refresh_token = refresh_token
        self.expires_in = expires_in
        self.calls: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.refreshes = 0
        self.reuses = 0
        self.fail_with: tuple[int, dict[str, Any]] | None = None
        self.agency_tokens: set[str] = set()
        self.lock = threading.Lock()

    def post(self, url: str, data: dict[str, str], headers: dict[str, str], **_: Any) -> FakeResponse:
        path = urlsplit(url).path
        with self.lock:
            self.calls.append((path, dict(data), dict(headers)))
            if self.fail_with:
                return FakeResponse(*self.fail_with)
            if path == "/oauth/token":
                if data["refresh_token"] != self.refresh_token:
                    self.reuses += 1
                    return FakeResponse(400, {"error": "invalid_grant"})
                self.refreshes += 1
                self.refresh_token = f"rt-{self.refreshes}"
                access = f"at-{self.refreshes}"
                if data["user_type"] == "Company":
                    self.agency_tokens.add(access)
                return FakeResponse(
                    200,
                    {
                        "access_token": access,
                        "refresh_token": self.refresh_token,
                        "expires_in": self.expires_in,
                    },
                )
            bearer = headers["Authorization"].removeprefix("Bearer ")
            if bearer not in self.agency_tokens:
                return FakeResponse(401, {"statusCode": 401})
            return FakeResponse(
                200, {"access_token": f"lt-{data['locationId']}-{len(self.calls)}", "expires_in": 3600}
            )


def oauth_doc(**extra: Any) -> dict[str, Any]:
    return {
        "oauth": {
            "clientId": "cid",
            "clientSecret": "csecret",
            "refreshToken": "rt-0",
            "userType": "Location",
            "locationId": LOCATION,
            **extra,
        }
    }


def make(
    secrets: FakeSecrets, upstream: FakeUpstream, clock: FakeClock | None = None, **kw: Any
) -> OAuthTokens:
    client: Any = secrets
    session: Any = upstream
    clock = clock or FakeClock(NOW)
    kw.setdefault("monotonic", clock)  # one fake clock for epoch and deadline time
    return OAuthTokens("sec", client, session, BASE, epoch=clock, **kw)


def token_calls(upstream: FakeUpstream) -> list[dict[str, str]]:
    return [data for path, data, _ in upstream.calls if path == "/oauth/token"]


def test_is_oauth_document() -> None:
    assert is_oauth_document(oauth_doc())
    assert not is_oauth_document({"default": "t", "locations": {}})
    assert not is_oauth_document({"oauth": {"clientId": "x"}})
    assert not is_oauth_document("token")
    assert not is_oauth_document(None)


def test_first_use_refreshes_and_writes_the_rotated_refresh_token_back() -> None:
    secrets, upstream = FakeSecrets(oauth_doc()), FakeUpstream()
    tokens = make(secrets, upstream)
    assert tokens.token_for(LOCATION) == "at-1"
    assert token_calls(upstream) == [
        {
            "client_id": "cid",
            "client_secret": "csecret",
            "grant_type": "refresh_token",
            "refresh_token": "rt-0",
            "user_type": "Location",
        }
    ]
    _, saved = secrets.current()
    assert saved["oauth"]["refreshToken"] == "rt-1"
    assert saved["oauth"]["accessToken"] == "at-1"
    assert saved["oauth"]["expiresAt"] == int(NOW + 86_399)
    assert "refreshLease" not in saved["oauth"]
    assert secrets.puts == 2  # the lease, then the tokens


def test_cached_until_the_margin_then_refreshed() -> None:
    secrets, upstream, clock = FakeSecrets(oauth_doc()), FakeUpstream(expires_in=3600), FakeClock(NOW)
    tokens = make(secrets, upstream, clock)
    tokens.token_for(LOCATION)
    clock.now += 3600 - 301
    assert tokens.token_for(LOCATION) == "at-1"
    clock.now += 2
    assert tokens.token_for(LOCATION) == "at-2"
    assert upstream.refreshes == 2 and upstream.reuses == 0


def test_a_valid_token_in_the_secret_is_used_without_refresh() -> None:
    secrets = FakeSecrets(oauth_doc(accessToken="at-stored", expiresAt=NOW + 3600))
    upstream = FakeUpstream()
    assert make(secrets, upstream).token_for(LOCATION) == "at-stored"
    assert upstream.calls == [] and secrets.puts == 0


def test_losing_the_lease_swap_means_no_refresh_and_the_winners_token() -> None:
    secrets, upstream = FakeSecrets(oauth_doc()), FakeUpstream()
    sleeps: list[float] = []

    def winner_takes_lease() -> None:
        _, doc = secrets.current()
        doc["oauth"]["refreshLease"] = {"owner": "other", "until": NOW + 60}
        secrets.publish(doc)

    def winner_finishes(seconds: float) -> None:
        sleeps.append(seconds)
        _, doc = secrets.current()
        del doc["oauth"]["refreshLease"]
        doc["oauth"].update(accessToken="at-winner", expiresAt=NOW + 3600, refreshToken="rt-winner")
        secrets.publish(doc)

    secrets.before_move = winner_takes_lease
    tokens = make(secrets, upstream, sleep=winner_finishes)
    assert tokens.token_for(LOCATION) == "at-winner"
    assert upstream.calls == []
    assert len(sleeps) == 1


def test_an_expired_lease_is_taken_over() -> None:
    secrets = FakeSecrets(oauth_doc(refreshLease={"owner": "dead", "until": NOW - 1}))
    upstream = FakeUpstream()
    assert make(secrets, upstream).token_for(LOCATION) == "at-1"


def test_waiting_on_a_live_lease_gives_up_after_the_lease_time() -> None:
    secrets = FakeSecrets(oauth_doc(refreshLease={"owner": "slow", "until": NOW + 10_000}))
    clock = FakeClock(NOW)

    def sleep(seconds: float) -> None:
        clock.now += seconds

    with pytest.raises(OAuthError, match="still refreshing"):
        make(secrets, FakeUpstream(), clock, sleep=sleep, poll_seconds=5).token_for(LOCATION)


def test_invalid_grant_releases_the_lease_and_leaks_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    secrets, upstream = FakeSecrets(oauth_doc()), FakeUpstream()
    upstream.fail_with = (400, {"error": "invalid_grant", "error_description": "bad"})
    tokens = make(secrets, upstream)
    with caplog.at_level(logging.DEBUG), pytest.raises(TokenUnavailable) as raised:
        tokens.token_for(LOCATION)
    assert "invalid_grant" in str(raised.value) and "re-authorise" in str(raised.value)
    _, saved = secrets.current()
    assert "refreshLease" not in saved["oauth"]
    assert saved["oauth"]["refreshToken"] == "rt-0"
    for text in (str(raised.value), caplog.text, repr(tokens)):
        assert "csecret" not in text and "rt-0" not in text


def test_upstream_5xx_and_network_errors_are_token_unavailable() -> None:
    secrets, upstream = FakeSecrets(oauth_doc()), FakeUpstream()
    upstream.fail_with = (503, {"message": "down"})
    with pytest.raises(OAuthError, match="HTTP 503"):
        make(secrets, upstream).token_for(LOCATION)


def test_a_token_for_another_location_is_refused() -> None:
    tokens = make(FakeSecrets(oauth_doc()), FakeUpstream())
    with pytest.raises(OAuthError, match="another location"):
        tokens.token_for("loc_other")


def test_invalidate_forces_one_refresh_then_waits_the_interval() -> None:
    secrets = FakeSecrets(oauth_doc(accessToken="at-stored", expiresAt=NOW + 3600))
    upstream, clock = FakeUpstream(), FakeClock(NOW)
    tokens = make(secrets, upstream, clock)
    assert tokens.token_for(LOCATION) == "at-stored"
    tokens.invalidate(LOCATION)
    assert tokens.token_for(LOCATION) == "at-1"
    tokens.invalidate(LOCATION)
    assert tokens.token_for(LOCATION) == "at-1"  # no refresh storm on a revoked app
    clock.now += 301
    tokens.invalidate(LOCATION)
    assert tokens.token_for(LOCATION) == "at-2"


def test_invalidate_uses_a_token_another_container_already_refreshed() -> None:
    secrets = FakeSecrets(oauth_doc(accessToken="at-old", expiresAt=NOW + 3600))
    upstream = FakeUpstream()
    tokens = make(secrets, upstream)
    tokens.token_for(LOCATION)
    _, doc = secrets.current()
    doc["oauth"].update(accessToken="at-new", refreshToken="rt-new")
    secrets.publish(doc)
    tokens.invalidate(LOCATION)
    assert tokens.token_for(LOCATION) == "at-new"
    assert upstream.calls == []


def test_threads_of_one_container_refresh_once() -> None:
    secrets, upstream = FakeSecrets(oauth_doc()), FakeUpstream()
    tokens = make(secrets, upstream)
    with ThreadPoolExecutor(16) as pool:
        results = set(pool.map(lambda _: tokens.token_for(LOCATION), range(64)))
    assert results == {"at-1"} and upstream.refreshes == 1


def test_independent_instances_racing_refresh_once() -> None:
    secrets, upstream = FakeSecrets(oauth_doc()), FakeUpstream()
    fleet = [make(secrets, upstream, sleep=lambda _: None) for _ in range(8)]
    barrier = threading.Barrier(len(fleet))

    def run(tokens: OAuthTokens) -> str:
        barrier.wait()
        return tokens.token_for(LOCATION)

    with ThreadPoolExecutor(len(fleet)) as pool:
        results = set(pool.map(run, fleet))
    assert results == {"at-1"}
    assert (upstream.refreshes, upstream.reuses) == (1, 0)


def test_company_tokens_yield_cached_location_tokens() -> None:
    doc = oauth_doc(userType="Company", companyId="co_1")
    del doc["oauth"]["locationId"]
    secrets, upstream = FakeSecrets(doc), FakeUpstream()
    tokens = make(secrets, upstream)
    first = tokens.token_for("loc_a")
    assert first.startswith("lt-loc_a")
    assert tokens.token_for("loc_a") == first
    second = tokens.token_for("loc_b")
    assert second.startswith("lt-loc_b")
    exchanges = [(data, headers) for path, data, headers in upstream.calls if path == "/oauth/locationToken"]
    assert [data for data, _ in exchanges] == [
        {"companyId": "co_1", "locationId": "loc_a"},
        {"companyId": "co_1", "locationId": "loc_b"},
    ]
    assert all(h["Authorization"] == "Bearer at-1" for _, h in exchanges)
    assert token_calls(upstream)[0]["user_type"] == "Company"
    tokens.invalidate("loc_a")
    assert tokens.token_for("loc_a") != first
    assert tokens.token_for("loc_b") == second
    assert upstream.refreshes == 1


def test_company_location_token_retries_once_with_a_fresh_agency_token() -> None:
    doc = oauth_doc(userType="Company", companyId="co_1", accessToken="at-revoked", expiresAt=NOW + 3600)
    secrets, upstream = FakeSecrets(doc), FakeUpstream()
    assert make(secrets, upstream).token_for("loc_a").startswith("lt-loc_a")
    assert upstream.refreshes == 1


def test_company_without_company_id_is_refused() -> None:
    doc = oauth_doc(userType="Company")
    with pytest.raises(OAuthError, match="companyId"):
        make(FakeSecrets(doc), FakeUpstream()).token_for("loc_a")


def test_non_oauth_secret_is_refused() -> None:
    with pytest.raises(OAuthError, match="no oauth"):
        make(FakeSecrets({"default": "t"}), FakeUpstream()).token_for(LOCATION)


# ----- failure, deadlines, storms ----------------------------------------------------------------


def test_a_throttled_write_back_keeps_the_grant_alive() -> None:
    secrets, upstream, clock = FakeSecrets(oauth_doc()), FakeUpstream(expires_in=3600), FakeClock(NOW)
    secrets.throttled_puts = {2}  # the lease is written; saving the rotated tokens is throttled
    counted: list[str] = []
    tokens = make(secrets, upstream, clock, count=counted.append)
    assert tokens.token_for(LOCATION) == "at-1"  # the rotated grant still serves this container
    assert counted == [WRITE_BACK_FAILED]
    assert secrets.current()[1]["oauth"]["refreshToken"] == "rt-0"  # not saved yet
    assert tokens.token_for(LOCATION) == "at-1"  # within the backoff: no second write yet
    assert secrets.puts == 2
    clock.now += 2  # past the backoff: the next lookup saves it
    assert tokens.token_for(LOCATION) == "at-1"
    saved = secrets.current()[1]["oauth"]
    assert saved["refreshToken"] == "rt-1" and "refreshLease" not in saved
    clock.now += 3600  # another container, after expiry, refreshes with the saved token
    assert make(secrets, upstream, clock).token_for(LOCATION) == "at-2"
    assert (upstream.refreshes, upstream.reuses) == (2, 0)
    assert counted == [WRITE_BACK_FAILED]


def test_an_unsaved_rotation_lands_on_top_of_a_taken_over_lease() -> None:
    secrets, upstream, clock = FakeSecrets(oauth_doc()), FakeUpstream(), FakeClock(NOW)
    secrets.throttled_puts = {2}
    tokens = make(secrets, upstream, clock)
    tokens.token_for(LOCATION)
    _, doc = secrets.current()  # someone takes over the (expired) lease but has not spent yet
    doc["oauth"]["refreshLease"] = {"owner": "other", "until": NOW + 120}
    secrets.publish(doc)
    clock.now += 2
    tokens.token_for(LOCATION)
    assert secrets.current()[1]["oauth"]["refreshToken"] == "rt-1"


def test_a_stuck_lease_respects_the_batch_deadline() -> None:
    secrets = FakeSecrets(oauth_doc(refreshLease={"owner": "stuck", "until": NOW + 10_000}))
    clock = FakeClock(NOW)

    def sleep(seconds: float) -> None:
        clock.now += seconds

    tokens = make(secrets, FakeUpstream(), clock, sleep=sleep, poll_seconds=0.25)
    with pytest.raises(OAuthError, match="batch deadline"):
        tokens.token_for(LOCATION, deadline=NOW + 2)
    assert clock.now <= NOW + 2  # not the 60 s lease time


def test_no_refresh_starts_without_time_for_the_whole_call() -> None:
    secrets, upstream = FakeSecrets(oauth_doc()), FakeUpstream()
    with pytest.raises(OAuthError, match="too little time"):
        make(secrets, upstream).token_for(LOCATION, deadline=NOW + 5)
    assert upstream.calls == [] and secrets.puts == 0  # the refresh token was not spent


def test_forced_refreshes_are_rate_limited_across_containers() -> None:
    secrets = FakeSecrets(oauth_doc(accessToken="at-stored", expiresAt=NOW + 3600))
    upstream, clock = FakeUpstream(), FakeClock(NOW)
    first, second = make(secrets, upstream, clock), make(secrets, upstream, clock)
    assert first.token_for(LOCATION) == second.token_for(LOCATION) == "at-stored"
    first.invalidate(LOCATION)
    assert first.token_for(LOCATION) == "at-1"
    second.invalidate(LOCATION)
    assert second.token_for(LOCATION) == "at-1"  # another container refreshed: use its token
    puts = secrets.puts
    second.invalidate(LOCATION)  # upstream refuses the fresh token too (e.g. a revoked app)
    clock.now += 10
    assert second.token_for(LOCATION) == "at-1"  # the secret was refreshed 10 s ago: no storm
    assert upstream.refreshes == 1 and secrets.puts == puts
    clock.now += 300
    second.invalidate(LOCATION)
    assert second.token_for(LOCATION) == "at-2"


@pytest.mark.parametrize("bad", ["at-1\n", " at-1", "at 1", "at-1\x00", "at-\u00e9", ""])
def test_a_malformed_access_token_is_refused_when_read(bad: str) -> None:
    doc = oauth_doc(accessToken=bad, expiresAt=NOW + 3600, issuedAt=NOW)
    tokens = make(FakeSecrets(doc), FakeUpstream())
    if bad == "":
        assert tokens.token_for(LOCATION) == "at-1"  # missing: refreshed, not refused
        return
    with pytest.raises(TokenUnavailable, match="HTTP header") as raised:
        tokens.token_for(LOCATION)
    assert bad not in str(raised.value) and bad.strip() not in str(raised.value)


def test_a_malformed_refreshed_token_is_refused() -> None:
    secrets, upstream = FakeSecrets(oauth_doc()), FakeUpstream()
    original = upstream.post

    def post(url: str, data: dict[str, str], headers: dict[str, str], **kw: Any) -> FakeResponse:
        response = original(url, data, headers, **kw)
        response._payload = {**response._payload, "access_token": "at-1\r\nX-Injected: 1"}
        return response

    upstream.post = post  # type: ignore[method-assign]
    with pytest.raises(TokenUnavailable) as raised:
        make(secrets, upstream).token_for(LOCATION)
    assert "Injected" not in str(raised.value)
    assert secrets.current()[1]["oauth"]["refreshToken"] == "rt-1"  # spent, so saved regardless


def test_secret_holders_keep_secrets_out_of_repr() -> None:
    assert "s3cr3t" not in repr(_Token("s3cr3t", 1.0, 0.0))
    snapshot = Snapshot("v1", oauth_doc(accessToken="s3cr3t"))
    assert "s3cr3t" not in repr(snapshot) and "csecret" not in repr(snapshot)


def test_a_secret_the_enricher_may_not_write_says_what_to_check() -> None:
    secrets, upstream = FakeSecrets(oauth_doc()), FakeUpstream()
    secrets.throttled_puts = {1}  # the lease cannot be written (AccessDenied on AWS)
    with pytest.raises(OAuthError, match="PowerLeadsTokenSecretIsOAuthApp=true"):
        make(secrets, upstream).token_for(LOCATION)
    assert upstream.calls == []  # nothing was spent
