"""Least privilege of the ReconcilerFunction proven by running it with exactly its role (as SAM
builds it) against moto server with IAM enforced; the machinery and what moto checks are described
in ``test_iam_enforced.py``. The run reads the OAuth secret and refreshes the token (write-back),
lists the sandbox API, reads the ledger (BatchGetItem), takes and gives back the one-run lease and
clears a cursor (PutItem, ``cursor#*`` keys) and enqueues a recovery on the ingest queue; without
any one of its statements it does not complete."""

# The role machinery's fixtures are imported from test_iam_enforced and requested by name.
# ruff: noqa: F811

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from appointment_enricher.reconcile.lease import LEASE_KEY
from dev.fakes.lambda_context import make_context
from dev.fakes.sandbox import SandboxServer
from dev.stack.awslocal import LocalStack
from dev.stack.cfn import Resolver
from dev.stack.reconcile_local import recent_event, seed_ledger
from tests.conftest import drain
from tests.integration.test_iam_enforced import (  # noqa: F401 - fixtures, used by name
    LOCATION,
    cold_start,
    function_env,
    iam_moto,
    make_user,
    oauth_secret,
    output_mode,
    policy_labels,
    resolver,
    role_policies,
    stack,
    template,
)

pytestmark = pytest.mark.integration

APPOINTMENT = "IamReconAppt01"


@pytest.fixture
def appointment(sandbox: SandboxServer) -> Iterator[str]:
    sandbox.put_appointment(recent_event(APPOINTMENT, LOCATION, "IamReconCal1"))
    yield APPOINTMENT
    sandbox.delete_appointment(APPOINTMENT)
    with sandbox._lock:
        sandbox._tombstones.pop(APPOINTMENT, None)


def reconcile(
    stack: LocalStack, key: tuple[str, str], sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A cursor and an older ledger entry (seeded by the admin), then one run with ``key``."""
    ddb = stack.client("dynamodb")
    table = os.environ["LEDGER_TABLE_NAME"]
    ddb.put_item(
        TableName=table,
        Item={"id": {"S": f"cursor#{LOCATION}"}, "calendarId": {"S": "A"}, "startMs": {"N": "0"}},
    )
    seed_ledger(ddb, table, APPOINTMENT, LOCATION, "2026-01-01T00:00:00.000Z")
    refresh = oauth_secret(stack, sandbox)
    handler = cold_start("reconciler", key, monkeypatch)
    summary = handler({"locationIds": [LOCATION]}, make_context("ReconcilerFunction", timeout_seconds=60))
    cursor = ddb.get_item(TableName=table, Key={"id": {"S": f"cursor#{LOCATION}"}})["Item"]
    lease = ddb.get_item(TableName=table, Key={"id": {"S": LEASE_KEY}}).get("Item", {})
    stored = json.loads(
        stack.client("secretsmanager").get_secret_value(
            SecretId=stack.token_secret_id, VersionStage="AWSCURRENT"
        )["SecretString"]
    )["oauth"]
    return {
        "enqueued": [m["Attributes"]["MessageGroupId"] for m in drain(stack, stack.ingest_queue_url, 0)],
        "errors": summary.get("errors"),
        "cursor_cleared": "completedAt" in cursor and "calendarId" not in cursor,
        "lease_given_back": lease.get("until", {}).get("N") == "0.000",
        "rotated_saved": stored["refreshToken"] != refresh and "refreshLease" not in stored,
    }


COMPLETE = {
    "enqueued": [APPOINTMENT],
    "errors": 0,
    "cursor_cleared": True,
    "lease_given_back": True,
    "rotated_saved": True,
}


def test_the_reconciler_works_with_exactly_its_role(
    template: dict[str, Any],
    resolver: Resolver,
    stack: LocalStack,
    iam_moto: Any,
    sandbox: SandboxServer,
    appointment: str,
    function_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, admin = iam_moto
    policies = role_policies(template, "ReconcilerFunctionRole", resolver)
    assert policy_labels(policies) == [
        "sqs:SendMessage*",
        "secretsmanager:GetSecretValue",
        "ReconcileLedgerRead",
        "WriteBackRotatedPowerLeadsToken",
    ]
    assert reconcile(stack, make_user(url, admin, policies), sandbox, monkeypatch) == COMPLETE
    assert sandbox.oauth_refresh_count >= 1


@pytest.mark.parametrize("missing", range(4))
def test_the_reconciler_needs_every_statement_of_its_role(
    missing: int,
    template: dict[str, Any],
    resolver: Resolver,
    stack: LocalStack,
    iam_moto: Any,
    sandbox: SandboxServer,
    appointment: str,
    function_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, admin = iam_moto
    policies = role_policies(template, "ReconcilerFunctionRole", resolver)
    kept = policies[:missing] + policies[missing + 1 :]
    outcome = reconcile(stack, make_user(url, admin, kept), sandbox, monkeypatch)
    assert outcome != COMPLETE
    assert outcome["errors"] or not outcome["enqueued"], outcome  # the run says it failed
