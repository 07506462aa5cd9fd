"""PowerLeadsClient with a fake session and a fake clock: every retry rule, deterministically."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from appointment_enricher.enrich.service import Stats
from appointment_enricher.powerleads.client import (
    AppointmentNotFound,
    InvalidUpstreamBody,
    PowerLeadsClient,
    RateLimitGate,
    RetryPolicy,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
    pooled_session,
    retry_after_seconds,
)
from appointment_enricher.powerleads.tokens import StaticTokens
from tests.fakes import FakeClock

TOKEN = "tok-SECRET-123"
EVENT = {"event": {"id": "abc"}}


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = (body if isinstance(body, bytes) else json.dumps(body).encode()) if body is not None else b""
    r.headers.update(headers or {})
    return r


class FakeSession:
    """Answers from a script; an Exception instance in the script is raised instead."""

    def __init__(self, clock: FakeClock, script: list[Any], elapsed: float = 0.0) -> None:
        self.clock = clock
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []
        self.elapsed = elapsed

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        self.calls.append({"url": url, "at": self.clock.now, **kwargs})
        self.clock.now += self.elapsed
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


class Tokens(StaticTokens):
    def __init__(self) -> None:
        super().__init__(TOKEN)
        self.invalidated = 0

    def invalidate(self, location_id: str) -> None:
        self.invalidated += 1


def make(
    script: list[Any],
    *,
    rng: Callable[[], float] = lambda: 1.0,
    retry: RetryPolicy | None = None,
    stats: Stats | None = None,
    elapsed: float = 0.0,
) -> tuple[PowerLeadsClient, FakeSession, FakeClock, Tokens]:
    clock = FakeClock()
    session = FakeSession(clock, script, elapsed)
    tokens = Tokens()

    class Policy(RetryPolicy):
        def backoff(self, attempt: int, rng_: Callable[[], float] = rng) -> float:
            return super().backoff(attempt, rng_)

    base = retry or RetryPolicy(base_delay=0.1, max_delay=1.0, max_attempts=6)
    client = PowerLeadsClient(
        "https://pl.example/",
        tokens,
        session=session,  # type: ignore[arg-type]
        retry=Policy(base.base_delay, base.max_delay, base.max_attempts),
        sleep=clock.sleep,
        monotonic=clock,
        observe=stats.upstream if stats else None,
        timeout=(3.0, 10.0),
    )
    return client, session, clock, tokens


def far(clock: FakeClock) -> float:
    return clock.now + 1000


def test_success_sends_contract_headers_and_path() -> None:
    client, session, clock, _ = make([response(200, EVENT)])
    assert client.get_appointment("abc", "loc1", deadline=far(clock)) == EVENT
    call = session.calls[0]
    assert call["url"] == "https://pl.example/calendars/events/appointments/abc"
    assert call["headers"] == {
        "Authorization": f"Bearer {TOKEN}",
        "Version": "2021-04-15",
        "Accept": "application/json",
    }
    assert call["allow_redirects"] is False


@pytest.mark.parametrize(
    "failure",
    [
        response(500, {"statusCode": 500, "message": "boom"}),
        response(502),
        response(503),
        response(429, {"statusCode": 429, "message": "Too many requests"}),
        requests.ConnectionError("reset"),
        requests.ReadTimeout("slow"),
        requests.ConnectTimeout("no route"),
    ],
    ids=["500", "502", "503", "429", "connection", "read-timeout", "connect-timeout"],
)
def test_transient_failures_are_retried_with_backoff(failure: Any) -> None:
    client, session, clock, _ = make([failure, failure, response(200, EVENT)])
    assert client.get_appointment("abc", "loc1", deadline=far(clock)) == EVENT
    assert len(session.calls) == 3
    # rng=1.0 gives the cap of the full-jitter window: base * 2**attempt
    assert clock.sleeps == pytest.approx([0.2, 0.4])


def test_backoff_is_full_jitter_capped() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    assert policy.backoff(3, lambda: 0.0) == 0.0
    assert policy.backoff(3, lambda: 0.5) == pytest.approx(0.4)
    assert policy.backoff(10, lambda: 1.0) == pytest.approx(1.0)  # capped
    draws = {RetryPolicy().backoff(2) for _ in range(50)}
    assert len(draws) > 40 and all(0 <= d <= 0.8 for d in draws)


def test_retry_after_seconds_is_honoured_over_backoff() -> None:
    client, _, clock, _ = make([response(429, None, {"Retry-After": "7"}), response(200, EVENT)])
    client.get_appointment("abc", "loc1", deadline=far(clock))
    assert clock.sleeps == [7.0]


def test_retry_after_wins_over_rate_limit_window_when_both_are_sent() -> None:
    headers = {"Retry-After": "2", "X-RateLimit-Remaining": "0", "X-RateLimit-Interval-Milliseconds": "10000"}
    client, _, clock, _ = make([response(429, None, headers), response(200, EVENT)])
    client.get_appointment("abc", "loc1", deadline=far(clock))
    assert clock.sleeps == [2.0]


def test_retry_after_http_date_and_garbage() -> None:
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", epoch=1445412470.0) == pytest.approx(10.0)
    assert retry_after_seconds("1.5") == 1.5
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-3") is None
    assert retry_after_seconds(None) is None


def test_429_without_retry_after_waits_the_rate_limit_interval_once() -> None:
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Interval-Milliseconds": "1500"}
    client, _, clock, _ = make([response(429, None, headers), response(200, EVENT)])
    client.get_appointment("abc", "loc1", deadline=far(clock))
    assert clock.sleeps == [1.5]  # max(backoff 0.2, window 1.5), not their sum


def test_remaining_zero_on_success_pauses_the_next_call_for_that_location_only() -> None:
    zero = {"X-RateLimit-Remaining": "0", "X-RateLimit-Interval-Milliseconds": "800"}
    client, session, clock, _ = make([response(200, EVENT, zero), response(200, EVENT), response(200, EVENT)])
    client.get_appointment("abc", "loc1", deadline=far(clock))
    client.get_appointment("abc", "loc2", deadline=far(clock))
    assert clock.sleeps == []
    client.get_appointment("abc", "loc1", deadline=far(clock))
    assert clock.sleeps == [pytest.approx(0.8)]
    assert session.calls[2]["at"] - session.calls[0]["at"] == pytest.approx(0.8)


def test_gate_ignores_unreadable_headers() -> None:
    gate = RateLimitGate(monotonic=lambda: 0.0)
    gate.observe("l", {"X-RateLimit-Remaining": "x", "X-RateLimit-Interval-Milliseconds": "5"})
    gate.observe("l", {"X-RateLimit-Remaining": "3", "X-RateLimit-Interval-Milliseconds": "5000"})
    assert gate.wait_needed("l") == 0.0


def test_retry_budget_is_bounded_by_the_deadline() -> None:
    client, session, clock, _ = make([response(503)] * 6)
    start = clock.now
    with pytest.raises(UpstreamUnavailable, match="retry budget exhausted") as info:
        client.get_appointment("abc", "loc1", deadline=start + 0.5)
    assert info.value.retryable
    assert clock.now <= start + 0.5
    assert len(session.calls) == 2  # 0.2 s fits, the next 0.4 s would not


def test_retry_after_beyond_the_deadline_gives_up_at_once() -> None:
    client, session, clock, _ = make([response(429, None, {"Retry-After": "120"})])
    with pytest.raises(UpstreamUnavailable, match="retry budget exhausted"):
        client.get_appointment("abc", "loc1", deadline=clock.now + 30)
    assert clock.sleeps == [] and len(session.calls) == 1


def test_each_attempt_timeout_is_capped_by_what_is_left() -> None:
    client, session, clock, _ = make([response(200, EVENT)])
    client.get_appointment("abc", "loc1", deadline=clock.now + 2.0)
    assert session.calls[0]["timeout"] == (2.0, 2.0)
    client2, session2, clock2, _ = make([])
    with pytest.raises(UpstreamUnavailable):
        client2.get_appointment("abc", "loc1", deadline=clock2.now - 1)
    assert session2.calls == []


def test_attempts_are_bounded() -> None:
    client, session, clock, _ = make([response(500)] * 3, retry=RetryPolicy(0.01, 0.01, max_attempts=3))
    with pytest.raises(UpstreamUnavailable):
        client.get_appointment("abc", "loc1", deadline=far(clock))
    assert len(session.calls) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_reread_the_token_once_then_fail_retryable_and_are_counted(status: int) -> None:
    stats = Stats()
    body = {"statusCode": status, "message": "Invalid token"}
    client, session, clock, tokens = make([response(status, body), response(status, body)], stats=stats)
    with pytest.raises(UpstreamAuthError) as info:
        client.get_appointment("abc", "loc1", deadline=far(clock))
    assert info.value.retryable
    assert len(session.calls) == 2 and clock.sleeps == []
    assert tokens.invalidated == 2
    assert stats.drain()["UpstreamAuthFailure"] == 2
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
    assert TOKEN not in repr(client.tokens)


def test_auth_failure_then_rotated_token_succeeds() -> None:
    client, _, clock, _ = make([response(401), response(200, EVENT)])
    assert client.get_appointment("abc", "loc1", deadline=far(clock)) == EVENT


@pytest.mark.parametrize("status", [400, 422])
def test_rejections_are_permanent_and_not_retried(status: int) -> None:
    body = {"statusCode": status, "message": ["startTime must be a date", "x"], "error": "Bad Request"}
    client, session, clock, _ = make([response(status, body)])
    with pytest.raises(UpstreamRejected) as info:
        client.get_appointment("abc", "loc1", deadline=far(clock))
    assert not info.value.retryable
    assert "startTime must be a date; x" in str(info.value)
    assert len(session.calls) == 1


def test_404_is_not_found() -> None:
    client, session, clock, _ = make([response(404, {"statusCode": 404, "message": "gone"})])
    with pytest.raises(AppointmentNotFound):
        client.get_appointment("abc", "loc1", deadline=far(clock))
    assert len(session.calls) == 1


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"[1, 2]"])
def test_2xx_body_that_is_not_a_json_object_is_invalid(body: bytes) -> None:
    client, _, clock, _ = make([response(200, body)])
    with pytest.raises(InvalidUpstreamBody):
        client.get_appointment("abc", "loc1", deadline=far(clock))


def test_ids_outside_the_safe_alphabet_are_refused_without_a_request() -> None:
    client, session, clock, _ = make([])
    with pytest.raises(UpstreamRejected):
        client.get_appointment("../admin", "loc1", deadline=far(clock))
    assert session.calls == []


def test_latency_and_429_are_observed() -> None:
    stats = Stats()
    client, _, clock, _ = make([response(429), response(200, EVENT)], stats=stats, elapsed=0.25)
    client.get_appointment("abc", "loc1", deadline=far(clock))
    counts = stats.drain()
    assert counts["Upstream429"] == 1 and counts["UpstreamCalls"] == 2
    assert stats.drain_latencies() == [pytest.approx(250.0)] * 2


def test_default_session_pool_fits_the_workers() -> None:
    client = PowerLeadsClient("https://pl.example", StaticTokens("t"), pool_size=12)
    adapter = client.session.get_adapter("https://pl.example/x")
    assert adapter._pool_maxsize == 12  # type: ignore[attr-defined]
    assert adapter.max_retries.total == 0  # type: ignore[attr-defined]


def test_the_token_lookup_gets_the_same_deadline() -> None:
    seen: list[float | None] = []

    class Recording(Tokens):
        def token_for(self, location_id: str, *, deadline: float | None = None) -> str:
            seen.append(deadline)
            return TOKEN

    client, _, clock, _ = make([response(200, EVENT)])
    client.tokens = Recording()
    client.get_appointment("abc", "loc1", deadline=far(clock))
    assert seen == [far(clock)]


@pytest.mark.parametrize("outcome", ["answered", "timed out"])
def test_an_own_share_request_counts_from_when_it_was_answered(outcome: str) -> None:
    """The client settles the budget right after every request, whatever its outcome: the
    container's own share then counts the request from its answer (budget/spend.py)."""
    from appointment_enricher.budget.memory import MemoryBudget  # noqa: PLC0415
    from appointment_enricher.budget.spend import Spender  # noqa: PLC0415

    answer = response(200, EVENT) if outcome == "answered" else requests.ReadTimeout("slow")
    client, session, clock, _ = make([answer], elapsed=4.0, retry=RetryPolicy(max_attempts=1))
    client.budget = Spender(MemoryBudget(), share=1, monotonic=clock, epoch=clock, sleep=clock.sleep)
    granted = clock.now
    try:
        client.get_appointment("abc", "loc1", deadline=far(clock))
    except UpstreamUnavailable:
        assert outcome == "timed out"
    assert session.calls[0]["at"] == granted
    assert client.budget.own_share.times("loc1") == [granted + 4.0]  # stamped at the answer


def test_the_session_never_reads_netrc_and_keeps_the_bearer_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ~/.netrc entry for the API's host would otherwise replace the token (requests consults
    it for every request without auth of its own)."""
    (tmp_path / ".netrc").write_text("machine services.leadconnectorhq.com login someone password pw\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    url = "https://services.leadconnectorhq.com/calendars/events/appointments/A1"
    plain = requests.Session().prepare_request(
        requests.Request("GET", url, headers={"Authorization": "Bearer tok"})
    )
    assert plain.headers["Authorization"].startswith("Basic ")  # what the fixture shows
    prepared = pooled_session().prepare_request(
        requests.Request("GET", url, headers={"Authorization": "Bearer tok"})
    )
    assert prepared.headers["Authorization"] == "Bearer tok"


PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)
API_URL = "https://services.leadconnectorhq.com/calendars/events/appointments/A1"


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_without_a_proxy_the_session_reads_the_environment_once_not_per_request(
    no_proxy_environment: pytest.MonkeyPatch,
) -> None:
    """requests scans os.environ twice per request for proxies when it trusts the environment."""
    no_proxy_environment.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bundle.pem")
    session = pooled_session()

    def scanned(*_: Any, **__: Any) -> dict[str, str]:
        raise AssertionError("the environment was read for a request")

    no_proxy_environment.setattr(requests.sessions, "get_environ_proxies", scanned)
    settings = session.merge_environment_settings(API_URL, {}, None, None, None)
    assert settings["proxies"] == {}
    assert settings["verify"] == "/etc/ssl/bundle.pem"  # the CA bundle still holds, read at init


def test_with_a_proxy_requests_keeps_its_per_request_rules(no_proxy_environment: pytest.MonkeyPatch) -> None:
    no_proxy_environment.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    no_proxy_environment.setenv("NO_PROXY", "bypassed.example")
    session = pooled_session()
    proxied = session.merge_environment_settings(API_URL, {}, None, None, None)
    assert proxied["proxies"]["https"] == "http://proxy.internal:3128"
    bypassed = session.merge_environment_settings("https://bypassed.example/x", {}, None, None, None)
    assert "https" not in bypassed["proxies"]
