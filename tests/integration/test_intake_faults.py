"""Intake under queue faults, over the wire: HTTP -> local gateway -> WebhookFunction -> boto3 ->
fault proxy (dev/fakes/faultproxy.py) -> moto server. And exceptions injected at every step.

HighLevel retries only 429 (every other status is final for it), so every transient failure must
be a 429 with ``Retry-After``, answered within 3 s whatever the queue does, and the sender's
retry after the fault clears must leave exactly one message on the ingest queue, also when the
faulted write landed after all.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import requests
from aws_lambda_powertools.logging import logger as powertools_logger

from appointment_enricher.intake import receiver as receiver_module
from dev.fakes.faultproxy import Fault, FaultProxy, wait_for
from dev.fakes.lambda_loader import load_function_module
from dev.fakes.signing import make_webhook, sign_ed25519
from dev.stack.awslocal import LocalStack
from dev.stack.gateway import Gateway
from tests.conftest import drain

pytestmark = pytest.mark.integration

ANSWER_BUDGET = 3.0
LOCATION = "loc_FAULTS1"


def signed(appointment_id: str = "appt_fault_1", **extra: Any) -> tuple[bytes, dict[str, str]]:
    raw = make_webhook(
        "AppointmentUpdate", {"id": appointment_id, "title": "t"}, LOCATION, webhook_id=f"wh-{uuid.uuid4()}"
    )
    if extra:
        document = json.loads(raw)
        document.update(extra)
        raw = json.dumps(document, separators=(",", ":")).encode()
    return raw, {"content-type": "application/json", "x-ghl-signature": sign_ed25519(raw)}


def timed_post(gateway: Gateway, raw: bytes, headers: dict[str, str]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.post(gateway.webhook_url, data=raw, headers=headers, timeout=30)
    return response, time.monotonic() - started


def assert_retry_later(response: requests.Response, error: str | None = None) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert set(payload) == {"error", "message"}, payload
    if error is not None:
        assert payload["error"] == error, payload


def writes_settled() -> bool:
    """No queue write of the in-process handler is still running in the background."""
    return not any(t.name == "ingest-send" and t.is_alive() for t in threading.enumerate())


def ingest_dedupe_ids(local_stack: LocalStack) -> list[str]:
    """Everything on the ingest queue (drained) once background writes are over: moto forgets a
    FIFO dedupe id when its message is deleted (SQS keeps it 5 minutes), so a write landing
    after the drain would look like a duplicate that real SQS would have dropped."""
    assert wait_for(writes_settled, timeout=15)
    messages = drain(local_stack, local_stack.ingest_queue_url, wait_seconds=0)
    return [m["Attributes"]["MessageDeduplicationId"] for m in messages]


@pytest.fixture
def proxy(moto_server: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server) as p:
        yield p


@pytest.fixture
def faulted_handler(
    stack_env: dict[str, str], proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """WebhookFunction cold-started with its AWS endpoint behind the fault proxy."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    return load_function_module("webhook")


FAULTS = {
    "http-500": (Fault.error(500), "queue_unavailable"),
    "http-503": (Fault.error(503), "queue_unavailable"),
    "throttled": (Fault.throttle(), "queue_unavailable"),
    "hang": (Fault.hang(), "queue_timeout"),
    "trickle-1-byte-per-second": (Fault.trickle(), "queue_timeout"),
    "landed-then-500": (Fault.landed_then_error(500), None),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_queue_fault_is_429_within_3_s_and_the_retry_queues_exactly_once(
    name: str, faulted_handler: ModuleType, proxy: FaultProxy, local_stack: LocalStack
) -> None:
    fault, error = FAULTS[name]
    raw, headers = signed()
    with Gateway(faulted_handler.lambda_handler) as gateway:
        proxy.set_fault(fault)
        response, elapsed = timed_post(gateway, raw, headers)
        assert_retry_later(response, error)
        assert elapsed < ANSWER_BUDGET, f"{name}: answered in {elapsed:.2f} s"
        assert proxy.stats.faulted[fault.kind] >= 1  # the fault really was in the path
        if fault.forwards:
            assert proxy.stats.forwarded >= 1  # ... and this write landed on the queue regardless
        proxy.set_fault(None)
        retry, _ = timed_post(gateway, raw, headers)  # the sender's retry, same bytes
        assert retry.status_code == 202, retry.text
        dedupe_id = retry.json()["dedupeId"]
        assert ingest_dedupe_ids(local_stack) == [dedupe_id]
        assert all(status < 500 for status, _ in gateway.responses), gateway.responses


def test_a_short_function_timeout_bounds_the_write_not_the_budget(
    faulted_handler: ModuleType, proxy: FaultProxy, local_stack: LocalStack
) -> None:
    """With 1.5 s of Lambda time the write gets 1 s: 429 before the function times out (a 5xx)."""
    raw, headers = signed()
    with Gateway(faulted_handler.lambda_handler, timeout_seconds=1.5) as gateway:
        proxy.set_fault(Fault.hang())
        response, _ = timed_post(gateway, raw, headers)
        assert_retry_later(response, "queue_timeout")  # a 429 in time: past 1.5 s the gateway says 5xx
        proxy.set_fault(None)
        assert timed_post(gateway, raw, headers)[0].status_code == 202
    assert len(ingest_dedupe_ids(local_stack)) == 1


def test_the_write_that_outlives_the_answer_lands_once(
    faulted_handler: ModuleType, proxy: FaultProxy, local_stack: LocalStack
) -> None:
    """A trickled answer: 429 at the deadline, the message is on the queue anyway; a prompt retry
    (as a sender honouring Retry-After would send) is deduplicated by the FIFO queue."""
    raw, headers = signed("appt_fault_late")
    with Gateway(faulted_handler.lambda_handler) as gateway:
        proxy.set_fault(Fault.trickle(bytes_per_second=50))
        response, elapsed = timed_post(gateway, raw, headers)
        assert_retry_later(response, "queue_timeout")
        assert elapsed < ANSWER_BUDGET
        proxy.set_fault(None)
        for _ in range(3):
            assert timed_post(gateway, raw, headers)[0].status_code == 202
    assert len(ingest_dedupe_ids(local_stack)) == 1


# ---- exceptions injected at each step: never a 5xx --------------------------------------------


def _boom(*_: Any, **__: Any) -> Any:
    raise RuntimeError("injected")


class _Exploding:
    def __getattr__(self, name: str) -> Any:
        return _boom


STEPS: dict[str, tuple[str, str, Any, int]] = {
    # name: (where, attribute, replacement, expected status)
    "body decoding": ("module", "_raw_body", _boom, 429),
    "deadline": ("module", "_deadline", _boom, 429),
    "receive": ("receiver", "receive", _boom, 429),
    "verify": ("receiver", "verifier", _Exploding(), 429),
    "parse": ("receiver_module", "parse_json_object", _boom, 429),
    "freshness": ("receiver_module", "parse_upstream_time", _boom, 429),
    "dedupe id": ("receiver_module", "webhook_dedupe_id", _boom, 429),
    "routing fields": ("receiver_module", "read_webhook", _boom, 429),
    "tenancy": ("receiver", "tenancy", _Exploding(), 429),
    "ingest message": ("receiver_module", "IngestMessage", _boom, 429),
    "attributes": ("receiver_module", "ingest_attributes", _boom, 429),
    "clock": ("receiver", "now", _boom, 429),
    "sink": ("receiver", "sink", _Exploding(), 429),
    "reply building": ("module", "_respond", _boom, 429),
    "metrics": ("metrics", "add_metric", _boom, 202),
    "logging": ("logger", "info", _boom, 202),
    "correlation id": ("logger", "set_correlation_id", _boom, 202),
    # Powertools' decorators: they run around our code, so the outer guard answers. The message
    # was queued before the flush failed: the sender's retry carries the same dedupe id.
    "metrics flush": ("metrics_provider", "flush_metrics", _boom, 429),
    "lambda context injection": ("powertools_logger", "build_lambda_context_model", _boom, 429),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_an_exception_at_any_step_is_never_a_5xx(
    step: str, webhook_handler: Any, local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    where, attribute, replacement, expected = STEPS[step]
    module = load_function_module("webhook")
    targets = {
        "module": module,
        "receiver": module.receiver,
        "receiver_module": receiver_module,
        "metrics": module.metrics,
        "logger": module.logger,
        "metrics_provider": module.metrics.provider,
        "powertools_logger": powertools_logger,
    }
    monkeypatch.setattr(targets[where], attribute, replacement)
    raw, headers = signed()
    with Gateway(module.lambda_handler) as gateway:
        response, elapsed = timed_post(gateway, raw, headers)
    assert response.status_code == expected, (step, response.status_code, response.text)
    assert elapsed < ANSWER_BUDGET
    if expected == 429:
        assert_retry_later(response)
    assert all(status < 500 for status, _ in gateway.responses)
