"""PowerLeadsClient over real HTTP against the sandbox PowerLeads API with injected faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from appointment_enricher.enrich.service import Stats
from appointment_enricher.powerleads.client import (
    AppointmentNotFound,
    InvalidUpstreamBody,
    PowerLeadsClient,
    RetryPolicy,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from appointment_enricher.powerleads.tokens import StaticTokens
from dev.fakes.sandbox import DEFAULT_TOKEN, Fault, SandboxServer

pytestmark = pytest.mark.integration

SEED = "ocQHyuzHvysMo5N5VsXc"
LOCATION = "0007BWpSzSwfiuSl0tR2"
INTERVAL_MS = 300
PATH = "/calendars/events/appointments/"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(rate_limit_burst=100, rate_limit_interval_ms=INTERVAL_MS) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(server: SandboxServer) -> SandboxServer:
    server.reset()
    return server


class Sleeps:
    def __init__(self) -> None:
        self.values: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.values.append(seconds)
        time.sleep(seconds)


def client(
    sandbox: SandboxServer, token: str = DEFAULT_TOKEN, stats: Stats | None = None, **kw: Any
) -> tuple[PowerLeadsClient, Sleeps]:
    sleeps = Sleeps()
    kw.setdefault("retry", RetryPolicy(base_delay=0.02, max_delay=0.1, max_attempts=6))
    kw.setdefault("timeout", (0.5, 0.5))
    return (
        PowerLeadsClient(
            sandbox.url, StaticTokens(token), sleep=sleeps, observe=stats.upstream if stats else None, **kw
        ),
        sleeps,
    )


def soon(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def statuses(sandbox: SandboxServer) -> list[int | None]:
    return [r["status"] for r in sandbox.requests_log() if r["path"].startswith(PATH)]


def test_fetches_the_appointment_with_contract_headers(sandbox: SandboxServer) -> None:
    c, _ = client(sandbox)
    assert c.get_appointment(SEED, LOCATION, deadline=soon())["event"]["id"] == SEED
    (entry,) = sandbox.requests_log()
    assert entry["headers"]["Version"] == "2021-04-15"
    assert entry["headers"]["Authorization"] == "Bearer ***"


def test_a_5xx_burst_is_retried_until_it_passes(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.error(500), Fault.error(502), Fault.error(503)])
    stats = Stats()
    c, sleeps = client(sandbox, stats=stats)
    assert c.get_appointment(SEED, LOCATION, deadline=soon())["event"]["id"] == SEED
    assert statuses(sandbox) == [500, 502, 503, 200]
    assert len(sleeps.values) == 3 and all(0 <= s <= 0.1 for s in sleeps.values)
    assert stats.drain()["UpstreamCalls"] == 4 and len(stats.drain_latencies()) == 4


def test_429_with_retry_after_waits_that_long(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.error(429, headers={"Retry-After": "1"})])
    stats = Stats()
    c, sleeps = client(sandbox, stats=stats)
    started = time.monotonic()
    c.get_appointment(SEED, LOCATION, deadline=soon())
    assert time.monotonic() - started >= 1.0
    assert sleeps.values == [1.0]
    assert statuses(sandbox) == [429, 200]
    assert stats.drain()["Upstream429"] == 1


def test_429_without_retry_after_waits_the_rate_limit_interval(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.error(429)])  # the sandbox answers Remaining: 0, Interval: 300
    c, sleeps = client(sandbox)
    c.get_appointment(SEED, LOCATION, deadline=soon())
    log = sandbox.requests_log()
    assert [r["status"] for r in log] == [429, 200]
    assert log[1]["time"] - log[0]["time"] >= INTERVAL_MS / 1000 * 0.9
    assert sleeps.values == [pytest.approx(INTERVAL_MS / 1000, abs=0.02)]


def test_remaining_zero_pauses_the_next_request_by_the_interval(sandbox: SandboxServer) -> None:
    sandbox.set_rate_limit_remaining_zero(interval_ms=400)
    c, _ = client(sandbox)
    c.get_appointment(SEED, LOCATION, deadline=soon())
    c.get_appointment(SEED, LOCATION, deadline=soon())
    first, second = sandbox.requests_log()
    assert second["time"] - first["time"] >= 0.38


def test_a_real_burst_over_the_limit_is_absorbed(server: SandboxServer) -> None:
    with SandboxServer(rate_limit_burst=3, rate_limit_interval_ms=250) as tight:
        c, _ = client(tight)
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(lambda _: c.get_appointment(SEED, LOCATION, deadline=soon()), range(9)))
        assert all(r["event"]["id"] == SEED for r in results)
        assert statuses(tight).count(200) == 9


def test_a_hanging_upstream_times_out_and_is_retried(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.hang(30.0)])
    c, _ = client(sandbox, timeout=(0.5, 0.3))
    started = time.monotonic()
    assert c.get_appointment(SEED, LOCATION, deadline=soon(20))["event"]["id"] == SEED
    assert time.monotonic() - started < 10  # the 0.3 s read timeout and a retry, not the 30 s hang
    assert sandbox.count(PATH) == 2


def test_a_dropped_connection_is_retried(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.drop(), Fault.drop()])
    c, _ = client(sandbox)
    assert c.get_appointment(SEED, LOCATION, deadline=soon())["event"]["id"] == SEED
    assert sandbox.count(PATH) == 3


def test_total_retry_time_is_bounded_by_the_deadline(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.error(503)] * 50)
    c, _ = client(sandbox, retry=RetryPolicy(base_delay=0.2, max_delay=0.4, max_attempts=50))
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="retry budget exhausted") as info:
        c.get_appointment(SEED, LOCATION, deadline=started + 1.0)
    assert info.value.retryable
    assert time.monotonic() - started < 5  # 50 attempts would take ~15 s
    assert 1 < sandbox.count(PATH) < 50  # stopped on the deadline, not the attempt limit


def test_a_hang_past_the_deadline_does_not_outlive_it(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.hang(30.0)])
    c, _ = client(sandbox, timeout=(5.0, 5.0))
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable):
        c.get_appointment(SEED, LOCATION, deadline=started + 0.6)
    assert time.monotonic() - started < 4  # the deadline, not the 5 s read timeout or the hang


def test_a_bad_token_is_retryable_counted_and_never_sent_to_logs(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    stats = Stats()
    c, _ = client(sandbox, token="wrong-TOKEN-value", stats=stats)
    with pytest.raises(UpstreamAuthError) as info:
        c.get_appointment(SEED, LOCATION, deadline=soon())
    assert info.value.retryable and info.value.status == 401
    assert statuses(sandbox) == [401, 401]
    assert stats.drain()["UpstreamAuthFailure"] == 2
    assert "wrong-TOKEN-value" not in str(info.value) + repr(info.value) + caplog.text


def test_403_is_an_auth_failure(sandbox: SandboxServer) -> None:
    sandbox.add_token("other-loc-token", "ve9EPM428h8vShlRW1KT")
    c, _ = client(sandbox, token="other-loc-token")
    with pytest.raises(UpstreamAuthError) as info:
        c.get_appointment(SEED, LOCATION, deadline=soon())
    assert info.value.status == 403


@pytest.mark.parametrize("status", [400, 422])
def test_400_and_422_are_permanent(sandbox: SandboxServer, status: int) -> None:
    sandbox.queue_faults([Fault.error(status)])
    c, _ = client(sandbox)
    with pytest.raises(UpstreamRejected) as info:
        c.get_appointment(SEED, LOCATION, deadline=soon())
    assert not info.value.retryable and sandbox.count(PATH) == 1


def test_404(sandbox: SandboxServer) -> None:
    c, _ = client(sandbox)
    with pytest.raises(AppointmentNotFound):
        c.get_appointment("NoSuchAppointment1", LOCATION, deadline=soon())


def test_a_2xx_body_that_is_not_json_is_invalid(sandbox: SandboxServer) -> None:
    sandbox.queue_faults([Fault.invalid_body("<html>maintenance</html>")])
    c, _ = client(sandbox)
    with pytest.raises(InvalidUpstreamBody):
        c.get_appointment(SEED, LOCATION, deadline=soon())


@pytest.mark.parametrize(("pool_size", "discards"), [(8, False), (2, True)])
def test_worker_threads_share_one_session_whose_pool_fits_them(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture, pool_size: int, discards: bool
) -> None:
    sandbox.set_latency(300)
    c, _ = client(sandbox, pool_size=pool_size)
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="urllib3.connectionpool"), ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: c.get_appointment(SEED, LOCATION, deadline=soon(20)), range(16)))
    assert time.monotonic() - started < 3.0  # 16 x 300 ms over 8 connections: 0.6 s; one at a time 4.8 s
    # urllib3 throws connections away (no keep-alive reuse) when the pool is smaller than the workers
    assert ("Connection pool is full" in caplog.text) is discards
