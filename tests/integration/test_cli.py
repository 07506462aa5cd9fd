"""``plenrich`` (cli/plenrich) against the local stack: moto server over HTTP, in process through
``plenrich.main.main`` and once as the installed console script."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appointment_enricher.aws.queues import IngestQueue, Quarantine
from appointment_enricher.models import AppointmentWebhook
from appointment_enricher.wire import IngestMessage
from dev.fakes.signing import ingest_message, sample_webhook
from dev.stack.awslocal import REGION, LocalStack, aws_base_env, create_resources, unique_suffix
from dev.stack.sqs import queue_depth
from plenrich.context import Env
from plenrich.main import main
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    """Fresh queues per test; the CLI finds them through the functions' variables only."""
    stack = create_resources(moto_server, suffix=unique_suffix())
    for name, value in aws_base_env(moto_server, REGION).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("INGEST_QUEUE_URL", stack.ingest_queue_url)
    monkeypatch.delenv("DEAD_LETTER_QUEUE_URL", raising=False)
    monkeypatch.setenv("QUARANTINE_QUEUE_URL", stack.quarantine_queue_url)
    return stack


class Run:
    def __init__(self, code: int, out: str, err: str, sleeps: list[float]) -> None:
        self.code, self.out, self.err, self.sleeps = code, out, err, sleeps


def cli(*argv: str, stdin: str = "") -> Run:
    fake = FakeClock()
    out, err = io.StringIO(), io.StringIO()
    env = Env(stdout=out, stderr=err, stdin=io.StringIO(stdin), sleep=fake.sleep, clock=fake)
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
    records = json.loads(run.out)
    assert [r["errorType"] for r in records] == ["UpstreamRejected"]
    assert records[0]["appointmentId"] == "Hc3Jd8Fe2Gh5Ki9Lm0Np"
    assert visible(stack, stack.quarantine_queue_url) == 3


def test_the_quarantine_queue_flag_its_alias_and_both_variables(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--quarantine-url`` and its older name ``--dlq-url`` are one flag; without either, the
    functions' ``QUARANTINE_QUEUE_URL`` wins over its older name ``DEAD_LETTER_QUEUE_URL``."""
    seed(stack)
    url = stack.quarantine_queue_url
    monkeypatch.delenv("QUARANTINE_QUEUE_URL")
    for flags in (["--quarantine-url", url], ["--dlq-url", url]):
        run = cli("inspect", "--wait", "0", *flags)
        assert run.code == 0 and "3 message(s)" in run.out, run.err
    missing = cli("inspect")
    assert missing.code == 2
    assert "--quarantine-url (or --dlq-url) or QUARANTINE_QUEUE_URL (or DEAD_LETTER_QUEUE_URL)" in missing.err
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", url)
    assert "3 message(s)" in cli("inspect", "--wait", "0").out
    monkeypatch.setenv("QUARANTINE_QUEUE_URL", url)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", "http://127.0.0.1:9/not-this-one")
    assert "3 message(s)" in cli("inspect", "--wait", "0").out


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


# ----- redrive end to end -------------------------------------------------------------------------


def test_a_redriven_message_is_enriched_again(
    stack_env: dict[str, str], local_stack: LocalStack, sandbox: Any, poller: Any
) -> None:
    """Quarantined by the real enricher (upstream 422), redriven, then published: the
    idempotency claim was released, and FIFO dedupe did not swallow the redrive."""
    from dev.fakes.sandbox import Fault  # noqa: PLC0415

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

    from appointment_enricher.ledger.base import LedgerEntry  # noqa: PLC0415
    from appointment_enricher.ledger.dynamodb import DynamoLedger  # noqa: PLC0415

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


# ----- the installed console script -----------------------------------------------------------


def installed_plenrich() -> str:
    """The ``plenrich`` script beside this interpreter (``make`` installs ``-e ./cli`` in .venv)."""
    script = shutil.which("plenrich", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.fail("no plenrich script beside the interpreter: install the CLI (pip install -e ./cli)")
    return script


def test_the_console_script_runs_help_and_a_real_command(stack: LocalStack, tmp_path: Path) -> None:
    script = installed_plenrich()
    # Run from elsewhere, with nothing of the repository on the path: the script finds its own
    # package and the appointment_enricher it ships.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    help_run = subprocess.run(
        [script, "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env, check=False
    )
    assert help_run.returncode == 0, help_run.stderr
    for command in ("inspect", "redrive", "backfill", "show", "reconcile"):
        assert command in help_run.stdout
    assert "replay" not in help_run.stdout  # dev tooling: python -m dev.tools.replay

    seed(stack)
    run = subprocess.run(
        [script, "inspect", "--wait", "0", "--json", "--error-type", "UpstreamRejected"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    records = json.loads(run.stdout)
    assert [(r["errorType"], r["appointmentId"]) for r in records] == [
        ("UpstreamRejected", "Hc3Jd8Fe2Gh5Ki9Lm0Np")
    ]
    assert visible(stack, stack.quarantine_queue_url) == 3
    usage = subprocess.run(
        [script, "redrive", "--bogus"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert usage.returncode == 2
