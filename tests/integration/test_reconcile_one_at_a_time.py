"""One reconcile run at a time, over the wire (moto server: ledger table, ingest queue; the sandbox
API): a run that finds the lease held sweeps nothing, not the scheduled function and not
``plenrich reconcile`` (which runs outside Lambda's ReservedConcurrentExecutions); a lease left
by a run that died is taken over once it ends; a finished run gives its lease back."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator

import pytest

from appointment_enricher.reconcile.lease import DynamoRunLease
from dev.fakes.lambda_context import make_context
from dev.fakes.lambda_loader import Handler, load_handler
from dev.fakes.sandbox import SandboxServer
from dev.stack.awslocal import LocalStack
from dev.stack.reconcile_local import recent_event, reconciler_env
from plenrich.context import Env
from plenrich.main import main
from tests.conftest import drain

pytestmark = pytest.mark.integration


@pytest.fixture
def location(
    stack_env: dict[str, str],
    local_stack: LocalStack,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """A location with one appointment no webhook delivered, and the reconciler's variables set."""
    location_id = "OneAtATime" + uuid.uuid4().hex[:8]
    for name, value in reconciler_env(stack_env, local_stack.ledger_table_name, location_id).items():
        monkeypatch.setenv(name, value)
    event = recent_event("Lease" + uuid.uuid4().hex[:12], location_id, "LeaseCal1")
    sandbox.put_appointment(event)
    yield location_id
    sandbox.delete_appointment(event["id"])
    with sandbox._lock:
        sandbox._tombstones.pop(event["id"], None)


def _lease(stack: LocalStack, **kwargs: object) -> DynamoRunLease:
    return DynamoRunLease(stack.client("dynamodb"), stack.ledger_table_name, **kwargs)  # type: ignore[arg-type]


def _invoke(handler: Handler) -> dict:
    summary: dict = handler({}, make_context("ReconcilerFunction", timeout_seconds=60))
    return summary


def test_a_run_while_another_holds_the_lease_sweeps_nothing(
    location: str, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    other = _lease(local_stack)  # e.g. `plenrich reconcile` on an operator's laptop
    assert other.acquire(300) is None
    handler = load_handler("reconciler")
    busy = _invoke(handler)
    assert busy["busy"] is True and busy["leaseHeldUntil"], busy
    assert busy["locations"] == 0 and busy["enqueued"] == 0 and busy["errors"] == 0
    assert sandbox.count() == 0  # not one upstream request: the other run has the rate share
    assert drain(local_stack, local_stack.ingest_queue_url, wait_seconds=0) == []

    other.release()
    ran = _invoke(handler)
    assert not ran.get("busy") and ran["enqueued"] == 1, ran
    assert other.acquire(300) is None  # the run gave its lease back when it ended
    other.release()


def test_a_lease_left_by_a_run_that_died_is_taken_over_once_it_ends(
    location: str, local_stack: LocalStack
) -> None:
    died = _lease(local_stack, epoch=lambda: time.time() - 3600)
    assert died.acquire(300) is None  # held until 55 minutes ago
    summary = _invoke(load_handler("reconciler"))
    assert not summary.get("busy") and summary["enqueued"] == 1, summary


def test_plenrich_reconcile_refuses_while_the_scheduled_run_holds_the_lease(
    location: str, local_stack: LocalStack, sandbox: SandboxServer
) -> None:
    scheduled = _lease(local_stack)
    assert scheduled.acquire(300) is None
    out, err = io.StringIO(), io.StringIO()
    code = main(["reconcile", "--location", location], Env(stdout=out, stderr=err))
    assert code == 1 and "another reconcile run is in progress" in err.getvalue(), err.getvalue()
    assert sandbox.count() == 0
    assert drain(local_stack, local_stack.ingest_queue_url, wait_seconds=0) == []
    dry_out = io.StringIO()
    dry = main(["reconcile", "--location", location, "--dry-run"], Env(stdout=dry_out, stderr=io.StringIO()))
    assert dry == 0 and "would enqueue 1 change(s)" in dry_out.getvalue()  # writes nothing: no lease
    scheduled.release()
