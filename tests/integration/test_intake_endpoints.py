"""Both ``IntakeEndpoint`` choices on the local stack: HTTP -> local endpoint (HTTP API or function
URL, payload 2.0) -> WebhookFunction -> moto server -> IngestQueue.fifo.

The receiver must answer the same whichever endpoint is in front of it; what differs is the
endpoint's own behaviour (routes, the sentinels of a function URL event, the status of a
function error), as the local gateway reproduces it.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from dev.fakes.lambda_loader import Handler
from dev.stack.awslocal import LocalStack
from dev.stack.gateway import FUNCTION_URL, HTTP_API, Gateway
from tests.integration.test_intake import assert_error, body, ed, post, queued

pytestmark = pytest.mark.integration

ENDPOINTS = [HTTP_API, FUNCTION_URL]


class Recording:
    """The real handler, with the events it was given kept."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        return self.handler(event, context)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_signed_webhook_is_queued_once_behind_either_endpoint(
    webhook_handler: Handler, local_stack: LocalStack, endpoint: str
) -> None:
    handler = Recording(webhook_handler)
    with Gateway(handler, endpoint=endpoint) as gateway:
        raw = body(webhook_id=f"wh-endpoint-{endpoint}")
        assert post(gateway, raw, ed(raw)).status_code == 202
        assert post(gateway, raw, ed(raw)).status_code == 202  # a retry: still one message
        assert_error(post(gateway, raw, {}), 401, "missing_signature")
    assert set(queued(local_stack)) == {f"wh-endpoint-{endpoint}"}
    event = handler.events[0]
    assert event["version"] == "2.0" and event["requestContext"]["http"]["method"] == "POST"
    if endpoint == FUNCTION_URL:
        assert event["routeKey"] == event["requestContext"]["stage"] == "$default"
        assert event["requestContext"]["accountId"] == "anonymous"
        assert event["requestContext"]["domainName"].endswith(".lambda-url.us-east-1.on.aws")
    else:
        assert event["routeKey"] == "POST /webhooks/appointments"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_only_the_http_api_routes_and_a_function_url_hands_everything_to_the_receiver(
    webhook_handler: Handler, local_stack: LocalStack, endpoint: str
) -> None:
    handler = Recording(webhook_handler)
    with Gateway(handler, endpoint=endpoint) as gateway:
        response = requests.get(gateway.webhook_url, timeout=30)
        other = requests.post(f"{gateway.url}/elsewhere", data=b"{}", timeout=30)
    if endpoint == HTTP_API:
        assert (response.status_code, other.status_code) == (404, 404) and handler.events == []
    else:
        # The receiver answers what no route filtered: final client errors, never a 5xx.
        assert len(handler.events) == 2
        assert all(400 <= r.status_code < 500 for r in (response, other)), (response.text, other.text)
    assert queued(local_stack) == {}


@pytest.mark.parametrize(("endpoint", "status"), [(HTTP_API, 500), (FUNCTION_URL, 502)])
def test_a_function_error_is_the_endpoints_own_5xx(endpoint: str, status: int) -> None:
    def crashing(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("boom")

    with Gateway(crashing, endpoint=endpoint) as gateway:
        response = requests.post(gateway.webhook_url, data=b"{}", timeout=30)
    assert response.status_code == status


def test_an_unknown_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="HttpApi or FunctionUrl"):
        Gateway(lambda e, c: None, endpoint="RestApi")
