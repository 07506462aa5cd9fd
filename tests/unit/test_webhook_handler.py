"""functions/webhook/app.py: the API Gateway v2 edge of the receiver, one cold start per test.

Each test loads the handler afresh under a unique POWERTOOLS_SERVICE_NAME so its Powertools
Logger writes to this test's captured stdout; the SQS sink is swapped for a recorder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from appointment_enricher.errors import ConfigError
from appointment_enricher.intake.receiver import MAX_BODY_BYTES
from dev.fakes.lambda_context import make_context
from dev.fakes.lambda_loader import load_function_module
from dev.stack.gateway import build_http_api_event

REPO_ROOT = Path(__file__).resolve().parents[2]
ED = ed25519.Ed25519PrivateKey.generate()
RSA = rsa.generate_private_key(public_exponent=65537, key_size=4096)
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/IngestQueue.fifo"
SECRET_TITLE = "Body-Text-Never-Logged-7f3a"
ENV_VARS = (
    "AWS_ENDPOINT_URL",
    "INGEST_QUEUE_URL",
    "WEBHOOK_ED25519_PUBLIC_KEY",
    "WEBHOOK_RSA_PUBLIC_KEY",
    "WEBHOOK_SIGNATURE_REQUIRED",
    "WEBHOOK_MAX_AGE_SECONDS",
    "WEBHOOK_APP_IDS",
    "WEBHOOK_LOCATION_IDS",
    "POWERTOOLS_METRICS_DISABLED",
    "POWERTOOLS_METRICS_NAMESPACE",
)


def _pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class RecordingSink:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.error = error

    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str:
        if self.error is not None:
            raise self.error
        self.sent.append(
            {"body": body, "group_id": group_id, "dedupe_id": dedupe_id, "attributes": attributes}
        )
        return "m-1"


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch):
    """``load(**env)`` -> a freshly cold-started handler module with a recording sink."""

    def _load(sink: RecordingSink | None = None, **env: str) -> ModuleType:
        for name in ENV_VARS:
            monkeypatch.delenv(name, raising=False)
        defaults = {
            "INGEST_QUEUE_URL": QUEUE_URL,
            "WEBHOOK_ED25519_PUBLIC_KEY": _pem(ED),
            "WEBHOOK_RSA_PUBLIC_KEY": _pem(RSA),
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": f"webhook-test-{uuid.uuid4().hex[:8]}",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "POWERTOOLS_METRICS_NAMESPACE": "Test",
        }
        for name, value in {**defaults, **env}.items():
            monkeypatch.setenv(name, value)
        module = load_function_module("webhook")
        module.built_sink = module.receiver.sink
        module.receiver.sink = sink or RecordingSink()
        return module

    return _load


def body_for(**overrides: Any) -> bytes:
    doc = {
        "type": "AppointmentCreate",
        "locationId": "loc_ABC123",
        "appointment": {"id": "appt_XYZ789", "title": SECRET_TITLE},
        "webhookId": "wh-handler-1",
    }
    doc.update(overrides)
    return json.dumps(doc, separators=(",", ":")).encode()


def ed_sig(body: bytes) -> str:
    return base64.b64encode(ED.sign(body)).decode()


def invoke(module: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    result = module.lambda_handler(event, make_context("WebhookFunction"))
    assert result["headers"]["content-type"] == "application/json"
    assert ("retry-after" in result["headers"]) == (result["statusCode"] == 429)
    return result["statusCode"], json.loads(result["body"])


def event_for(body: bytes, headers: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    if headers is None:
        headers = {"x-ghl-signature": ed_sig(body)}
    return build_http_api_event(body=body, headers=headers, **kw)


def log_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"level"')]


# ---- request handling --------------------------------------------------------------------------------


def test_signed_webhook_is_queued_and_answered_202(load):
    sink = RecordingSink()
    module = load(sink)
    body = body_for()
    status, reply = invoke(module, event_for(body))
    assert (status, reply["status"], reply["dedupeId"]) == (202, "accepted", "wh-handler-1")
    assert json.loads(sink.sent[0]["body"])["body"].encode() == body


def test_base64_encoded_body_is_decoded_before_verification(load):
    sink = RecordingSink()
    module = load(sink)
    body = body_for()
    event = event_for(body, force_base64=True)
    assert event["isBase64Encoded"] is True
    assert invoke(module, event)[0] == 202
    assert json.loads(sink.sent[0]["body"])["body"].encode() == body


def test_header_names_in_any_case_reach_the_verifier(load):
    """The handler must not rely on API Gateway lower-casing header names."""
    module = load()
    body = body_for()
    event = event_for(body)
    event["headers"] = {"X-GHL-Signature": ed_sig(body), "Content-Type": "application/json"}
    assert invoke(module, event)[0] == 202


def test_invalid_base64_body_is_400(load):
    event = event_for(b"", headers={"x-ghl-signature": "N/A"})
    event.update(body="not base64!!", isBase64Encoded=True)
    status, reply = invoke(load(), event)
    assert status == 400
    assert reply == {"error": "invalid_encoding", "message": "body is not valid base64"}


def test_oversized_base64_body_is_413_before_decoding(load):
    event = event_for(b"", headers={})
    # Not even valid base64: the size check must come first.
    event.update(body="!" * (4 * MAX_BODY_BYTES // 3 + 16), isBase64Encoded=True)
    status, reply = invoke(load(), event)
    assert status == 413
    assert set(reply) == {"error", "message"}


def test_oversized_text_body_is_413(load):
    body = b'{"type":"AppointmentCreate","pad":"' + b"x" * MAX_BODY_BYTES + b'"}'
    status, reply = invoke(load(), event_for(body))
    assert (status, reply["error"]) == (413, "payload_too_large")


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (body_for(), {}, 401, "missing_signature"),
        (body_for(), {"x-ghl-signature": "N/A"}, 401, "invalid_signature"),
        (b"{oops", None, 400, "invalid_json"),
        (body_for(locationId="bad/id"), None, 400, "invalid_field"),
        (body_for(timestamp="2001-01-01T00:00:00Z"), None, 401, "stale"),
    ],
)
def test_every_error_body_is_error_and_message(load, body, headers, status, error):
    got_status, reply = invoke(load(), event_for(body, headers))
    assert got_status == status
    assert set(reply) == {"error", "message"}
    assert reply["error"] == error


NOT_QUEUED = "webhook not queued; sender asked to retry"


def test_failed_queue_write_is_429_with_the_cause_logged(load, capsys):
    module = load(RecordingSink(error=ConnectionError("endpoint unreachable")))
    body = body_for()
    result = module.lambda_handler(event_for(body), make_context("WebhookFunction"))
    assert (result["statusCode"], result["headers"]["retry-after"]) == (429, "60")
    assert json.loads(result["body"])["error"] == "queue_unavailable"
    out = capsys.readouterr().out
    [line] = [x for x in log_lines(out) if x["message"] == NOT_QUEUED]
    assert line["level"] == "ERROR"
    assert line["cause"] == "ConnectionError"
    assert line["correlation_id"] == "wh-handler-1"
    emf = [json.loads(x) for x in out.splitlines() if '"_aws"' in x]
    assert any("WebhookQueueFailed" in m for m in emf), emf


def test_the_queue_write_is_bounded_by_the_lambda_remaining_time(load):
    """With 0.7 s left the write gets 0.2 s (0.5 s margin), not the 2.5 s budget."""

    class Hanging(RecordingSink):
        def send(self, body: str, **kw: Any) -> str:
            threading.Event().wait(5)
            return "late"

    module = load(Hanging())
    started = time.monotonic()
    result = module.lambda_handler(
        event_for(body_for()), make_context("WebhookFunction", timeout_seconds=0.7)
    )
    elapsed = time.monotonic() - started
    assert (result["statusCode"], json.loads(result["body"])["error"]) == (429, "queue_timeout")
    assert elapsed < 2.0, elapsed  # its 0.2 s, not the 2.5 s budget (nor the 5 s hang)


def test_an_exception_in_receive_is_429_internal_error(load, capsys, monkeypatch):
    module = load()

    def boom(*_: Any, **__: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(module.receiver, "receive", boom)
    status, reply = invoke(module, event_for(body_for()))
    assert (status, reply["error"]) == (429, "internal_error")
    out = capsys.readouterr().out
    [line] = [x for x in log_lines(out) if x["message"] == NOT_QUEUED]
    assert line["cause"] == "KeyError"
    assert any("WebhookInternalError" in json.loads(x) for x in out.splitlines() if '"_aws"' in x)


def test_an_exception_while_answering_is_still_429(load, monkeypatch):
    module = load()

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("cannot build the answer")

    monkeypatch.setattr(module, "_respond", boom)
    status, reply = invoke(module, event_for(body_for()))
    assert (status, reply["error"]) == (429, "internal_error")


def test_a_broken_logger_or_metrics_does_not_change_the_answer(load, monkeypatch):
    sink = RecordingSink()
    module = load(sink)

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("instrumentation down")

    monkeypatch.setattr(module.metrics, "add_metric", boom)
    monkeypatch.setattr(module.logger, "info", boom)
    assert invoke(module, event_for(body_for()))[0] == 202
    assert len(sink.sent) == 1


def test_tenancy_from_the_environment(load, capsys):
    sink = RecordingSink()
    module = load(sink, WEBHOOK_APP_IDS="app_ours", WEBHOOK_LOCATION_IDS="loc_ABC123")
    assert invoke(module, event_for(body_for(appId="app_ours")))[0] == 202
    status, reply = invoke(module, event_for(body_for(appId="app_theirs")))
    assert (status, reply) == (200, {"status": "ignored", "reason": "foreign_app"})
    assert len(sink.sent) == 1
    out = capsys.readouterr().out
    assert "unset" not in out  # no cold-start warning when both lists are set
    emf = [json.loads(x) for x in out.splitlines() if '"_aws"' in x]
    assert any("WebhookForeignTenant" in m for m in emf), emf


def test_tenancy_unset_warns_at_cold_start(load, capsys):
    load()
    warnings = [x["message"] for x in log_lines(capsys.readouterr().out) if x["level"] == "WARNING"]
    assert any(w.startswith("WEBHOOK_APP_IDS unset") for w in warnings), warnings
    assert any(w.startswith("WEBHOOK_LOCATION_IDS unset") for w in warnings), warnings


def test_ignored_type_is_200_and_counted(load, capsys):
    status, reply = invoke(load(), event_for(body_for(type="ContactCreate")))
    assert (status, reply["status"]) == (200, "ignored")
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert any(m.get("WebhookIgnored") == [1.0] or m.get("WebhookIgnored") == 1.0 for m in emf), emf


def test_metrics_namespace_has_a_default(load, monkeypatch, capsys):
    module = load(POWERTOOLS_METRICS_NAMESPACE="")
    assert invoke(module, event_for(body_for()))[0] == 202
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == module.DEFAULT_METRICS_NAMESPACE


# ---- logging -------------------------------------------------------------------------------------------


def test_no_body_signature_or_event_in_logs_even_with_log_event_on(load, capsys):
    module = load(POWERTOOLS_LOGGER_LOG_EVENT="true", POWERTOOLS_LOG_LEVEL="INFO")
    body = body_for()
    signature = ed_sig(body)
    cases = [
        event_for(body, {"x-ghl-signature": signature}),  # 202
        event_for(body, {"x-ghl-signature": signature[:-4] + "AAA="}),  # 401
        event_for(body_for(type="Other"), {"x-ghl-signature": ed_sig(body_for(type="Other"))}),
        event_for(body, {"x-ghl-signature": signature}, force_base64=True),
    ]
    bad_json = b'{"title":"' + SECRET_TITLE.encode() + b'",'
    cases.append(event_for(bad_json, {"x-ghl-signature": ed_sig(bad_json)}))  # 400
    for event in cases:
        invoke(module, event)
    module.receiver.sink = RecordingSink(error=RuntimeError("down"))
    invoke(module, event_for(body, {"x-ghl-signature": signature}))  # 429
    out = capsys.readouterr().out
    answered = [x for x in log_lines(out) if x["message"] in ("webhook answered", NOT_QUEUED)]
    assert len(answered) == len(cases) + 1
    assert SECRET_TITLE not in out
    assert signature not in out
    assert signature[:20] not in out
    assert base64.b64encode(body).decode()[:40] not in out
    assert "appt_XYZ789" not in out.replace('"appointmentId"', "")


def test_correlation_id_is_the_dedupe_id_and_cleared_between_invocations(load, capsys):
    module = load()
    invoke(module, event_for(body_for()))
    no_id = body_for(webhookId=None)
    invoke(module, event_for(no_id))
    invoke(module, event_for(body_for(), {}))  # 401: no dedupe id for an unverified body
    first, second, third = [
        x for x in log_lines(capsys.readouterr().out) if x["message"] == "webhook answered"
    ]
    assert first["correlation_id"] == "wh-handler-1"
    assert first["signature"] == "ed25519"
    assert second["correlation_id"] == hashlib.sha256(no_id).hexdigest()
    assert third.get("correlation_id") is None
    assert third["error"] == "missing_signature"


def test_unsigned_mode_warns_once_per_cold_start(load, capsys):
    module = load(WEBHOOK_SIGNATURE_REQUIRED="false")
    for _ in range(3):
        assert invoke(module, event_for(body_for(), {}))[0] == 202
    warnings = [x for x in log_lines(capsys.readouterr().out) if "WEBHOOK_SIGNATURE_REQUIRED" in x["message"]]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "WARNING"


def test_every_unsigned_acceptance_is_counted_and_an_unsigned_delete_is_refused(load, capsys):
    module = load(WEBHOOK_SIGNATURE_REQUIRED="false")
    assert invoke(module, event_for(body_for(), {}))[0] == 202
    assert invoke(module, event_for(body_for(webhookId="wh-2"), {}))[0] == 202
    assert invoke(module, event_for(body_for(webhookId="wh-3")))[0] == 202  # signed: not counted
    status, body = invoke(module, event_for(body_for(type="AppointmentDelete", webhookId="wh-4"), {}))
    assert (status, body["error"]) == (401, "missing_signature")
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert [doc.get("WebhookUnsignedAccepted") for doc in emf] == [[1.0], [1.0], None, None]
    assert len(module.receiver.sink.sent) == 3


def test_signed_mode_does_not_warn(load, capsys):
    load()
    assert "WEBHOOK_SIGNATURE_REQUIRED" not in capsys.readouterr().out


# ---- cold start -------------------------------------------------------------------------------------


def test_keys_are_parsed_once_per_container(load, monkeypatch):
    module = load()
    from appointment_enricher.intake import signatures  # noqa: PLC0415

    def explode(*_: Any, **__: Any) -> Any:
        raise AssertionError("public key parsed during an invocation")

    monkeypatch.setattr(signatures.serialization, "load_pem_public_key", explode)
    monkeypatch.setattr(signatures.SignatureVerifier, "from_pem", explode)
    for _ in range(2):
        assert invoke(module, event_for(body_for()))[0] == 202


def test_configured_keys_are_used_not_the_published_ones(load):
    module = load(WEBHOOK_ED25519_PUBLIC_KEY="", WEBHOOK_RSA_PUBLIC_KEY="")
    # Published keys: our test key's signature must not verify.
    assert invoke(module, event_for(body_for()))[0] == 401


@pytest.mark.parametrize(
    ("env", "error", "variable"),
    [
        ({"WEBHOOK_ED25519_PUBLIC_KEY": "garbage"}, ConfigError, "WEBHOOK_ED25519_PUBLIC_KEY"),
        ({"WEBHOOK_ED25519_PUBLIC_KEY": _pem(RSA)}, ConfigError, "WEBHOOK_ED25519_PUBLIC_KEY"),
        ({"WEBHOOK_RSA_PUBLIC_KEY": _pem(ED)}, ConfigError, "WEBHOOK_RSA_PUBLIC_KEY"),
        ({"INGEST_QUEUE_URL": ""}, ConfigError, "INGEST_QUEUE_URL"),
        ({"WEBHOOK_MAX_AGE_SECONDS": "-5"}, ConfigError, "WEBHOOK_MAX_AGE_SECONDS"),
        ({"WEBHOOK_SIGNATURE_REQUIRED": "nope"}, ConfigError, "WEBHOOK_SIGNATURE_REQUIRED"),
    ],
)
def test_bad_configuration_fails_the_cold_start_naming_the_variable(load, env, error, variable):
    with pytest.raises(error, match=variable):
        load(**env)


def test_sqs_client_fails_fast_and_finds_a_region(load, monkeypatch):
    module = load()
    assert module.built_sink.url == QUEUE_URL
    client = module.built_sink.client
    # The receiver's deadline is the hard bound; these keep a write that outlives it short.
    assert client.meta.config.connect_timeout <= 1
    assert client.meta.config.read_timeout <= 2
    assert client.meta.config.retries["total_max_attempts"] <= 2
    assert client.meta.config.retries["mode"] == "standard"
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    eu = module._sqs_client("https://sqs.eu-west-1.amazonaws.com/123456789012/q.fifo")
    assert eu.meta.region_name == "eu-west-1"
    assert module._sqs_client("http://127.0.0.1:5000/123456789012/q.fifo").meta.region_name == "us-east-1"


def test_import_cost_no_pydantic_requests_or_enricher():
    """A real cold start in a fresh interpreter: only what intake uses gets imported."""
    script = textwrap.dedent(
        """
        import importlib.util, json, sys
        sys.path[:0] = [sys.argv[1] + "/layers/shared", sys.argv[1]]
        path = sys.argv[1] + "/functions/webhook/app.py"
        spec = importlib.util.spec_from_file_location("webhook_app", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert callable(module.lambda_handler)
        print(json.dumps(sorted(sys.modules)))
        """
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "INGEST_QUEUE_URL": QUEUE_URL,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "import-cost",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(REPO_ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "appointment_enricher.intake.receiver" in loaded  # the probe really imported the handler
    forbidden = {
        "requests",
        "pydantic",
        "pydantic_core",
        "appointment_enricher.enrich.service",
        "appointment_enricher.models",
        "appointment_enricher.config.pipeline",  # config's pydantic half
        "appointment_enricher.powerleads.client",
        "appointment_enricher.enrichment",
    }
    assert forbidden & loaded == set()
