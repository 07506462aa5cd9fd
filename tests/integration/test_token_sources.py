"""The enricher handler with each secret shape, over the wire (moto server + sandbox)."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING

from dev.fakes.lambda_context import make_context
from dev.fakes.lambda_loader import load_handler
from dev.fakes.signing import dedupe_id_for, ingest_message, make_webhook

if TYPE_CHECKING:
    from dev.fakes.sandbox import SandboxServer
    from dev.stack.awslocal import LocalStack

SEED_ID = "ocQHyuzHvysMo5N5VsXc"
SEED_LOCATION = "0007BWpSzSwfiuSl0tR2"


def _batch(appointment_id: str, location_id: str) -> dict[str, object]:
    body = make_webhook("AppointmentUpdate", {"id": appointment_id}, location_id)
    message = ingest_message(body, "2026-11-24T00:00:00Z", dedupe_id_for(body) + uuid.uuid4().hex[:8])
    return {
        "Records": [
            {
                "messageId": "m-1",
                "receiptHandle": "r-1",
                "body": message,
                "attributes": {"MessageGroupId": appointment_id, "ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
            }
        ]
    }


def _records(local_stack: LocalStack) -> list[dict[str, object]]:
    return [json.loads(m["Body"]) for m in local_stack.drain(local_stack.enriched_queue_url)]


def test_oauth_secret_refreshes_once_and_fetches_with_the_new_token(
    local_stack: LocalStack, sandbox: SandboxServer, stack_env: dict[str, str]
) -> None:
    sandbox.add_oauth_client("app-1", "app-secret", "refresh-0", location_id=SEED_LOCATION)
    local_stack.set_token(
        json.dumps(
            {
                "oauth": {
                    "clientId": "app-1",
                    "clientSecret": "app-secret",
                    "refreshToken": "refresh-0",
                    "userType": "Location",
                    "locationId": SEED_LOCATION,
                }
            }
        )
    )
    handler = load_handler("enricher")
    refreshes_before = sandbox.oauth_refresh_count
    for _ in range(2):
        result = handler(_batch(SEED_ID, SEED_LOCATION), make_context("EnricherFunction", timeout_seconds=30))
        assert result == {"batchItemFailures": []}
    assert sandbox.oauth_refresh_count == refreshes_before + 1
    assert sandbox.oauth_reuse_count == 0
    records = _records(local_stack)
    assert [r["appointmentId"] for r in records] == [SEED_ID, SEED_ID]
    stored = json.loads(
        local_stack.client("secretsmanager").get_secret_value(
            SecretId=local_stack.token_secret_id, VersionStage="AWSCURRENT"
        )["SecretString"]
    )
    assert stored["oauth"]["refreshToken"] != "refresh-0"  # the rotated token was written back


def test_per_location_map_picks_the_location_token(
    local_stack: LocalStack, sandbox: SandboxServer, stack_env: dict[str, str]
) -> None:
    sandbox.add_token("tok-seed-location", SEED_LOCATION)
    local_stack.set_token(json.dumps({"default": "wrong", "locations": {SEED_LOCATION: "tok-seed-location"}}))
    handler = load_handler("enricher")
    result = handler(_batch(SEED_ID, SEED_LOCATION), make_context("EnricherFunction", timeout_seconds=30))
    assert result == {"batchItemFailures": []}
    assert [r["appointmentId"] for r in _records(local_stack)] == [SEED_ID]


def test_a_stuck_refresh_lease_gives_up_at_the_batch_deadline(
    local_stack: LocalStack, sandbox: SandboxServer, stack_env: dict[str, str]
) -> None:
    """Another container holds the refresh lease and never finishes: the batch is handed back
    (retryable) when its deadline passes, not after the 60 s lease time."""
    oauth = {
        "clientId": "app-1",
        "clientSecret": "app-secret",
        "refreshToken": "refresh-0",
        "userType": "Location",
        "locationId": SEED_LOCATION,
        "refreshLease": {"owner": "stuck-container", "until": time.time() + 3600},
    }
    local_stack.set_token(json.dumps({"oauth": oauth}))
    handler = load_handler("enricher")
    started = time.monotonic()
    # 8 s left minus the 5 s margin: the deadline is 3 s away.
    result = handler(_batch(SEED_ID, SEED_LOCATION), make_context("EnricherFunction", timeout_seconds=8))
    elapsed = time.monotonic() - started
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert elapsed < 6, f"waited {elapsed:.1f} s on the lease"
    assert sandbox.count("/oauth/token") == 0 and _records(local_stack) == []
