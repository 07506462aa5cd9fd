"""``plenrich reconcile`` against moto server (ingest queue, ledger table) and the sandbox API."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from dev.fakes.sandbox import SandboxServer
from dev.stack.awslocal import LocalStack
from dev.stack.reconcile_local import recent_event, reconciler_env, seed_ledger
from plenrich.context import Env
from plenrich.main import main
from tests.conftest import drain

pytestmark = pytest.mark.integration

LOC = "CliReconLoc01"


@pytest.fixture
def cli_env(stack_env: dict[str, str], local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> str:
    """The function's variables in the shell; returns the ledger table."""
    extra = reconciler_env(stack_env, local_stack.ledger_table_name)
    extra.pop("RECONCILE_LOCATION_IDS")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return {**stack_env, **extra}["LEDGER_TABLE_NAME"]


@pytest.fixture
def appointments(sandbox: SandboxServer) -> Iterator[list[str]]:
    ids = ["CliReconNew1", "CliReconOld1", "CliReconSame"]
    events = [recent_event(i, LOC, "CliReconCal1") for i in ids]
    for event in events:
        sandbox.put_appointment(event)
    yield ids
    for appointment_id in ids:
        sandbox.delete_appointment(appointment_id)
    with sandbox._lock:
        for appointment_id in ids:
            sandbox._tombstones.pop(appointment_id, None)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["reconcile", *argv], Env(stdout=out, stderr=err))
    return code, out.getvalue(), err.getvalue()


def seed(local_stack: LocalStack, table: str, sandbox: SandboxServer) -> None:
    ddb = local_stack.client("dynamodb")
    seed_ledger(ddb, table, "CliReconOld1", LOC, "2026-01-01T00:00:00.000Z")
    same = sandbox._appointments["CliReconSame"]
    seed_ledger(ddb, table, "CliReconSame", LOC, same["dateUpdated"])


def test_reconcile_enqueues_and_prints_a_summary_table(
    cli_env: str, local_stack: LocalStack, sandbox: SandboxServer, appointments: list[str]
) -> None:
    seed(local_stack, cli_env, sandbox)
    code, out, err = run()  # no --location: the ledger's known locations
    assert code == 0, err
    header, _rule, row = out.splitlines()[:3]
    assert header.split() == [
        "locationId",
        "calendars",
        "requests",
        "listed",
        "updates",
        "deletes",
        "current",
        "errors",
        "complete",
    ]
    assert row.split() == [LOC, "1", "2", "3", "2", "0", "1", "0", "yes"]
    assert "enqueued 2 change(s) no webhook delivered; 0 error(s)" in out
    assert "reconcile [" in err and "1/1 100%" in err  # progress on stderr
    queued = drain(local_stack, local_stack.ingest_queue_url, wait_seconds=0)
    assert sorted(m["Attributes"]["MessageGroupId"] for m in queued) == ["CliReconNew1", "CliReconOld1"]


def test_dry_run_lists_and_touches_nothing(
    cli_env: str, local_stack: LocalStack, sandbox: SandboxServer, appointments: list[str]
) -> None:
    seed(local_stack, cli_env, sandbox)
    code, out, _ = run("--location", LOC, "--dry-run")
    assert code == 0
    assert "would enqueue 2 change(s)" in out
    assert "would enqueue AppointmentUpdate CliReconNew1" in out
    assert drain(local_stack, local_stack.ingest_queue_url, wait_seconds=0) == []
    cursor = local_stack.client("dynamodb").get_item(TableName=cli_env, Key={"id": {"S": f"cursor#{LOC}"}})
    assert "Item" not in cursor


def test_refuses_an_unsafe_location(cli_env: str, sandbox: SandboxServer) -> None:
    code, _, err = run("--location", "a/b")
    assert code == 2 and "--location must match" in err
    assert sandbox.count("/calendars") == 0
