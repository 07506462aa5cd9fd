"""Tenancy binds every function (``WEBHOOK_LOCATION_IDS``, ``WEBHOOK_APP_IDS``), over the wire:
the enricher quarantines a message for a location it does not serve (``ForeignTenant``), the
reconciler never sweeps one (not even those the ledger knows), ``plenrich backfill`` refuses one.
Also the reconciler's window rule: a listing of ``max_events`` events may be cut short, so it is split.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from appointment_enricher.wire import IngestMessage
from dev.fakes.lambda_context import make_context
from dev.fakes.lambda_loader import load_handler
from dev.fakes.sandbox import SandboxServer
from dev.stack.awslocal import LocalStack, aws_base_env
from dev.stack.reconcile_local import recent_event, reconciler_env, seed_ledger
from plenrich.context import Env
from plenrich.main import main
from tests.integration.test_change_tracking import T0, send
from tests.integration.test_enricher_pipeline import Driver, appointment_id, published, put

pytestmark = pytest.mark.integration

SERVED = "0007BWpSzSwfiuSl0tR2"  # the sandbox's seeded location
FOREIGN = "TenantGone0001"
OUR_APP = "app_ours_0001"


@pytest.fixture
def placed_ids(sandbox: SandboxServer) -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    for event_id in ids:
        sandbox.delete_appointment(event_id)
    with sandbox._lock:
        for event_id in ids:
            sandbox._tombstones.pop(event_id, None)


def _enqueued(stack: LocalStack) -> dict[str, dict[str, Any]]:
    found = {}
    for raw in stack.drain(stack.ingest_queue_url, wait_seconds=0):
        webhook = json.loads(IngestMessage.decode(raw["Body"]).body)
        found[raw["Attributes"]["MessageGroupId"]] = webhook
    return found


def test_the_enricher_quarantines_a_message_for_a_location_it_does_not_serve(
    stack_env: dict[str, str],
    local_stack: LocalStack,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBHOOK_LOCATION_IDS", SERVED)
    from dev.fakes.lambda_loader import load_function_module  # noqa: PLC0415 - after the env is set

    driver = Driver(load_function_module("enricher"), local_stack)
    ours, theirs = appointment_id(), appointment_id()
    put(sandbox, ours, dateUpdated=T0)
    send(local_stack, ours, "AppointmentCreate")
    send(local_stack, theirs, "AppointmentCreate", location=FOREIGN)  # e.g. a redrive from before
    driver.run_until_empty()
    (record,) = published(local_stack)
    assert record["appointmentId"] == ours
    (parked,) = local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0)
    attributes = {k: v["StringValue"] for k, v in parked["MessageAttributes"].items()}
    assert attributes["errorType"] == "ForeignTenant" and attributes["appointmentId"] == theirs
    assert sandbox.count("/calendars/events/appointments/" + theirs) == 0  # never fetched


def test_the_enricher_quarantines_a_message_for_an_app_it_does_not_serve(
    stack_env: dict[str, str],
    local_stack: LocalStack,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``WEBHOOK_APP_IDS`` binds the enricher where the message carries ``appId``; a reconcile or
    backfill message carries none and is judged by its location alone."""
    monkeypatch.setenv("WEBHOOK_APP_IDS", OUR_APP)
    monkeypatch.setenv("WEBHOOK_LOCATION_IDS", SERVED)
    from dev.fakes.lambda_loader import load_function_module  # noqa: PLC0415 - after the env is set

    driver = Driver(load_function_module("enricher"), local_stack)
    ours, no_app, theirs = appointment_id(), appointment_id(), appointment_id()
    for event_id in (ours, no_app):
        put(sandbox, event_id, dateUpdated=T0)
    send(local_stack, ours, "AppointmentCreate", app_id=OUR_APP)
    send(local_stack, no_app, "AppointmentCreate")  # e.g. what the reconciler enqueues
    send(local_stack, theirs, "AppointmentCreate", app_id="app_someone_else")
    driver.run_until_empty()
    assert {r["appointmentId"] for r in published(local_stack)} == {ours, no_app}
    (parked,) = local_stack.drain(local_stack.quarantine_queue_url, wait_seconds=0)
    attributes = {k: v["StringValue"] for k, v in parked["MessageAttributes"].items()}
    assert attributes["errorType"] == "ForeignTenant" and attributes["appointmentId"] == theirs
    assert "foreign_app" in attributes["errorMessage"]
    assert sandbox.count("/calendars/events/appointments/" + theirs) == 0  # never fetched


def test_the_reconciler_never_sweeps_a_location_it_does_not_serve(
    stack_env: dict[str, str],
    local_stack: LocalStack,
    sandbox: SandboxServer,
    placed_ids: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra = reconciler_env(stack_env, local_stack.ledger_table_name, SERVED, FOREIGN)
    for name, value in {**extra, "WEBHOOK_LOCATION_IDS": SERVED}.items():
        monkeypatch.setenv(name, value)
    table = {**stack_env, **extra}["LEDGER_TABLE_NAME"]
    ours = recent_event(appointment_id(), SERVED, "TenantCal001")
    theirs = recent_event(appointment_id(), FOREIGN, "TenantCal002")
    for event in (ours, theirs):
        sandbox.put_appointment(event)
        placed_ids.append(event["id"])
    # The ledger knows the foreign location (it was served once).
    seed_ledger(local_stack.client("dynamodb"), table, "TenantOld0001", FOREIGN, "2026-01-01T00:00:00.000Z")
    reconcile = load_handler("reconciler")

    summary = reconcile({}, make_context("ReconcilerFunction", timeout_seconds=60))
    assert summary["errors"] == 0, summary
    found = _enqueued(local_stack)
    assert ours["id"] in found and theirs["id"] not in found
    asked = reconcile({"locationIds": [FOREIGN]}, make_context("ReconcilerFunction", timeout_seconds=60))
    assert asked["locations"] == 0 and _enqueued(local_stack) == {}
    assert not any(FOREIGN in r["path"] for r in sandbox.requests_log())  # never asked about it


@pytest.mark.parametrize(
    ("placed", "splits"),
    [
        (13, True),  # the API cuts its answer at the cap: exactly max_events come back
        (10, True),  # exactly max_events exist: the answer cannot tell, so look closer
        (9, False),  # one under the cap: complete, no split
    ],
)
def test_a_listing_cut_at_max_events_is_split_until_nothing_is_missed(
    placed: int,
    splits: bool,
    stack_env: dict[str, str],
    local_stack: LocalStack,
    sandbox: SandboxServer,
    placed_ids: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The events endpoint documents no paging: an answer of ``RECONCILE_MAX_EVENTS_PER_WINDOW``
    events may be cut short (the sandbox cuts at the same number, silently). Taking such an answer
    as complete (``>`` where ``>=`` is due) would lose every event past the cap for good."""
    location = "TenantDense" + appointment_id()[1:9]
    extra = reconciler_env(stack_env, local_stack.ledger_table_name, location)
    for name, value in {**extra, "RECONCILE_MAX_EVENTS_PER_WINDOW": "10"}.items():
        monkeypatch.setenv(name, value)
    sandbox.set_list_limit(10)
    for n in range(placed):
        event = recent_event(f"{location}{n:02d}", location, "TenantDenseCal", start_in=timedelta(days=1 + n))
        sandbox.put_appointment(event)
        placed_ids.append(event["id"])
    summary = load_handler("reconciler")({}, make_context("ReconcilerFunction", timeout_seconds=60))
    (per,) = [p for p in summary["perLocation"] if p["location_id"] == location]
    assert (per["splits"] > 0) is splits, summary
    assert len([k for k in _enqueued(local_stack) if k.startswith(location)]) == placed


def test_backfill_refuses_a_location_not_served(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in aws_base_env(local_stack.endpoint_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WEBHOOK_LOCATION_IDS", SERVED)
    monkeypatch.setenv("INGEST_QUEUE_URL", local_stack.ingest_queue_url)
    out, err = io.StringIO(), io.StringIO()
    lines = f"{SERVED} TenantAppt0001\n{FOREIGN} TenantAppt0002\n"
    env = Env(stdout=out, stderr=err, stdin=io.StringIO(lines), sleep=lambda _: None, clock=lambda: 0.0)
    code = main(["backfill", "--rate", "4"], env)
    assert code == 1 and "line 2: locationId not served" in err.getvalue()
    queued = _enqueued(local_stack)
    assert set(queued) == {"TenantAppt0001"}
    refused = main(
        ["backfill", "--location", FOREIGN], Env(stdout=out, stderr=err, stdin=io.StringIO("X1\n"))
    )
    assert refused == 2 and _enqueued(local_stack) == {}
