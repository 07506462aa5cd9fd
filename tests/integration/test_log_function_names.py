"""Every log line names the function that wrote it, with all the functions in one process (the
local stack, the soaks, these tests): the dev loader's ``FunctionNames`` against the one
Powertools logger they share. Lambda gives each function a process of its own; here the last
invocation of *any* function would otherwise name the lines of all of them."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dev.fakes.faultproxy import Fault, FaultProxy, wait_for
from dev.fakes.lambda_context import make_context
from dev.fakes.lambda_loader import load_function_module
from dev.fakes.signing import EVENTS_DIR, sample_webhook, signed_headers
from dev.stack.gateway import build_http_api_event

pytestmark = pytest.mark.integration

# What the enricher reads and writes in DynamoDB (the receiver only sends to SQS).
DYNAMODB_OPERATIONS = ("GetItem", "BatchGetItem", "PutItem", "UpdateItem", "BatchWriteItem", "Query")


class Lines(logging.Handler):
    """The functions' log lines as Powertools' own handler formats them, parsed."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        powertools = logging.getLogger(record.name).powertools_handler  # type: ignore[attr-defined]
        self.lines.append(json.loads(powertools.format(record)))

    def named(self, message: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["message"] == message]


@pytest.fixture
def lines(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Lines]:
    """Capture the shared service logger at INFO (the first ``Logger()`` of this process set its
    level, perhaps in another test; restored after)."""
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    capture = Lines()
    logger = logging.getLogger(stack_env["POWERTOOLS_SERVICE_NAME"])
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(capture)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)


def webhook_event() -> dict[str, Any]:
    body = sample_webhook("create", webhook_id="log-names-create-1")
    return build_http_api_event(body=body, headers=signed_headers(body))


def test_a_receiver_loaded_after_an_enricher_invocation_names_itself(
    stack_env: dict[str, str], lines: Lines
) -> None:
    enricher = load_function_module("enricher")
    enricher.lambda_handler({"Records": []}, make_context("EnricherFunction"))

    load_function_module("webhook")  # its cold start logs "webhook receiver ready"

    ready = lines.named("webhook receiver ready")
    assert len(ready) == 1, lines.lines
    assert ready[0]["function_name"] == "WebhookFunction", ready
    assert "function_request_id" not in ready[0] and "function_arn" not in ready[0], ready


def test_an_enricher_line_logged_while_a_webhook_is_answered_names_the_enricher(
    stack_env: dict[str, str], lines: Lines, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enricher is held mid-invocation (its DynamoDB calls hang at a proxy) while the receiver
    answers a webhook on this thread; its record lines come after, and still name the enricher."""
    with FaultProxy(moto_server, operations=DYNAMODB_OPERATIONS) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        enricher = load_function_module("enricher")
        webhook = load_function_module("webhook")
        batch = json.loads((EVENTS_DIR / "sqs" / "batch.json").read_text())
        enricher_context = make_context("EnricherFunction", timeout_seconds=120)
        webhook_context = make_context("WebhookFunction")

        proxy.set_fault(Fault.hang(seconds=120))
        worker = threading.Thread(target=enricher.lambda_handler, args=(batch, enricher_context))
        worker.start()
        try:
            assert wait_for(lambda: proxy.stats.faulted["hang"] >= 1, timeout=60), "the enricher never read"
            answer = webhook.lambda_handler(webhook_event(), webhook_context)
        finally:
            proxy.set_fault(None)  # the enricher goes on
            worker.join(timeout=120)
        assert not worker.is_alive()
    assert answer["statusCode"] == 202, answer

    answered = lines.named("webhook answered")
    assert [line["function_name"] for line in answered] == ["WebhookFunction"], answered
    assert answered[0]["function_request_id"] == webhook_context.aws_request_id
    records = [line for line in lines.lines if line["message"].startswith("record ")]
    assert len(records) == len(batch["Records"]), lines.lines
    for line in records:
        assert line["function_name"] == "EnricherFunction", line
        assert line["function_request_id"] == enricher_context.aws_request_id, line
        assert line["function_arn"].endswith(":function:EnricherFunction"), line
