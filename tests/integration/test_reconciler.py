"""ReconcilerFunction over the wire: the handler (``functions/reconciler/app.py``) with boto3 ->
moto server (ingest queue, ledger table) and the PowerLeads client -> the sandbox API."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from appointment_enricher.config import ReconcilerSettings
from appointment_enricher.powerleads.client import PowerLeadsClient
from appointment_enricher.reconcile.run import Reconciler
from appointment_enricher.reconcile.wiring import build_reconciler
from appointment_enricher.wire import IngestMessage, reconcile_dedupe_id, rfc3339
from dev.fakes.lambda_context import make_context
from dev.fakes.lambda_loader import Handler, load_function_module, load_handler
from dev.fakes.sandbox import DEFAULT_TOKEN, Fault, SandboxServer
from dev.stack.awslocal import LocalStack
from dev.stack.reconcile_local import recent_event, reconciler_env, seed_ledger
from tests.conftest import drain
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration

LOC = "ReconLocA001"
OTHER = "ReconLocB002"
EARLIER = "2026-01-01T00:00:00.000Z"


@pytest.fixture
def recon_env(
    stack_env: dict[str, str], local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    extra = {
        **reconciler_env(stack_env, local_stack.ledger_table_name),
        "RECONCILE_DEADLINE_MARGIN_SECONDS": "2",
    }
    extra.pop("RECONCILE_LOCATION_IDS")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return {**stack_env, **extra}


@pytest.fixture
def table(recon_env: dict[str, str]) -> str:
    """The ledger table (the stack's own ledger table when it has one)."""
    return recon_env["LEDGER_TABLE_NAME"]


@pytest.fixture
def reconcile(recon_env: dict[str, str]) -> Handler:
    return load_handler("reconciler")


@pytest.fixture
def placed(sandbox: SandboxServer) -> Iterator[list[str]]:
    """Appointments this test put in the (session-wide) sandbox, deleted afterwards."""
    ids: list[str] = []
    yield ids
    for appointment_id in ids:
        sandbox.delete_appointment(appointment_id)
    with sandbox._lock:  # tombstones of this test must not be listed in the next one
        for appointment_id in ids:
            sandbox._tombstones.pop(appointment_id, None)


def put(sandbox: SandboxServer, placed: list[str], event: dict[str, Any]) -> dict[str, Any]:
    sandbox.put_appointment(event)
    placed.append(event["id"])
    return event


def invoke(handler: Handler, event: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    result: dict[str, Any] = handler(event, make_context("ReconcilerFunction", timeout_seconds=timeout))
    json.dumps(result)  # the contract: JSON-serialisable
    return result


def messages(local_stack: LocalStack) -> dict[str, dict[str, Any]]:
    """Ingest messages by group id (= appointment id), with their decoded webhook bodies."""
    found = {}
    for raw in drain(local_stack, local_stack.ingest_queue_url, wait_seconds=0):
        message = IngestMessage.decode(raw["Body"])
        found[raw["Attributes"]["MessageGroupId"]] = {
            "message": message,
            "webhook": json.loads(message.body),
            "dedupe": raw["Attributes"]["MessageDeduplicationId"],
            "attributes": {k: v["StringValue"] for k, v in raw["MessageAttributes"].items()},
        }
    return found


def test_recovers_what_no_webhook_delivered_and_a_second_run_enqueues_nothing(
    reconcile: Handler, sandbox: SandboxServer, local_stack: LocalStack, placed: list[str], table: str
) -> None:
    ddb = local_stack.client("dynamodb")
    never = put(sandbox, placed, recent_event("ReconNever01", LOC))
    stale = put(sandbox, placed, recent_event("ReconStale01", LOC, "ReconCal002"))
    current = put(sandbox, placed, recent_event("ReconCurrent1", LOC))
    gone = put(sandbox, placed, recent_event("ReconGone001", LOC))
    put(sandbox, placed, recent_event("ReconPast0001", LOC, start_in=timedelta(days=-30)))  # outside
    seed_ledger(ddb, table, stale["id"], LOC, EARLIER)
    seed_ledger(ddb, table, current["id"], LOC, current["dateUpdated"])
    seed_ledger(ddb, table, gone["id"], LOC, gone["dateUpdated"])
    sandbox.delete_appointment(gone["id"])  # its AppointmentDelete webhook never came

    summary = invoke(reconcile, {"locationIds": [LOC]})

    assert summary["enqueued"] == 3, summary
    assert summary["recovered"] == {"AppointmentUpdate": 2, "AppointmentDelete": 1}
    assert (summary["locations"], summary["calendars"], summary["errors"]) == (1, 2, 0)
    assert summary["skipped"] == 1 and not summary["stoppedEarly"]
    found = messages(local_stack)
    assert set(found) == {never["id"], stale["id"], gone["id"]}
    for appointment_id, got in found.items():
        assert got["message"].trigger == "reconcile"
        assert got["attributes"]["trigger"] == "reconcile"
        assert got["webhook"]["locationId"] == LOC
        assert got["webhook"]["appointment"]["id"] == appointment_id
        assert got["dedupe"] == got["message"].dedupe_id
    assert found[gone["id"]]["webhook"]["type"] == "AppointmentDelete"
    assert found[gone["id"]]["webhook"]["appointment"]["deleted"] is True
    assert found[never["id"]]["dedupe"] == reconcile_dedupe_id(never["id"], never["dateUpdated"])

    # The enricher caught the ledger up (here: seeded as it would write it); nothing is new.
    for event in (never, stale):
        seed_ledger(ddb, table, event["id"], LOC, event["dateUpdated"])
    seed_ledger(ddb, table, gone["id"], LOC, gone["dateUpdated"], deleted=True)
    again = invoke(reconcile, {"locationIds": [LOC]})
    assert again["enqueued"] == 0 and again["skipped"] == 4, again
    assert messages(local_stack) == {}


def test_a_quick_second_run_is_absorbed_by_fifo_deduplication(
    reconcile: Handler, sandbox: SandboxServer, local_stack: LocalStack, placed: list[str]
) -> None:
    put(sandbox, placed, recent_event("ReconTwice01", LOC))
    assert invoke(reconcile, {"locationIds": [LOC]})["enqueued"] == 1
    assert invoke(reconcile, {"locationIds": [LOC]})["enqueued"] == 1  # the ledger has not caught up
    assert list(messages(local_stack)) == ["ReconTwice01"]  # same dedupe id: one message


def test_sweeps_configured_and_ledger_known_locations_without_an_event(
    recon_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    sandbox: SandboxServer,
    local_stack: LocalStack,
    placed: list[str],
    table: str,
) -> None:
    monkeypatch.setenv("RECONCILE_LOCATION_IDS", LOC)
    handler = load_handler("reconciler")
    put(sandbox, placed, recent_event("ReconConfA01", LOC))
    put(sandbox, placed, recent_event("ReconKnownB1", OTHER))
    seed_ledger(local_stack.client("dynamodb"), table, "ReconOldB001", OTHER, EARLIER)
    summary = invoke(handler, {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events"})
    assert summary["locations"] == 2 and summary["enqueued"] == 2, summary
    assert set(messages(local_stack)) == {"ReconConfA01", "ReconKnownB1"}


def test_refuses_an_unsafe_location_id_without_calling_upstream(
    reconcile: Handler, sandbox: SandboxServer
) -> None:
    summary = invoke(reconcile, {"locationIds": [LOC, "../admin"]})
    assert summary["error"] == "invalid_event" and summary["errors"] == 1
    assert sandbox.count("/calendars") == 0


def test_list_requests_carry_auth_version_and_the_documented_query(
    reconcile: Handler, sandbox: SandboxServer, placed: list[str]
) -> None:
    put(sandbox, placed, recent_event("ReconQuery01", LOC))
    before = datetime.now(UTC)
    invoke(reconcile, {"locationIds": [LOC]})
    log = sandbox.requests_log()
    assert [r["path"].split("?")[0] for r in log] == ["/calendars/", "/calendars/events"]
    assert all(r["status"] == 200 for r in log)
    headers = {k.lower(): v for k, v in log[1]["headers"].items()}
    assert headers["version"] == "2021-04-15" and headers["authorization"] == "Bearer ***"
    query = dict(part.split("=") for part in log[1]["path"].split("?")[1].split("&"))
    assert query["locationId"] == LOC and query["calendarId"] == "ReconCal001"
    start, end = int(query["startTime"]), int(query["endTime"])
    now_ms = before.timestamp() * 1000
    assert abs(start - (now_ms - 7 * 86_400_000)) < 60_000
    assert abs(end - (now_ms + 90 * 86_400_000)) < 60_000


def test_honours_429_with_retry_after_and_still_completes(
    reconcile: Handler, sandbox: SandboxServer, local_stack: LocalStack, placed: list[str]
) -> None:
    put(sandbox, placed, recent_event("Recon429A001", LOC))
    sandbox.queue_list_faults([Fault.error(429, headers={"Retry-After": "0.4"}), Fault.error(503)])
    started = time.monotonic()
    summary = invoke(reconcile, {"locationIds": [LOC]})
    assert time.monotonic() - started >= 0.4  # waited as told
    assert summary["enqueued"] == 1 and summary["errors"] == 0
    assert [r["status"] for r in sandbox.requests_log()] == [429, 503, 200, 200]


def test_stops_before_its_deadline_and_the_next_run_resumes_at_the_cursor(
    reconcile: Handler, sandbox: SandboxServer, local_stack: LocalStack, placed: list[str], table: str
) -> None:
    for i in range(8):
        put(sandbox, placed, recent_event(f"ReconSlow{i:03d}", LOC, f"ReconSlowCal{i}"))
    sandbox.set_latency(400)
    # 2 s margin (recon_env) + 3 s request reserve: about 1.5 s of requests at 0.4 s each.
    first = invoke(reconcile, {"locationIds": [LOC]}, timeout=6.5)
    assert first["stoppedEarly"] and first["incomplete"] == [LOC], first
    assert 1 <= first["enqueued"] < 8
    cursor = local_stack.client("dynamodb").get_item(TableName=table, Key={"id": {"S": f"cursor#{LOC}"}})[
        "Item"
    ]
    resume_at = cursor["calendarId"]["S"]
    assert resume_at == f"ReconSlowCal{first['enqueued']}"
    sandbox.set_latency(0)
    sandbox.clear_log()
    second = invoke(reconcile, {"locationIds": [LOC]})
    assert not second["stoppedEarly"] and second["incomplete"] == []
    assert first["enqueued"] + second["enqueued"] == 8
    first_events = next(
        r["path"] for r in sandbox.requests_log() if r["path"].startswith("/calendars/events")
    )
    assert f"calendarId={resume_at}&" in first_events  # resumed, not restarted
    done = local_stack.client("dynamodb").get_item(TableName=table, Key={"id": {"S": f"cursor#{LOC}"}})[
        "Item"
    ]
    assert "calendarId" not in done and "completedAt" in done


# ---- pacing against a sandbox with a short rate-limit window ------------------------------


@pytest.fixture
def fast_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(
        tokens={DEFAULT_TOKEN: None}, rate_limit_burst=100, rate_limit_interval_ms=1000
    ) as server:
        yield server


def on_clock(reconciler: Reconciler, clock: FakeClock) -> None:
    """The reconciler's pacer, client, fleet budget and sleeps on a fake clock that moves only when
    it sleeps (the budget's epoch too: its bucket is in epoch seconds, here the clock's)."""
    client = cast(PowerLeadsClient, reconciler.lister)
    reconciler.monotonic, reconciler.sleep, reconciler.pacer.monotonic = clock, clock.sleep, clock
    client.monotonic, client.sleep, client.gate.monotonic = clock, clock.sleep, clock
    assert client.budget is not None, "the reconciler spends from the fleet budget"
    client.budget.epoch = client.budget.monotonic = clock
    client.budget.sleep = clock.sleep


def window_on_clock(sandbox: SandboxServer, clock: FakeClock) -> list[float]:
    """The sandbox's rate window on ``clock``; returns the clock's reading at each counted request."""
    limiter, stamps = sandbox._limiter, []
    limiter.monotonic, hit = clock, limiter.hit

    def counted(key: str) -> tuple[bool, int, int]:
        stamps.append(clock())
        return hit(key)

    limiter.hit = counted  # type: ignore[method-assign]
    return stamps


def test_keeps_to_its_share_and_yields_to_a_busy_enricher(
    recon_env: dict[str, str], fast_sandbox: SandboxServer, local_stack: LocalStack
) -> None:
    for i in range(30):
        fast_sandbox.put_appointment(recent_event(f"ReconPace{i:03d}", LOC, f"ReconPaceCal{i:02d}"))
    env = {**recon_env, "POWERLEADS_API_BASE_URL": fast_sandbox.url, "RECONCILE_REQUESTS_PER_10S": "5"}
    clock = FakeClock()
    stamps = window_on_clock(fast_sandbox, clock)
    reconciler = build_reconciler(ReconcilerSettings.from_env(env))
    reconciler.pacer.interval = 1.0  # the sandbox's window is 1 s here, not 10 s
    on_clock(reconciler, clock)
    summary = reconciler.run([LOC], clock() + 60)
    assert summary["requests"] == 31 and summary["enqueued"] == 30
    assert len(stamps) == 31
    for i, start in enumerate(stamps):
        assert sum(1 for t in stamps[i:] if t < start + 1.0) <= 5  # never over its share
    assert all(r["status"] == 200 for r in fast_sandbox.requests_log())

    # Someone else (the enricher) spends most of the window: the reconciler waits it out.
    fast_sandbox.reset()
    del stamps[:]
    for _ in range(70):
        fast_sandbox._limiter.hit(LOC)
    reconciler = build_reconciler(ReconcilerSettings.from_env(env))
    reconciler.pacer.interval = 1.0
    on_clock(reconciler, clock)
    started = clock()
    reconciler.run([LOC], clock() + 60)
    first, second = stamps[70:72]
    assert second - first >= 1.0, "did not yield after seeing X-RateLimit-Remaining 29 of 100"
    assert clock() - started < 30


def test_the_make_run_schedule_says_what_it_recovered(
    recon_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sandbox: SandboxServer, placed: list[str]
) -> None:
    from dev.stack.reconcile_local import ReconcileLoop  # noqa: PLC0415

    monkeypatch.setenv("RECONCILE_LOCATION_IDS", LOC)
    put(sandbox, placed, recent_event("ReconLoop001", LOC))
    lines: list[str] = []
    loop = ReconcileLoop(load_handler("reconciler"), every=0.2, say=lines.append).start()
    try:
        deadline = time.monotonic() + 20
        while not loop.runs and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        loop.stop()
    assert loop.runs and loop.runs[0]["enqueued"] == 1
    assert "1 recovered (1 AppointmentUpdate)" in lines[0], lines


def test_emits_its_metrics_and_one_summary_log_line(
    recon_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sandbox: SandboxServer,
    placed: list[str],
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    module = load_function_module("reconciler")
    # Powertools keeps metrics in state shared by every Metrics() of the process, and earlier
    # cold starts in this test session ran with metrics disabled (never flushed): start clean.
    module.metrics.clear_metrics()
    # The service's logger is shared too, its stream bound by the first load: listen to it directly.
    module.logger.setLevel("INFO")
    records: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = records.append  # type: ignore[method-assign]
    module.logger.addHandler(listener)
    put(sandbox, placed, recent_event("ReconMetric1", LOC))
    capsys.readouterr()
    invoke(module.lambda_handler, {"locationIds": [LOC]})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (emf,) = [line for line in lines if "_aws" in line]
    names = {m["Name"] for d in emf["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"ReconcileEnqueued", "ReconcileErrors", "ReconcileDuration", "ReconcileRequests"} <= names

    def value(name: str) -> float:
        raw = emf[name]
        return float(raw[0] if isinstance(raw, list) else raw)

    assert value("ReconcileEnqueued") == 1 and value("ReconcileErrors") == 0
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "PowerLeadsEnricher"
    module.logger.removeHandler(listener)
    (summary,) = [vars(r) for r in records if r.getMessage() == "reconcile run"]
    assert summary["enqueued"] == 1 and summary["locationsSwept"] == [LOC]
    logged = json.dumps([vars(r) for r in records], default=str) + json.dumps(lines)
    assert "Bearer" not in logged and DEFAULT_TOKEN not in logged


def test_the_enricher_publishes_the_recovery_and_the_next_run_finds_nothing_new(
    reconcile: Handler, poller: Any, sandbox: SandboxServer, local_stack: LocalStack, placed: list[str]
) -> None:
    """Through the real enricher and its ledger: no hand-seeded catch-up."""
    event = put(sandbox, placed, recent_event("ReconE2E0001", LOC))
    assert invoke(reconcile, {"locationIds": [LOC]})["enqueued"] == 1
    poller.poll_once()
    records = [json.loads(m["Body"]) for m in drain(local_stack, local_stack.enriched_queue_url)]
    (record,) = [r for r in records if r.get("appointmentId") == event["id"]]
    assert record["trigger"] == "reconcile" and record["eventType"] == "AppointmentUpdate"
    assert record["appointment"]["dateUpdated"] == event["dateUpdated"]
    again = invoke(reconcile, {"locationIds": [LOC]})
    assert again["enqueued"] == 0 and again["skipped"] == 1, again


def _queue_webhook(local_stack: LocalStack, event: dict[str, Any]) -> None:
    """What the receiver enqueues for a webhook (group = appointment, dedupe = webhookId)."""
    webhook_id = "wh-" + event["id"]
    body = json.dumps(
        {"type": "AppointmentUpdate", "locationId": LOC, "webhookId": webhook_id, "appointment": event}
    )
    local_stack.client("sqs").send_message(
        QueueUrl=local_stack.ingest_queue_url,
        MessageBody=IngestMessage(body, rfc3339(datetime.now(UTC)), webhook_id).encode(),
        MessageGroupId=event["id"],
        MessageDeduplicationId=webhook_id,
    )


def _drain_enricher(poller: Any) -> None:
    while poller.poll_once():
        pass


def test_a_sweep_during_a_backlog_adds_no_record_and_no_fetch(
    reconcile: Handler, poller: Any, sandbox: SandboxServer, local_stack: LocalStack, placed: list[str]
) -> None:
    """N webhooks queued, the reconciler sweeps first (N reconcile duplicates), the enricher
    drains: N records, N appointment fetches, every reconcile message acknowledged."""
    events = [put(sandbox, placed, recent_event(f"ReconBacklog{i:03d}", LOC)) for i in range(3)]
    for event in events:
        _queue_webhook(local_stack, event)
    sandbox.clear_log()
    assert invoke(reconcile, {"locationIds": [LOC]})["enqueued"] == len(events)
    listings = sandbox.count("/calendars/")
    _drain_enricher(poller)
    records = [json.loads(m["Body"]) for m in drain(local_stack, local_stack.enriched_queue_url)]
    mine = [r for r in records if r.get("appointmentId") in {e["id"] for e in events}]
    assert sorted(r["trigger"] for r in mine) == ["webhook"] * len(events)
    fetches = sandbox.count("/calendars/events/appointments/")
    assert fetches == len(events) and sandbox.count() == listings + fetches
    assert drain(local_stack, local_stack.ingest_queue_url, wait_seconds=0) == []
    assert drain(local_stack, local_stack.ingest_dlq_url, wait_seconds=0) == []
    assert drain(local_stack, local_stack.quarantine_queue_url, wait_seconds=0) == []


def test_a_reconcile_message_newer_than_the_announced_state_is_fetched_and_published(
    reconcile: Handler, poller: Any, sandbox: SandboxServer, local_stack: LocalStack, placed: list[str]
) -> None:
    event = put(
        sandbox, placed, recent_event("ReconNewer0001", LOC, updated=datetime(2026, 1, 2, tzinfo=UTC))
    )
    _queue_webhook(local_stack, event)
    _drain_enricher(poller)
    put(sandbox, placed, {**event, "dateUpdated": "2026-01-03T00:00:00.000Z", "title": "moved"})
    sandbox.clear_log()
    assert invoke(reconcile, {"locationIds": [LOC]})["enqueued"] == 1
    _drain_enricher(poller)
    records = [json.loads(m["Body"]) for m in drain(local_stack, local_stack.enriched_queue_url)]
    mine = [r for r in records if r.get("appointmentId") == event["id"]]
    assert [r["trigger"] for r in mine] == ["webhook", "reconcile"]
    assert mine[-1]["appointment"]["title"] == "moved" and mine[-1]["change"]["kind"] == "updated"
    assert sandbox.count("/calendars/events/appointments/") == 1
