"""The Makefile and the sample events as a newcomer meets them: ``make help``, ``make events`` (fresh
signatures the real webhook handler accepts today), ``make sam-validate``'s progress, and the
notes beside the events."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from dev.fakes.lambda_context import make_context
from dev.fakes.lambda_loader import load_function_module

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def make(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_make_help_lists_every_target_with_its_description() -> None:
    run = make("help")
    assert run.returncode == 0, run.stderr
    listed = dict(re.findall(r"^  (\S+) +(.+)$", run.stdout, flags=re.MULTILINE))
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, flags=re.MULTILINE))
    assert targets - set(listed) == set(), run.stdout
    for target in ("run", "demo", "test", "events", "sam-validate", "help"):
        assert listed[target].strip(), target
    bare = make()  # what a newcomer types first
    assert bare.returncode == 0 and bare.stdout == run.stdout, bare.stdout + bare.stderr


def test_make_events_writes_fresh_signatures_the_receiver_accepts_now(
    tmp_path: Path, stack_env: dict[str, str]
) -> None:
    out = tmp_path / "events"
    run = make("events", f"OUT={out}")
    assert run.returncode == 0, run.stderr
    handler = load_function_module("webhook").lambda_handler  # the real clock: signed just now
    for name in ("create", "update", "delete", "recurring-instance-rsa"):
        event = json.loads((out / "apigw" / f"{name}.json").read_text())
        response = handler(event, make_context("WebhookFunction"))
        assert response["statusCode"] == 202, (name, response)
    tampered = json.loads((out / "apigw" / "bad-signature.json").read_text())
    assert handler(tampered, make_context("WebhookFunction"))["statusCode"] == 401
    assert (out / "sqs" / "batch.json").is_file() and (out / "webhooks" / "create.json").is_file()


def test_sam_validate_says_what_it_does_while_it_builds_its_venv() -> None:
    run = make("-n", "-B", "sam-validate")
    assert run.returncode == 0, run.stderr
    assert "building .venv-sam for the SAM CLI" in run.stdout
    assert "installing requirements-sam.txt" in run.stdout


def test_the_first_make_run_says_it_builds_the_venv_before_it_goes_quiet() -> None:
    run = make("-n", "-B", ".venv/.installed")  # what a first `make run` does before it runs
    assert run.returncode == 0, run.stderr
    said = run.stdout.splitlines()
    building = next(i for i, line in enumerate(said) if "building .venv from requirements-dev.txt" in line)
    assert "a few minutes" in said[building]
    assert building < next(i for i, line in enumerate(said) if "pip install --quiet" in line)


def test_the_events_have_a_readme_and_the_architecture_lists_every_folder() -> None:
    readme = (REPO_ROOT / "events" / "README.md").read_text()
    for needed in ("make events", "sam local invoke", "WEBHOOK_MAX_AGE_SECONDS", "--env-vars"):
        assert needed in readme, needed
    architecture = (REPO_ROOT / "docs" / "ARCHITECTURE.md").read_text()
    for folder in sorted(p.name for p in (REPO_ROOT / "events").iterdir() if p.is_dir()):
        assert f"{folder}/" in architecture.split("events/", 1)[1].split("schemas/", 1)[0], folder
    assert "as before" not in (REPO_ROOT / "README.md").read_text()
