"""Secret scan: a whole pipeline run leaks no token, signature or key material.

The PowerLeads token is a recognisable value held in Secrets Manager (moto): a plain token, or an
OAuth app (client secret, refresh tokens, access tokens, rotated and written back during the run).
Both handlers run at Powertools DEBUG with the ROOT logger at DEBUG, as the Lambda runtime sets it
for ``LogLevel=DEBUG`` (botocore then logs request and response bodies unless the handlers pin
it). The run covers success, a 401 (the enricher re-reads the secret), then an upstream 500, then
success, an upstream 422 (quarantine) and a rejected webhook. Everything the run leaves behind is
then searched: captured stdout/stderr (Powertools' JSON log lines), every log record that reached
the root logger (any library's), the enriched records with their attributes, and the quarantine
messages' attributes.

The quarantine message *body* is the original ingest message and carries the webhook's signature
headers by design (so the message can be re-verified on redrive); signatures are not secrets, but
they are also not allowed anywhere else.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import requests

from appointment_enricher.aws.sdk import SDK_LOGGERS
from dev.fakes.lambda_loader import load_handler
from dev.fakes.sandbox import Fault
from dev.fakes.signing import make_webhook, signed_headers
from dev.stack.awslocal import KEYS_DIR, REPO_ROOT
from dev.stack.poller import SqsPoller, sqs_record

pytestmark = pytest.mark.integration

LOCATION = "0007BWpSzSwfiuSl0tR2"
OK_ID = "Hc3Jd8Fe2Gh5Ki9Lm0Np"
_AWS_ITSELF = ("moto", "werkzeug")
REJECTED_ID = "Qa4Rb6Sc8Td0Ue2Vf4Wg"


def _key_fragments() -> list[str]:
    """PEM markers and 24-character pieces of every dev key's base64 body (public and private)."""
    fragments = ["-----BEGIN", "PRIVATE KEY", "PUBLIC KEY-----"]
    for path in sorted(KEYS_DIR.glob("*.pem")):
        body = "".join(line for line in path.read_text().splitlines() if not line.startswith("-----"))
        fragments.extend(body[i : i + 24] for i in range(0, len(body) - 24, 24))
    return fragments


@pytest.fixture
def fresh_sdk_loggers() -> Iterator[None]:
    """SDK loggers as a new Lambda process has them (unset), so the handlers must pin them again."""
    saved = {name: logging.getLogger(name).level for name in SDK_LOGGERS}
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def _secret(form: str, sandbox, local_stack) -> list[str]:
    """Put a token (plain or OAuth app) in the secret; the secret values known before the run."""
    if form == "plain":
        token = f"pl-SECRET-{uuid.uuid4().hex}"
        sandbox.add_token(token)
        local_stack.set_token(token)
        return [token]
    client_id, client_secret, refresh = (f"{kind}-{uuid.uuid4().hex}" for kind in ("cid", "cs", "rt"))
    sandbox.add_oauth_client(client_id, client_secret, refresh, location_id=LOCATION)
    oauth = {
        "clientId": client_id,
        "clientSecret": client_secret,
        "refreshToken": refresh,
        "userType": "Location",
        "locationId": LOCATION,
    }
    local_stack.set_token(json.dumps({"oauth": oauth}))
    return [client_secret, refresh]


def _issued_by_sandbox(sandbox) -> list[str]:
    """Every OAuth access and refresh token the sandbox handed out (private state: test only)."""
    issued = list(sandbox._grants)
    for client in sandbox._clients.values():
        issued += [client.refresh_token, *client.used_refresh_tokens]
    return issued


@pytest.mark.parametrize("form", ["plain", "oauth"])
def test_a_pipeline_run_leaks_no_token_signature_or_key(
    form, stack_env, local_stack, sandbox, monkeypatch, capfd, caplog, fresh_sdk_loggers
) -> None:
    secrets = _secret(form, sandbox, local_stack)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    caplog.set_level(logging.DEBUG)  # the root logger, as the Lambda runtime sets it for DEBUG
    assert logging.getLogger("botocore.parsers").getEffectiveLevel() == logging.DEBUG

    from dev.stack.gateway import Gateway  # noqa: PLC0415

    webhook = load_handler("webhook")
    enricher = load_handler("enricher")
    sent_signatures: list[str] = []
    with Gateway(webhook) as gateway:
        bodies = [
            make_webhook("AppointmentUpdate", {"id": OK_ID}, LOCATION),
            make_webhook("AppointmentCreate", {"id": REJECTED_ID}, LOCATION),
            make_webhook("AppointmentDelete", {"id": "Zy1Xw3Vu5Ts7Rq9Po2Nm"}, LOCATION),
        ]
        for body in bodies:
            headers = signed_headers(body, "both")
            sent_signatures += [v for k, v in headers.items() if k.startswith("x-")]
            assert (
                requests.post(gateway.webhook_url, data=body, headers=headers, timeout=30).status_code == 202
            )
        forged = make_webhook("AppointmentUpdate", {"id": OK_ID}, LOCATION)
        bad = {"content-type": "application/json", "x-ghl-signature": base64.b64encode(b"\x07" * 64).decode()}
        sent_signatures.append(bad["x-ghl-signature"])
        assert requests.post(gateway.webhook_url, data=forged, headers=bad, timeout=30).status_code == 401

    sandbox.queue_faults([Fault.error(401), Fault.error(500)], event_id=OK_ID)
    sandbox.queue_faults([Fault.error(422)], event_id=REJECTED_ID)
    poller = SqsPoller(enricher, local_stack.ingest_queue_url, sqs_client=local_stack.client("sqs"))
    for _ in range(10):
        if not poller.poll_once():
            break
    records = local_stack.drain(local_stack.enriched_queue_url)
    quarantined = local_stack.drain(local_stack.quarantine_queue_url)
    assert len(records) == 2 and len(quarantined) == 1  # the run really covered both paths
    assert sandbox.count("/calendars/events/appointments/") >= 4  # 401, 500, 200, 422

    captured = capfd.readouterr()
    haystacks = {
        "stdout": captured.out,
        "stderr": captured.err,
        # moto server runs in this process and stands in for AWS itself: its own logs are AWS's.
        "log records": "\n".join(
            f"{r.getMessage()} {r.__dict__}" for r in caplog.records if not r.name.startswith(_AWS_ITSELF)
        ),
        "records": "\n".join(
            json.dumps({"body": m["Body"], "attributes": m.get("MessageAttributes")}) for m in records
        ),
        "quarantine attributes": json.dumps([m.get("MessageAttributes") for m in quarantined]),
    }
    assert '"level":"DEBUG"' in captured.out or "DEBUG" in haystacks["log records"], (
        "DEBUG logging was not on: the scan would prove less than it claims"
    )
    assert any(r.levelno == logging.DEBUG and r.name.startswith("moto") for r in caplog.records), (
        "the root logger did not receive other libraries' DEBUG records"
    )
    for name in SDK_LOGGERS:  # pinned by the handlers at cold start
        assert logging.getLogger(name).getEffectiveLevel() >= logging.INFO, name
    if form == "oauth":
        assert sandbox.oauth_refresh_count >= 1  # a refresh and a write-back really happened
        secrets += _issued_by_sandbox(sandbox)
    needles = {
        "token": secrets + [base64.b64encode(s.encode()).decode() for s in secrets],
        "signature": sent_signatures,
        "key material": _key_fragments(),
    }
    leaks = [
        f"{kind} found in {where}: {needle[:16]}..."
        for where, text in haystacks.items()
        for kind, values in needles.items()
        for needle in values
        if needle and needle in text
    ]
    assert not leaks, "\n".join(leaks)


# A cold start in its own process, as Lambda runs it: root logger at DEBUG (what the runtime does
# for LogLevel=DEBUG), X-Ray on (LAMBDA_TASK_ROOT + a sampled trace header), one SQS event in.
_LAMBDA_PROCESS = """
import json, logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from dev.fakes.lambda_context import make_context
from dev.fakes.lambda_loader import load_handler
handler = load_handler("enricher")
result = handler(json.loads(sys.stdin.read()), make_context("EnricherFunction"))
from aws_xray_sdk.core import patcher
print(json.dumps({"result": result, "patched": sorted(patcher._PATCHED_MODULES)}))
"""


class _XRayDaemon:
    """A UDP socket where the X-Ray SDK sends its segments (the daemon's wire format)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def received(self) -> list[str]:
        packets: list[str] = []
        with contextlib.suppress(TimeoutError):
            while True:
                packets.append(self.sock.recv(65536).decode("utf-8", "replace"))
        self.sock.close()
        return packets


def test_an_invalid_token_is_refused_at_read_time_and_reaches_no_log_or_trace(
    stack_env, local_stack, sandbox
) -> None:
    token = f"pl-SECRET-{uuid.uuid4().hex}"
    sandbox.add_token(token)  # were it sent, upstream would accept it
    local_stack.set_token(json.dumps({"default": token + "\n"}))  # e.g. pasted with a newline
    body = make_webhook("AppointmentUpdate", {"id": OK_ID}, LOCATION)
    webhook = load_handler("webhook")
    from dev.stack.gateway import Gateway  # noqa: PLC0415

    with Gateway(webhook) as gateway:
        response = requests.post(
            gateway.webhook_url, data=body, headers=signed_headers(body, "both"), timeout=30
        )
        assert response.status_code == 202
    sqs = local_stack.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=local_stack.ingest_queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    event = {"Records": [sqs_record(m, local_stack.ingest_queue_arn, local_stack.region) for m in messages]}

    daemon = _XRayDaemon()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
        "POWERTOOLS_TRACE_DISABLED": "false",
        "LAMBDA_TASK_ROOT": str(REPO_ROOT),
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": daemon.address,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    }
    run = subprocess.run(
        [sys.executable, "-c", _LAMBDA_PROCESS],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    traces = daemon.received()
    assert run.returncode == 0, run.stderr[-2000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["result"]["batchItemFailures"] == [{"itemIdentifier": messages[0]["MessageId"]}]  # retried
    assert outcome["patched"] == ["botocore"]  # Tracer(patch_modules=("boto3",)): requests is not traced
    assert "an HTTP header cannot carry" in run.stdout  # refused when read, and the log says why
    assert sandbox.count("/calendars/events/appointments/") == 0  # never sent
    assert traces, "no X-Ray segment was emitted: the trace scan would prove nothing"
    for where, text in {"stdout": run.stdout, "stderr": run.stderr, "X-Ray": "\n".join(traces)}.items():
        assert token not in text, f"token found in {where}"
