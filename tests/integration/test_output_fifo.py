"""``OutputFifo=true`` over the wire: the stack's EnrichedTopic, EnrichedQueue and EnrichedDLQ are
FIFO, and the enricher publishes with group = appointment id and deduplication = the record's
delivery id, through the topic (OutputMode=topic) and straight to the queue (OutputMode=queue);
each appointment's records arrive in ``sequence`` order."""

from __future__ import annotations

import json
import uuid
from types import ModuleType
from typing import Any

import pytest

from dev.fakes.lambda_loader import load_function_module
from dev.fakes.sandbox import SandboxServer
from dev.stack.awslocal import LocalStack, create_resources
from tests.integration.test_change_tracking import T0, T1, send
from tests.integration.test_enricher_pipeline import Driver, appointment_id, published, put

pytestmark = pytest.mark.integration


@pytest.fixture
def local_stack(moto_server: str) -> LocalStack:
    return create_resources(moto_server, suffix=uuid.uuid4().hex[:10], parameters={"OutputFifo": "true"})


def _records_with_fifo_ids(stack: LocalStack) -> list[dict[str, Any]]:
    raw = stack.client("sqs").receive_message(
        QueueUrl=stack.enriched_queue_url,
        MaxNumberOfMessages=10,
        AttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        MessageAttributeNames=["All"],
    )
    return raw.get("Messages", [])


def _run(enricher: ModuleType, stack: LocalStack, sandbox: SandboxServer) -> tuple[str, list[str]]:
    a = appointment_id()
    put(sandbox, a, dateUpdated=T0)
    webhooks = [send(stack, a, "AppointmentCreate")]
    driver = Driver(enricher, stack)
    driver.run_until_empty()
    put(sandbox, a, dateUpdated=T1, assignedUserId="someone-else")
    webhooks.append(send(stack, a))
    driver.run_until_empty()
    return a, webhooks


@pytest.mark.parametrize("mode", ["topic", "queue"])
def test_fifo_output_keeps_each_appointments_records_in_order(
    mode: str,
    stack_env: dict[str, str],
    local_stack: LocalStack,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert local_stack.enriched_queue_url.endswith(".fifo")
    monkeypatch.delenv("OUTPUT_TOPIC_ARN")
    monkeypatch.delenv("OUTPUT_QUEUE_URL", raising=False)
    for name, value in local_stack.env(sandbox.url, output_mode=mode).items():
        monkeypatch.setenv(name, value)
    enricher = load_function_module("enricher")
    destination = enricher.service.publisher.destinations[0]
    assert destination.name == ("sns" if mode == "topic" else "sqs") and destination.fifo
    a, webhooks = _run(enricher, local_stack, sandbox)
    messages = _records_with_fifo_ids(local_stack)
    assert [m["Attributes"]["MessageGroupId"] for m in messages] == [a, a]
    assert [m["Attributes"]["MessageDeduplicationId"] for m in messages] == webhooks
    records = [json.loads(m["Body"]) for m in messages]
    assert [r["change"]["kind"] for r in records] == ["created", "reassigned"]
    assert records[0]["sequence"] < records[1]["sequence"]
    assert published(local_stack) == []  # nothing else arrived
