"""``make run`` / ``make demo`` as an operator meets them (the real ``python -m dev.stack.run`` in a
subprocess): the environment file plenrich reads, the quarantine left for plenrich, causes said
in words on the console, and every log line naming the function that wrote it."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from appointment_enricher.aws.queues import Quarantine
from dev.fakes.sandbox import SandboxServer
from dev.fakes.signing import EVENTS_DIR, make_webhook, signed_headers, webhook_snapshot

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
PLENRICH = Path(sys.executable).with_name("plenrich")
SEED_ID = "ocQHyuzHvysMo5N5VsXc"
UNKNOWN_ID = "OpsConsole404Appt1"
DEMO = (sys.executable, "-m", "dev.stack.run", "--demo", "--port", "0")
# The shell of whoever runs the tests must not steer the stack or the CLI somewhere else.
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("AWS_", "POWERLEADS_", "RECONCILE_"))
    and k not in ("INGEST_QUEUE_URL", "QUARANTINE_QUEUE_URL", "LEDGER_TABLE_NAME")
}


class Running:
    """``python -m dev.stack.run`` in serve mode; its stdout lines arrive on a queue."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dev.stack.run", "--port", "0", *argv],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=CLEAN_ENV,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match[str]:
        """The first line (from now on) matching ``pattern``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        pytest.fail(f"no line matching {pattern!r}; output so far:\n" + "\n".join(self.seen[-60:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Running, Path]]:
    env_file = tmp_path / "local-stack.env"
    run = Running("--reconcile-every", "0", "--env-file", str(env_file))
    try:
        yield run, env_file
    finally:
        run.stop()


def plenrich(env_file: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLENRICH), "--env-file", str(env_file), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=CLEAN_ENV,
        check=False,
    )


def env_of(env_file: Path) -> dict[str, str]:
    from plenrich.envfile import read  # noqa: PLC0415 - the CLI's own reader

    return read(str(env_file))


def test_make_run_names_an_env_file_that_plenrich_show_and_reconcile_use(
    running: tuple[Running, Path],
) -> None:
    run, env_file = running
    named = run.wait_for(r"CLI env +(\S+)").group(1)
    assert Path(named) == env_file
    run.wait_for(r"^Serving")
    env = env_of(env_file)
    for name in ("AWS_ENDPOINT_URL", "LEDGER_TABLE_NAME", "POWERLEADS_API_BASE_URL", "POWERLEADS_TOKEN"):
        assert env.get(name), name

    deadline = time.monotonic() + 30
    while (show := plenrich(env_file, "show", SEED_ID, "--json")).returncode != 0:
        assert time.monotonic() < deadline, show.stderr
        time.sleep(0.5)
    assert json.loads(show.stdout)["appointmentId"] == SEED_ID

    reconcile = plenrich(env_file, "reconcile", "--dry-run")
    assert reconcile.returncode == 0, reconcile.stderr
    assert "0007BWpSzSwfiuSl0tR2" in reconcile.stdout  # the sandbox's location, not production


def test_make_run_shows_the_quarantine_and_leaves_it_to_plenrich(running: tuple[Running, Path]) -> None:
    run, env_file = running
    run.wait_for(r"^Serving")
    env = env_of(env_file)
    sqs = boto3.client(
        "sqs",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    quarantine = Quarantine(sqs, env["QUARANTINE_QUEUE_URL"])
    count = 12  # more than one receive returns
    for number in range(count):
        quarantine.send(
            '{"not":"an ingest message"}',
            error_type="InvalidIngestMessage",
            error_message=f"operator console test {number}",
            source_message_id=f"ops-console-{number}",
        )
    said = r"!!! quarantined: InvalidIngestMessage: operator console test (\d+)"
    shown: set[str] = set()
    while len(shown) < count:
        shown.add(run.wait_for(said).group(1))
    assert shown == {str(number) for number in range(count)}
    assert any("left in the quarantine: .venv/bin/plenrich --env-file" in line for line in run.seen)
    time.sleep(2)  # a consuming reader would have deleted them by now
    inspect = plenrich(env_file, "inspect", "--json", "--wait", "0")
    assert inspect.returncode == 0, inspect.stderr
    assert [m["errorType"] for m in json.loads(inspect.stdout)] == ["InvalidIngestMessage"] * count
    redrive = plenrich(env_file, "redrive", "--wait", "0")
    assert redrive.returncode == 0, redrive.stderr
    assert f"moved {count}, skipped 0 (filtered), failed 0" in redrive.stdout


def test_a_404_within_the_grace_is_said_in_words(running: tuple[Running, Path]) -> None:
    run, _env_file = running
    gateway = run.wait_for(r"gateway +(http://\S+)").group(1)
    run.wait_for(r"^Serving")
    event = json.loads((EVENTS_DIR / "appointments" / f"{SEED_ID}.json").read_text())["event"]
    body = make_webhook("AppointmentUpdate", webhook_snapshot(event, id=UNKNOWN_ID), event["locationId"])
    response = requests.post(gateway, data=body, headers=signed_headers(body), timeout=15)
    assert response.status_code == 202, response.text
    run.wait_for(rf"{UNKNOWN_ID}: 404, retrying until the 120 s grace ends, next try in 6 min")


@pytest.mark.parametrize(
    ("tokens", "cause"),
    [
        ({"the-right-token": None}, "upstream 401: token rejected"),
        ({"not-the-sandbox-token": "SomeOtherLoc1"}, "upstream 403: the token may not read this location"),
    ],
    ids=["wrong token", "token of another location"],
)
def test_demo_with_a_token_powerleads_refuses_ends_with_the_cause(
    tmp_path: Path, tokens: dict[str, str | None], cause: str
) -> None:
    with SandboxServer(tokens=tokens) as powerleads:
        proc = subprocess.run(
            [
                *DEMO,
                *("--timeout", "5", "--powerleads-url", powerleads.url),
                *("--token", "not-the-sandbox-token", "--env-file", str(tmp_path / "demo.env")),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env=CLEAN_ENV,
            check=False,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    verdict = proc.stdout.split("DEMO FAILED:", 1)[1]
    assert "cause: " in verdict and cause in verdict, proc.stdout
    assert "not-the-sandbox-token" not in proc.stdout + proc.stderr  # never the token itself


# Which function writes a line, by its message (the handlers' own wording).
WRITERS = {
    "webhook": "WebhookFunction",
    "WEBHOOK_": "WebhookFunction",
    "record ": "EnricherFunction",
    "reconcile": "ReconcilerFunction",
    "recovered ": "ReconcilerFunction",
}


def writer(message: str) -> str | None:
    return next((name for prefix, name in WRITERS.items() if message.startswith(prefix)), None)


def test_every_log_line_names_the_function_that_wrote_it(tmp_path: Path) -> None:
    """All three functions in the one process of ``make run``, invoked concurrently (samples sent,
    records enriched, the reconciler every second): each JSON line names its own function, the
    receiver's cold start line included."""
    run = Running("--verbose", "--reconcile-every", "1", "--env-file", str(tmp_path / "run.env"))
    try:
        run.wait_for(r"^Serving")

        def logged() -> list[dict[str, Any]]:
            return [json.loads(line) for line in run.seen if line.startswith('{"level":')]

        while not (
            sum(line["message"].startswith("record ") for line in logged()) >= 4
            and any(line["message"] == "reconcile run" for line in logged())
        ):
            run.wait_for(r'^\{"level":')
    finally:
        run.stop()
    lines = logged()
    assert any(line["message"] == "webhook receiver ready" for line in lines), run.seen
    for line in lines:
        assert line.get("function_name") in WRITERS.values(), line
        assert writer(line["message"]) in (None, line["function_name"]), line
    assert {writer(line["message"]) for line in lines} == set(WRITERS.values()), lines
