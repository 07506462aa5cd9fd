"""``plenrich`` (dev/cli.py) against the local stack: moto server over HTTP, real HTTP for replay."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appointment_enricher.models import AppointmentWebhook
from appointment_enricher.queues import IngestQueue, Quarantine
from appointment_enricher.wire import IngestMessage
from dev.awslocal import REGION, LocalStack, aws_base_env, create_resources, unique_suffix
from dev.cli import Env, main
from dev.signing import EVENTS_DIR, KEYS_DIR, ingest_message, sample_webhook
from dev.sqs import queue_depth

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    """Fresh queues per test; the CLI finds them through the functions' variables only."""
    stack = create_resources(moto_server, suffix=unique_suffix())
    for name, value in aws_base_env(moto_server, REGION).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("INGEST_QUEUE_URL", stack.ingest_queue_url)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", stack.quarantine_queue_url)
    return stack


class Run:
    def __init__(self, code: int, out: str, err: str, sleeps: list[float]) -> None:
        self.code, self.out, self.err, self.sleeps = code, out, err, sleeps


class FakeTime:
    """A clock that only moves when the CLI sleeps: pacing is asserted, never timed."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def cli(*argv: str, stdin: str = "") -> Run:
    fake = FakeTime()
    out, err = io.StringIO(), io.StringIO()
    env = Env(stdout=out, stderr=err, stdin=io.StringIO(stdin), sleep=fake.sleep, clock=fake.clock)
    code = main([*argv], env)
    return Run(code, out.getvalue(), err.getvalue(), fake.sleeps)


def quarantine(stack: LocalStack, name: str, error_type: str, webhook_id: str) -> str:
    """A quarantined message exactly as the enricher writes it; returns its dedupe id."""
    raw = sample_webhook(name, webhook_id=webhook_id)
    webhook = json.loads(raw)
    body = ingest_message(raw, "2026-01-01T00:00:00Z", webhook_id, {"x-ghl-signature": "sig"})
    Quarantine(stack.client("sqs"), stack.quarantine_queue_url).send(
        body,
        error_type=error_type,
        error_message=f"{error_type}: " + "x" * 200,
        source_message_id=f"src-{webhook_id}",
        extra={
            "dedupeId": webhook_id,
            "appointmentId": webhook["appointment"]["id"],
            "locationId": webhook["locationId"],
            "eventType": webhook["type"],
        },
    )
    return body


def visible(stack: LocalStack, url: str) -> int:
    return queue_depth(stack.client("sqs"), url)


def seed(stack: LocalStack) -> dict[str, str]:
    return {
        "create": quarantine(stack, "create", "InvalidAppointment", "wh-create"),
        "update": quarantine(stack, "update", "UpstreamRejected", "wh-update"),
        "delete": quarantine(stack, "delete", "InvalidAppointment", "wh-delete"),
    }


# ----- inspect ------------------------------------------------------------------------------------


def test_inspect_shows_reasons_as_a_table_and_consumes_nothing(stack: LocalStack) -> None:
    seed(stack)
    run = cli("inspect", "--wait", "0")
    assert run.code == 0, run.err
    header, rule, *rows = run.out.splitlines()
    assert header.split() == [
        "messageId", "errorType", "errorMessage", "failedAt", "appointmentId", "locationId"
    ]  # fmt: skip
    assert set(rule) <= {"-", " "}
    assert "3 message(s)" in run.out
    assert sum("InvalidAppointment" in row for row in rows) == 2
    assert any("Hc3Jd8Fe2Gh5Ki9Lm0Np" in row and "UpstreamRejected" in row for row in rows)
    assert "..." in run.out and "x" * 100 not in run.out  # errorMessage truncated
    assert visible(stack, stack.quarantine_queue_url) == 3  # released at once, none consumed


def test_inspect_filters_and_prints_json(stack: LocalStack) -> None:
    seed(stack)
    run = cli("inspect", "--wait", "0", "--error-type", "UpstreamRejected", "--json")
    records = [json.loads(line) for line in run.out.splitlines()]
    assert [r["errorType"] for r in records] == ["UpstreamRejected"]
    assert records[0]["appointmentId"] == "Hc3Jd8Fe2Gh5Ki9Lm0Np"
    assert visible(stack, stack.quarantine_queue_url) == 3


# ----- redrive ------------------------------------------------------------------------------------


def test_redrive_dry_run_moves_nothing(stack: LocalStack) -> None:
    seed(stack)
    run = cli("redrive", "--wait", "0", "--dry-run")
    assert run.code == 0, run.err
    assert "would move 3" in run.out
    assert "redrive (dry run) [" in run.err and "3/3" in run.err
    assert visible(stack, stack.quarantine_queue_url) == 3
    assert visible(stack, stack.ingest_queue_url) == 0


def test_redrive_moves_only_the_filtered_error_type_with_fifo_ids(stack: LocalStack) -> None:
    bodies = seed(stack)
    # The original deliveries went through the ingest queue minutes ago: FIFO still remembers
    # their dedupe ids, so a redrive reusing them would be silently dropped.
    ingest = IngestQueue(stack.client("sqs"), stack.ingest_queue_url)
    for name in ("create", "delete"):
        ingest.send(bodies[name], group_id="g", dedupe_id=f"wh-{name}", attributes={})
    stack.drain(stack.ingest_queue_url, wait_seconds=0)

    run = cli("redrive", "--wait", "0", "--error-type", "InvalidAppointment")
    assert run.code == 0, run.err
    assert "moved 2, skipped 1 (filtered), failed 0" in run.out
    assert "redrive [" in run.err and "3/3 100%" in run.err

    moved = stack.drain(stack.ingest_queue_url, wait_seconds=0)
    originals = {IngestMessage.decode(bodies[n]).body: bodies[n] for n in ("create", "delete")}
    assert len(moved) == 2
    for message in moved:
        ingest_body = IngestMessage.decode(message["Body"])
        original = IngestMessage.decode(originals.pop(ingest_body.body))  # webhook unchanged
        webhook = AppointmentWebhook.model_validate_json(ingest_body.body)
        assert message["Attributes"]["MessageGroupId"] == webhook.appointment.id
        dedupe = message["Attributes"]["MessageDeduplicationId"]
        assert dedupe.startswith(original.dedupe_id + ".redrive-")
        # A fresh idempotency key: the enricher completed the original's claim when quarantining it.
        assert ingest_body.dedupe_id == dedupe
        assert ingest_body.received_at == original.received_at
        assert message["MessageAttributes"]["eventType"]["StringValue"] == webhook.type
        assert message["MessageAttributes"]["locationId"]["StringValue"] == webhook.locationId
    left = stack.drain(stack.quarantine_queue_url, wait_seconds=0)
    assert [m["MessageAttributes"]["errorType"]["StringValue"] for m in left] == ["UpstreamRejected"]


def test_redrive_max_and_repeatable_filters(stack: LocalStack) -> None:
    seed(stack)
    run = cli(
        "redrive", "--wait", "0", "--max", "1", "--error-type", "UpstreamRejected",
        "--error-type", "InvalidAppointment",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert "moved 1," in run.out
    assert visible(stack, stack.ingest_queue_url) == 1
    assert visible(stack, stack.quarantine_queue_url) == 2


def test_redrive_without_queue_urls_is_a_usage_error(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INGEST_QUEUE_URL")
    run = cli("redrive")
    assert run.code == 2 and "INGEST_QUEUE_URL" in run.err
    assert cli("redrive", "--bogus").code == 2


# ----- backfill -----------------------------------------------------------------------------------


def test_backfill_validates_paces_and_summarises(stack: LocalStack, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text(
        "# location appointment\n"
        "0007BWpSzSwfiuSl0tR2 Hc3Jd8Fe2Gh5Ki9Lm0Np\n"
        "0007BWpSzSwfiuSl0tR2 ocQHyuzHvysMo5N5VsXc\n"
        "\n"
        "0007BWpSzSwfiuSl0tR2 bad/id\n"
        "only-an-appointment\n"
        "0007BWpSzSwfiuSl0tR2 Hc3Jd8Fe2Gh5Ki9Lm0Np\n"
        "a b c\n"
        "ve9EPM428h8vShlRW1KT Zy1Xw3Vu5Ts7Rq9Po2Nm\n"
    )
    run = cli("backfill", "--file", str(ids), "--rate", "4")
    assert run.code == 1  # partial: some lines were invalid
    assert "line 5: invalid appointmentId 'bad/id'" in run.err
    assert "line 6: only an appointment id and no --location" in run.err
    assert "line 8: expected" in run.err
    assert "backfill [" in run.err and "4/4 100%" in run.err
    header, _, values = run.out.splitlines()[-3:]
    assert header.split() == ["queued", "skipped", "invalid", "failed"]
    assert values.split() == ["3", "1", "3", "0"]
    # Three sends at 4/s: the 2nd and 3rd wait a quarter second each (fake clock, no real sleep).
    assert run.sleeps == pytest.approx([0.25, 0.25])

    queued = stack.drain(stack.ingest_queue_url, wait_seconds=0)
    assert len(queued) == 3
    webhook_ids = set()
    for message in queued:
        ingest = IngestMessage.decode(message["Body"])
        webhook = AppointmentWebhook.model_validate_json(ingest.body)
        assert webhook.type == "AppointmentUpdate"
        assert webhook.webhookId is not None and webhook.webhookId.startswith("backfill-")
        assert ingest.dedupe_id == webhook.webhookId
        assert ingest.trigger == "backfill"
        assert message["Attributes"]["MessageGroupId"] == webhook.appointment.id
        assert message["Attributes"]["MessageDeduplicationId"] == webhook.webhookId
        assert message["MessageAttributes"]["locationId"]["StringValue"] == webhook.locationId
        webhook_ids.add(webhook.webhookId)
    assert len(webhook_ids) == 3


def test_backfill_from_stdin_with_a_default_location_paces_at_the_default_rate(stack: LocalStack) -> None:
    lines = "".join(f"appt-{i}\n" for i in range(20))
    run = cli("backfill", "--location", "0007BWpSzSwfiuSl0tR2", stdin=lines)
    assert run.code == 0, run.err
    assert len(run.sleeps) == 19 and sum(run.sleeps) == pytest.approx(19 / 8)
    assert len(stack.drain(stack.ingest_queue_url, wait_seconds=0)) == 20
    assert "20/20 100%" in run.err


def test_backfill_rejects_rates_at_or_over_the_upstream_limit(stack: LocalStack) -> None:
    for rate in ("10", "25", "0"):
        run = cli("backfill", "--rate", rate, stdin="loc appt\n")
        assert run.code == 2 and "--rate" in run.err
    assert visible(stack, stack.ingest_queue_url) == 0


def test_backfill_dry_run_queues_nothing(stack: LocalStack) -> None:
    run = cli("backfill", "--dry-run", stdin="loc1 appt1\nloc1 appt2\n")
    assert run.code == 0
    assert "would queue loc1 appt1" in run.out
    assert visible(stack, stack.ingest_queue_url) == 0


# ----- replay -------------------------------------------------------------------------------------


class Capture(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CaptureHandler)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_type: str | None = None


class CaptureHandler(BaseHTTPRequestHandler):
    server: Capture

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        failing = self.server.fail_type and json.loads(body)["type"] == self.server.fail_type
        status = 500 if failing else 202
        payload = json.dumps({"status": "failed" if failing else "accepted"}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[Capture]:
    server = Capture()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def verify_ed25519(body: bytes, signature: str) -> None:
    key = serialization.load_pem_public_key((KEYS_DIR / "ed25519-public.pem").read_bytes())
    assert isinstance(key, Ed25519PublicKey)
    key.verify(base64.b64decode(signature), body)  # raises when invalid


def test_replay_resigns_samples_with_fresh_ids(capture: Capture) -> None:
    url = f"http://127.0.0.1:{capture.server_address[1]}/webhooks/appointments"
    run = cli("replay", "--url", url)
    samples = sorted((EVENTS_DIR / "webhooks").glob("*.json"))
    assert run.code == 0, run.out
    assert [line.split()[:2] for line in run.out.splitlines()] == [[f"{p.name}:", "202"] for p in samples]
    assert "replay [" in run.err and f"{len(samples)}/{len(samples)}" in run.err
    assert len(capture.requests) == len(samples)
    originals = {json.loads(p.read_bytes())["webhookId"] for p in samples}
    for path, headers, body in capture.requests:
        assert path == "/webhooks/appointments"
        verify_ed25519(body, headers["x-ghl-signature"])
        assert json.loads(body)["webhookId"] not in originals


def test_replay_keep_ids_and_reports_failures(capture: Capture) -> None:
    capture.fail_type = "AppointmentDelete"
    url = f"http://127.0.0.1:{capture.server_address[1]}/hook"
    sample = EVENTS_DIR / "webhooks" / "delete.json"
    other = EVENTS_DIR / "webhooks" / "create.json"
    run = cli("replay", "--url", url, "--keep-ids", "--scheme", "both", str(sample), str(other))
    assert run.code == 1
    assert "delete.json: 500" in run.out and "create.json: 202" in run.out
    sent = [json.loads(body)["webhookId"] for _, _, body in capture.requests]
    assert sent == [json.loads(sample.read_bytes())["webhookId"], json.loads(other.read_bytes())["webhookId"]]
    assert all("x-wh-signature" in headers for _, headers, _ in capture.requests)


def test_replay_to_a_closed_port_is_a_partial_failure() -> None:
    run = cli(
        "replay",
        "--url",
        "http://127.0.0.1:9/x",
        "--timeout",
        "2",
        str(EVENTS_DIR / "webhooks" / "create.json"),
    )
    assert run.code == 1 and "create.json: error" in run.out


# ----- redrive end to end -------------------------------------------------------------------------


def test_a_redriven_message_is_enriched_again(
    stack_env: dict[str, str], local_stack: LocalStack, sandbox: Any, poller: Any
) -> None:
    """Quarantined by the real enricher (upstream 422), redriven, then published: the
    idempotency claim was released, and FIFO dedupe did not swallow the redrive."""
    from dev.sandbox import Fault  # noqa: PLC0415

    raw = sample_webhook("update", webhook_id="wh-e2e-redrive")
    webhook = json.loads(raw)
    appointment_id = webhook["appointment"]["id"]
    IngestQueue(local_stack.client("sqs"), local_stack.ingest_queue_url).send(
        ingest_message(raw, "2026-01-01T00:00:00Z", "wh-e2e-redrive", {}),
        group_id=appointment_id,
        dedupe_id="wh-e2e-redrive",
        attributes={"eventType": webhook["type"], "locationId": webhook["locationId"]},
    )
    sandbox.queue_faults([Fault.error(422)], event_id=appointment_id)
    assert poller.poll_once() == 1
    assert visible(local_stack, local_stack.quarantine_queue_url) == 1

    run = cli("redrive", "--wait", "0", "--error-type", "UpstreamRejected")
    assert run.code == 0, run.err
    assert "moved 1," in run.out
    assert poller.poll_once() == 1
    records = [json.loads(m["Body"]) for m in local_stack.drain(local_stack.enriched_queue_url)]
    assert [(r["appointmentId"], r["webhookId"]) for r in records] == [(appointment_id, "wh-e2e-redrive")]
    assert visible(local_stack, local_stack.quarantine_queue_url) == 0


# ----- show ------------------------------------------------------------------------------------


def test_show_prints_what_the_ledger_holds_for_one_appointment(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    from appointment_enricher.dynamo_ledger import DynamoLedger  # noqa: PLC0415
    from appointment_enricher.ledger import LedgerEntry  # noqa: PLC0415

    monkeypatch.setenv("LEDGER_TABLE_NAME", stack.ledger_table_name)
    change = {
        "kind": "cancelled",
        "kinds": ["cancelled"],
        "changedFields": ["appointmentStatus"],
        "previous": {},
    }
    DynamoLedger(stack.client("dynamodb"), stack.ledger_table_name).save(
        LedgerEntry(
            appointment_id="ShowMe1",
            location_id="Loc1",
            date_updated=datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
            deleted=False,
            appointment={
                "id": "ShowMe1",
                "appointmentStatus": "cancelled",
                "startTime": "2026-12-01T10:00:00Z",
            },
            recent=(("wh-1", change),),
        )
    )
    run = cli("show", "ShowMe1")
    assert run.code == 0, run.err
    assert "2026-11-30T09:00:00.000Z" in run.out and "Loc1" in run.out
    assert "appointmentStatus" in run.out and "cancelled" in run.out and "wh-1" in run.out

    as_json = cli("show", "ShowMe1", "--json")
    view = json.loads(as_json.out)
    assert view["deleted"] is False and view["revision"] == 1 and view["locationId"] == "Loc1"
    assert view["recent"] == [{"dedupeId": "wh-1", "change": change}]

    missing = cli("show", "NotThere")
    assert missing.code == 1 and "not in the ledger" in missing.err
    assert cli("show", "bad id!").code == 2
