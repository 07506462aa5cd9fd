"""README's subscription example: an SNS filter policy on ``changeKind`` and ``locationId``,
exactly as the README prints it, on moto's SNS, fed by the enricher over the wire."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dev.fakes.sandbox import SandboxServer
from dev.stack.awslocal import LocalStack
from tests.conftest import drain
from tests.integration.test_change_tracking import driver, enricher, sandbox_server, send  # noqa: F401
from tests.integration.test_enricher_pipeline import LOCATION, Driver, appointment_id, put

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
OTHER_LOCATION = "OtherLocation000009"


def readme_filter_policy(location_id: str) -> dict[str, Any]:
    text = README.read_text()
    match = re.search(r"<!-- filter-policy -->\s*```json\n(.*?)\n```", text, re.S)
    assert match, "README lost its filter-policy example"
    policy: dict[str, Any] = json.loads(match.group(1).replace("<your locationId>", location_id))
    return policy


def test_cancellations_of_one_location_only(
    enricher: ModuleType,  # noqa: F811
    driver: Driver,  # noqa: F811
    local_stack: LocalStack,
    sandbox: SandboxServer,
) -> None:
    sqs, sns = local_stack.client("sqs"), local_stack.client("sns")
    queue_url = sqs.create_queue(QueueName=f"Cancellations-{local_stack.suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=local_stack.topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps(readme_filter_policy(LOCATION))},
    )
    mine, theirs, moved = appointment_id(), appointment_id(), appointment_id()
    put(sandbox, mine, dateUpdated="2026-11-30T10:00:00Z")
    put(sandbox, theirs, dateUpdated="2026-11-30T10:00:00Z", locationId=OTHER_LOCATION)
    put(sandbox, moved, dateUpdated="2026-11-30T10:00:00Z")
    for a in (mine, moved):
        send(local_stack, a, "AppointmentCreate")
    send(local_stack, theirs, "AppointmentCreate", location=OTHER_LOCATION)
    driver.run_until_empty()
    put(sandbox, mine, dateUpdated="2026-11-30T10:05:00Z", appointmentStatus="cancelled")
    put(
        sandbox,
        theirs,
        dateUpdated="2026-11-30T10:05:00Z",
        appointmentStatus="cancelled",
        locationId=OTHER_LOCATION,
    )
    put(sandbox, moved, dateUpdated="2026-11-30T10:05:00Z", startTime="2026-12-09T09:00:00+00:00")
    send(local_stack, mine)
    send(local_stack, theirs, location=OTHER_LOCATION)
    send(local_stack, moved)
    driver.run_until_empty()

    everything = [json.loads(m["Body"]) for m in drain(local_stack, local_stack.enriched_queue_url)]
    assert sorted(r["change"]["kind"] for r in everything) == ["cancelled", "cancelled"] + ["created"] * 3 + [
        "rescheduled"
    ]
    filtered = [json.loads(m["Body"]) for m in drain(local_stack, queue_url)]
    assert [(r["appointmentId"], r["change"]["kind"]) for r in filtered] == [(mine, "cancelled")]
