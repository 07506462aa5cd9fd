"""``plenrich`` as an operator meets it: the installed console script in a subprocess, against moto
server, the sandbox PowerLeads API and a port nothing listens on. Every failure is one line that
names the cause and the fix, with the documented exit code (0 ok, 1 failure, 2 usage/config)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appointment_enricher.aws.queues import Quarantine
from dev.fakes.sandbox import SandboxServer
from dev.fakes.signing import ingest_message, sample_webhook
from dev.stack.awslocal import REGION, LocalStack, aws_base_env, create_resources, unique_suffix
from dev.stack.operator_env import cli_env, write_env_file
from dev.stack.reconcile_local import recent_event, reconciler_env
from tests.integration.test_iam_enforced import iam_moto, make_user  # noqa: F401 - iam_moto is a fixture

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).with_name("plenrich")
# What a shell might carry in that would change what the CLI reaches.
SCRUBBED = (
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "INGEST_QUEUE_URL",
    "QUARANTINE_QUEUE_URL",
    "DEAD_LETTER_QUEUE_URL",
    "LEDGER_TABLE_NAME",
    "POWERLEADS_API_BASE_URL",
    "POWERLEADS_TOKEN",
    "POWERLEADS_TOKEN_SECRET_ID",
    "RECONCILE_LOCATION_IDS",
    "PYTHONPATH",
)


def plenrich(*argv: str, cwd: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    # No shared config or credentials file: the lookups fail as on a fresh machine.
    env.update(AWS_CONFIG_FILE=str(cwd / "none"), AWS_SHARED_CREDENTIALS_FILE=str(cwd / "none"))
    env.update(AWS_EC2_METADATA_DISABLED="true", **variables)
    return subprocess.run(
        [str(SCRIPT), *argv], capture_output=True, text=True, timeout=120, cwd=cwd, env=env, check=False
    )


def one_line(run: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


PROGRESS = re.compile(r"^\w+( \(dry run\))?( \[[#-]+\] \d+/\d+ \d+%|: \d+ done)$")


def failure_line(run: subprocess.CompletedProcess[str]) -> str:
    """The one line on stderr that is not progress (a bar, ``N done``)."""
    lines = [line for line in run.stderr.splitlines() if line.strip() and not PROGRESS.match(line)]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


def dead_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: nothing listens there


@pytest.fixture
def stack(moto_server: str) -> LocalStack:
    return create_resources(moto_server, suffix=unique_suffix())


def aws(stack: LocalStack) -> dict[str, str]:
    return {**aws_base_env(stack.endpoint_url, REGION), "QUARANTINE_QUEUE_URL": stack.quarantine_queue_url}


# ----- help, version, usage ---------------------------------------------------------------------


def test_version_and_complete_help_texts(tmp_path: Path) -> None:
    version = plenrich("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.split() == ["plenrich", "0.1.0"], version
    reconcile = plenrich("reconcile", "--help", cwd=tmp_path, COLUMNS="100")
    assert reconcile.returncode == 0
    assert "keeping the cursors so the next run resumes there" in " ".join(reconcile.stdout.split())
    for command in ("redrive", "backfill"):
        text = plenrich(command, "--help", cwd=tmp_path).stdout
        flag = text.split("--ingest-queue-url", 2)[2]  # the options list, after the usage line
        assert "default: INGEST_QUEUE_URL" in " ".join(flag.split()[:4]), text
    top = plenrich("--help", cwd=tmp_path).stdout
    assert "--env-file FILE" in top and "--version" in top


HELP_ENTRY = re.compile(r"^  (\S.*?)(?:  +(\S.*))?$")


def undescribed(help_text: str) -> list[str]:
    """Options and arguments of a ``--help`` text that have no description."""
    lines = help_text.splitlines()
    missing = []
    for number, line in enumerate(lines):
        entry = HELP_ENTRY.match(line)
        if not entry or line.startswith("   "):
            continue
        follows = lines[number + 1] if number + 1 < len(lines) else ""
        if entry.group(2) is None and not follows.startswith(" " * 8):
            missing.append(entry.group(1))
    return missing


@pytest.mark.parametrize("command", ["inspect", "redrive", "backfill", "show", "reconcile"])
def test_every_flag_and_argument_of_every_command_is_described(tmp_path: Path, command: str) -> None:
    run = plenrich(command, "--help", cwd=tmp_path, COLUMNS="100")
    assert run.returncode == 0, run.stderr
    usage, description = run.stdout.split("\n\n")[:2]
    assert usage.startswith(f"usage: plenrich {command} ")
    assert not description.startswith(("options:", "positional arguments:")), run.stdout  # says what it does
    body = run.stdout.split("\n\n", 2)[2]
    assert undescribed(body) == [], run.stdout


def test_usage_errors_are_said_plainly_with_the_right_usage(tmp_path: Path) -> None:
    missing = plenrich("--env-file", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("usage: plenrich [-h]"), missing.stderr
    assert "plenrich: error: argument --env-file: expected one argument" in missing.stderr
    number = plenrich("inspect", "--max", "abc", cwd=tmp_path)
    assert number.returncode == 2
    assert "plenrich inspect: error: argument --max: expected a whole number, got 'abc'" in number.stderr


def test_a_mistyped_flag_shows_that_subcommands_usage(tmp_path: Path) -> None:
    run = plenrich("inspect", "--jsno", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.startswith("usage: plenrich inspect "), run.stderr
    assert "plenrich inspect: error: unrecognized arguments: --jsno" in run.stderr


# ----- AWS failures: one line each --------------------------------------------------------------


def test_no_region_is_one_line_and_a_usage_error(tmp_path: Path) -> None:
    run = plenrich(
        "inspect",
        "--quarantine-url",
        "https://sqs.example/1/q",
        cwd=tmp_path,
        AWS_ACCESS_KEY_ID="a",
        AWS_SECRET_ACCESS_KEY="b",
    )
    assert run.returncode == 2
    assert "no AWS region: pass --region or set AWS_DEFAULT_REGION" in one_line(run)


def test_no_credentials_is_one_line_naming_the_env_file(tmp_path: Path, stack: LocalStack) -> None:
    run = plenrich(
        "inspect",
        "--quarantine-url",
        stack.quarantine_queue_url,
        "--endpoint-url",
        stack.endpoint_url,
        cwd=tmp_path,
        AWS_DEFAULT_REGION=REGION,
    )
    assert run.returncode == 2
    line = one_line(run)
    assert "no AWS credentials: set AWS_PROFILE" in line and "--env-file" in line


def test_a_dead_endpoint_is_one_line(tmp_path: Path) -> None:
    dead = dead_endpoint()
    env = aws_base_env(dead, REGION)
    run = plenrich("inspect", "--quarantine-url", f"{dead}/123456789012/q", cwd=tmp_path, **env)
    assert run.returncode == 1
    line = one_line(run)
    assert f"cannot reach {dead}" in line and "make run" in line and "AWS_ENDPOINT_URL" in line


@pytest.mark.parametrize(
    "argv",
    [
        ("inspect",),
        ("inspect", "--json"),
        ("redrive",),
        ("redrive", "--dry-run"),
        ("show", "SomeAppointment1"),
        ("show", "SomeAppointment1", "--json"),
        ("backfill", "--location", "DeadLoc01"),
        ("reconcile", "--dry-run"),
    ],
    ids=" ".join,
)
def test_every_command_against_a_dead_endpoint_is_one_line(tmp_path: Path, argv: tuple[str, ...]) -> None:
    dead = dead_endpoint()
    env = {
        **aws_base_env(dead, REGION),
        "QUARANTINE_QUEUE_URL": f"{dead}/123456789012/q",
        "INGEST_QUEUE_URL": f"{dead}/123456789012/i.fifo",
        "LEDGER_TABLE_NAME": "ledger",
        "POWERLEADS_API_BASE_URL": "http://127.0.0.1:9",
        "POWERLEADS_TOKEN": "t",
    }
    ids = tmp_path / "ids"
    ids.write_text("DeadAppt01\nDeadAppt02\n")
    run = plenrich(*argv, *(("--file", str(ids)) if argv[0] == "backfill" else ()), cwd=tmp_path, **env)
    assert run.returncode == 1, run.stderr
    line = failure_line(run)
    assert f"cannot reach {dead}" in line and "AWS_ENDPOINT_URL" in line, line
    if argv[0] == "backfill":  # the first line's failure would be every line's: it stops there
        assert "line 1: send failed" in line and "line 2" not in run.stderr
    if "--json" in argv:
        assert run.stdout == ""  # no JSON at all rather than a claim that nothing is there


def test_an_unknown_queue_is_one_line(tmp_path: Path, stack: LocalStack) -> None:
    env = aws(stack)
    env["QUARANTINE_QUEUE_URL"] = stack.quarantine_queue_url + "-missing"
    run = plenrich("inspect", cwd=tmp_path, **env)
    assert run.returncode == 2
    assert "queue not found" in one_line(run)


def test_a_missing_ledger_table_is_one_line(tmp_path: Path, stack: LocalStack) -> None:
    run = plenrich("show", "SomeAppointment1", "--ledger-table", "no-such-table", cwd=tmp_path, **aws(stack))
    assert run.returncode == 2
    assert "ResourceNotFoundException" in one_line(run) and "LEDGER_TABLE_NAME" in one_line(run)


# ----- JSON -------------------------------------------------------------------------------------


def test_inspect_json_on_an_empty_queue_is_an_empty_array(tmp_path: Path, stack: LocalStack) -> None:
    run = plenrich("inspect", "--json", "--wait", "0", cwd=tmp_path, **aws(stack))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == []


def test_show_json_of_an_unknown_appointment_is_null(tmp_path: Path, stack: LocalStack) -> None:
    env = {**aws(stack), "LEDGER_TABLE_NAME": stack.ledger_table_name}
    run = plenrich("show", "NotInTheLedger1", "--json", cwd=tmp_path, **env)
    assert run.returncode == 1
    assert json.loads(run.stdout) is None


# ----- the env file make run writes -------------------------------------------------------------


def test_env_file_reaches_the_local_stack_and_sourcing_it_works_too(
    tmp_path: Path, stack: LocalStack
) -> None:
    functions_env = {
        **stack.env("http://127.0.0.1:9"),
        **reconciler_env({}, stack.ledger_table_name, "EnvFileLoc01"),
    }
    path = write_env_file(tmp_path / "local.env", cli_env(functions_env, "sandbox-token"))
    assert path.stat().st_mode & 0o077 == 0
    text = path.read_text()
    for name in ("AWS_ENDPOINT_URL", "LEDGER_TABLE_NAME", "POWERLEADS_API_BASE_URL", "POWERLEADS_TOKEN"):
        assert f"export {name}=" in text

    run = plenrich("--env-file", str(path), "inspect", "--json", "--wait", "0", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == []

    sourced = subprocess.run(
        ["bash", "-c", f'set -a; source "{path}"; "{SCRIPT}" inspect --json --wait 0'],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k not in SCRUBBED},
        check=False,
    )
    assert sourced.returncode == 0, sourced.stderr
    assert json.loads(sourced.stdout) == []


def test_a_missing_env_file_is_a_usage_error(tmp_path: Path) -> None:
    run = plenrich("--env-file", str(tmp_path / "absent.env"), "inspect", cwd=tmp_path)
    assert run.returncode == 2
    assert "--env-file" in one_line(run) and "No such file" in one_line(run)


# ----- reconcile: why, per location ---------------------------------------------------------------


def test_reconcile_with_a_rejected_token_says_why_per_location(
    tmp_path: Path, stack: LocalStack, sandbox: SandboxServer
) -> None:
    sandbox.put_appointment(recent_event("OpsReconAppt1", "OpsReconLoc01", "OpsReconCal01"))
    env = {
        **aws(stack),
        "INGEST_QUEUE_URL": stack.ingest_queue_url,
        "LEDGER_TABLE_NAME": stack.ledger_table_name,
        "POWERLEADS_API_BASE_URL": sandbox.url,
        "POWERLEADS_TOKEN": "not-the-sandbox-token",
        "POWERLEADS_MAX_ATTEMPTS": "1",
    }
    run = plenrich("reconcile", "--location", "OpsReconLoc01", "--dry-run", cwd=tmp_path, **env)
    assert run.returncode == 1
    assert "OpsReconLoc01: upstream 401: token rejected" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_redrive_moves_what_was_quarantined_when_it_began_and_not_what_comes_back(
    tmp_path: Path, stack: LocalStack
) -> None:
    """A message that fails again is quarantined again while the redrive runs; read again, it
    would be redriven again and again. Here the redriven copies go straight back into the
    quarantine (the ingest queue is the quarantine): an enricher that fails them at once."""
    quarantine = Quarantine(stack.client("sqs"), stack.quarantine_queue_url)
    for name in ("create", "update"):
        raw = sample_webhook(name, webhook_id=f"ops-loop-{name}")
        body = ingest_message(raw, "2026-01-01T00:00:00Z", f"ops-loop-{name}")
        quarantine.send(body, error_type="UpstreamRejected", error_message="422", source_message_id=name)
    env = {**aws(stack), "INGEST_QUEUE_URL": stack.quarantine_queue_url}
    run = plenrich("redrive", "--wait", "0", cwd=tmp_path, **env)
    assert run.returncode == 0, run.stderr
    assert "moved 2, skipped 0 (filtered), failed 0" in run.stdout, run.stdout
    assert "left 2 that failed again during this run (for the next one)" in run.stdout, run.stdout
    left = plenrich("inspect", "--json", "--wait", "0", cwd=tmp_path, **aws(stack))
    assert len(json.loads(left.stdout)) == 2  # the copies, for the next redrive


def test_reconcile_says_why_per_location_when_powerleads_or_the_table_fail(
    tmp_path: Path, stack: LocalStack, sandbox: SandboxServer
) -> None:
    sandbox.put_appointment(recent_event("OpsReconAppt2", "OpsReconLoc02", "OpsReconCal02"))
    env = {
        **aws(stack),
        "INGEST_QUEUE_URL": stack.ingest_queue_url,
        "LEDGER_TABLE_NAME": stack.ledger_table_name,
        "POWERLEADS_API_BASE_URL": dead_endpoint(),
        "POWERLEADS_TOKEN": "sandbox-token",
        "POWERLEADS_MAX_ATTEMPTS": "1",
    }
    unreachable = plenrich("reconcile", "--location", "OpsReconLoc02", "--dry-run", cwd=tmp_path, **env)
    assert unreachable.returncode == 1
    assert "OpsReconLoc02: PowerLeads unreachable" in unreachable.stderr, unreachable.stderr
    assert "check POWERLEADS_API_BASE_URL" in unreachable.stderr

    env.update(POWERLEADS_API_BASE_URL=sandbox.url, LEDGER_TABLE_NAME="no-such-ledger")
    no_table = plenrich("reconcile", "--location", "OpsReconLoc02", "--dry-run", cwd=tmp_path, **env)
    assert no_table.returncode == 1
    assert (
        "OpsReconLoc02: ledger unreadable: ResourceNotFoundException: no such table; check "
        in no_table.stderr
    )
    assert "LEDGER_TABLE_NAME" in no_table.stderr and "Traceback" not in no_table.stderr

    everywhere = plenrich("reconcile", "--dry-run", cwd=tmp_path, **env)  # the ledger names the locations
    assert everywhere.returncode == 2
    assert "ResourceNotFoundException (GetItem)" in one_line(everywhere)


# ----- IAM enforced: access denied, credentials AWS does not know ---------------------------------


@pytest.fixture
def enforced(request: pytest.FixtureRequest) -> tuple[LocalStack, str, tuple[str, str]]:
    """A stack on the moto server that enforces IAM (test_iam_enforced's, shared)."""
    url, admin = request.getfixturevalue("iam_moto")
    return create_resources(url, suffix=unique_suffix(), access_key=admin), url, admin


def test_access_denied_is_one_line_naming_the_operation(
    tmp_path: Path, enforced: tuple[LocalStack, str, tuple[str, str]]
) -> None:
    stack, url, admin = enforced
    key, secret = make_user(url, admin, [])  # a user without any policy
    env = {**aws(stack), "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    env.pop("AWS_SESSION_TOKEN")
    run = plenrich("inspect", cwd=tmp_path, **env)
    assert run.returncode == 1
    line = one_line(run)
    assert "access denied (ReceiveMessage)" in line and "AWS_PROFILE" in line


def test_credentials_aws_does_not_know_are_one_line(
    tmp_path: Path, enforced: tuple[LocalStack, str, tuple[str, str]]
) -> None:
    stack, _url, _admin = enforced
    env = {**aws(stack), "AWS_ACCESS_KEY_ID": "AKIAUNKNOWNUNKNOWN00", "AWS_SECRET_ACCESS_KEY": "x"}
    env.pop("AWS_SESSION_TOKEN")
    run = plenrich("inspect", cwd=tmp_path, **env)
    assert run.returncode == 2
    assert "AWS rejected the credentials" in one_line(run)


def test_backfill_to_an_unknown_queue_says_why_once_and_stops(tmp_path: Path, stack: LocalStack) -> None:
    env = {**aws(stack), "INGEST_QUEUE_URL": stack.ingest_queue_url.replace(".fifo", "-missing.fifo")}
    ids = tmp_path / "ids.txt"
    ids.write_text("OpsBackfillLoc1 OpsBackfillAppt1\nOpsBackfillLoc1 OpsBackfillAppt2\nOpsBackfillLoc1 A3\n")
    run = plenrich("backfill", "--file", str(ids), "--rate", "9", cwd=tmp_path, **env)
    assert run.returncode == 2  # an unknown queue: configuration (cli/README.md)
    assert "line 1: send failed: queue not found" in run.stderr and "line 2" not in run.stderr, run.stderr
    assert "(stopped: the 2 line(s) after it were not sent)" in run.stderr and "Traceback" not in run.stderr


def test_redrive_to_an_unknown_queue_stops_at_the_first_and_leaves_the_rest(
    tmp_path: Path, stack: LocalStack
) -> None:
    quarantine = Quarantine(stack.client("sqs"), stack.quarantine_queue_url)
    for name in ("create", "update"):
        raw = sample_webhook(name, webhook_id=f"ops-redrive-{name}")
        body = ingest_message(raw, "2026-01-01T00:00:00Z", f"ops-redrive-{name}")
        quarantine.send(body, error_type="UpstreamRejected", error_message="422", source_message_id=name)
    env = {**aws(stack), "INGEST_QUEUE_URL": stack.ingest_queue_url.replace(".fifo", "-missing.fifo")}
    run = plenrich("redrive", cwd=tmp_path, **env)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("send failed for") == 1 and "queue not found (SendMessage)" in run.stderr
    assert "(stopped: the rest stay quarantined)" in run.stderr
    left = plenrich("inspect", "--json", "--wait", "0", cwd=tmp_path, **aws(stack))
    assert len(json.loads(left.stdout)) == 2  # both still quarantined


def test_reconcile_refuses_local_aws_with_production_powerleads(tmp_path: Path, stack: LocalStack) -> None:
    env = {
        **aws(stack),
        "INGEST_QUEUE_URL": stack.ingest_queue_url,
        "LEDGER_TABLE_NAME": stack.ledger_table_name,
        "POWERLEADS_TOKEN": "some-token",
    }
    run = plenrich("reconcile", "--location", "OpsReconLoc01", "--dry-run", cwd=tmp_path, **env)
    assert run.returncode == 2
    line = one_line(run)
    assert "POWERLEADS_API_BASE_URL is unset, which means production PowerLeads" in line
    assert "--env-file" in line
