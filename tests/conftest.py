"""Shared fixtures: embedded AWS (moto server over HTTP), the sandbox PowerLeads API, the env.

Scopes (everything is lazy; unit tests that use none of these start nothing):

* ``moto_server`` (session): endpoint URL of one in-process moto server.
* ``local_stack`` (function): the template's resources created *fresh for each test* on that
  server under a unique name suffix, so tests never see each other's messages.
* ``sandbox_server`` (session) / ``sandbox`` (function): one sandbox PowerLeads API; ``sandbox``
  resets its faults, latency, request log and rate limiter before each test.
* ``stack_env`` (function): the runtime-contract env (docs/ARCHITECTURE.md) for ``local_stack`` + ``sandbox``
  applied with monkeypatch (restored after the test); returns the dict.
* ``webhook_handler`` / ``enricher_handler`` (function): ``functions/<name>/app.py`` loaded
  afresh *after* ``stack_env`` (a cold start reading this test's env).
* ``gateway`` (function): the local HTTP API in front of ``webhook_handler``, started.
* ``poller`` (function): an ``SqsPoller`` for ``enricher_handler`` on the ingest queue, *not*
  started: call ``poller.poll_once()`` for deterministic steps, or ``poller.start()``.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dev.fakes.lambda_loader import Handler
    from dev.fakes.sandbox import SandboxServer
    from dev.stack.awslocal import LocalStack
    from dev.stack.gateway import Gateway
    from dev.stack.poller import SqsPoller

# Folders that hold no project source, whatever git says (build output, venvs, bench's peer venv).
NOT_SOURCE = {".venv", ".venv-sam", ".aws-sam", "__pycache__", "site-packages", "build", "out"}


def python_files(folder: Path) -> list[Path]:
    """The project's ``.py`` files under ``folder``: what git tracks or would track (untracked
    files not ignored count), never what a tool left there (``make bench``'s peer venv in
    ``bench/out`` holds thousands of other people's modules). Outside a checkout: a walk that
    skips the folders in ``NOT_SOURCE``."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "."],
            cwd=folder,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode()
        paths = [folder / name for name in listed.split("\0") if name.endswith(".py")]
    except (OSError, subprocess.SubprocessError):
        paths = list(folder.rglob("*.py"))
    return sorted(p for p in paths if p.is_file() and not NOT_SOURCE & set(p.relative_to(folder).parts[:-1]))


# Contract variables a developer's shell might carry into the tests; stack_env clears them.
CONTRACT_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "INGEST_QUEUE_URL",
    "OUTPUT_TOPIC_ARN",
    "OUTPUT_QUEUE_URL",
    "QUARANTINE_QUEUE_URL",
    "DEAD_LETTER_QUEUE_URL",  # the old name of QUARANTINE_QUEUE_URL, still read
    "IDEMPOTENCY_TABLE_NAME",
    "LEDGER_TABLE_NAME",
    "NOT_FOUND_GRACE_SECONDS",
    "POWERLEADS_API_BASE_URL",
    "POWERLEADS_API_VERSION",
    "POWERLEADS_TOKEN_SECRET_ID",
    "POWERLEADS_TOKEN",
    "WEBHOOK_ED25519_PUBLIC_KEY",
    "WEBHOOK_RSA_PUBLIC_KEY",
    "WEBHOOK_SIGNATURE_REQUIRED",
    "WEBHOOK_MAX_AGE_SECONDS",
    "WEBHOOK_APP_IDS",
    "WEBHOOK_LOCATION_IDS",
    "RECONCILE_LOCATION_IDS",
    "RECONCILE_LOOKBACK_DAYS",
    "RECONCILE_LOOKAHEAD_DAYS",
)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from dev.stack.awslocal import start_moto_server  # noqa: PLC0415 - only tests that need it pay

    server, endpoint_url = start_moto_server()
    yield endpoint_url
    server.stop()


@pytest.fixture
def local_stack(moto_server: str) -> LocalStack:
    from dev.stack.awslocal import create_resources  # noqa: PLC0415

    return create_resources(moto_server, suffix=uuid.uuid4().hex[:10])


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    from dev.fakes.sandbox import SandboxServer  # noqa: PLC0415

    server = SandboxServer().start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture
def stack_env(
    local_stack: LocalStack, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    for name in CONTRACT_VARS:
        monkeypatch.delenv(name, raising=False)
    env = local_stack.env(
        sandbox.url,
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="WARNING",
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def webhook_handler(stack_env: dict[str, str]) -> Handler:
    from dev.fakes.lambda_loader import load_handler  # noqa: PLC0415

    return load_handler("webhook")


@pytest.fixture
def enricher_handler(stack_env: dict[str, str]) -> Handler:
    from dev.fakes.lambda_loader import load_handler  # noqa: PLC0415

    return load_handler("enricher")


@pytest.fixture
def gateway(webhook_handler: Handler) -> Iterator[Gateway]:
    from dev.stack.gateway import Gateway  # noqa: PLC0415

    with Gateway(webhook_handler) as gw:
        yield gw


@pytest.fixture
def poller(enricher_handler: Handler, local_stack: LocalStack) -> Iterator[SqsPoller]:
    from dev.stack.poller import SqsPoller  # noqa: PLC0415

    p = SqsPoller(
        enricher_handler,
        local_stack.ingest_queue_url,
        sqs_client=local_stack.client("sqs"),
        wait_time_seconds=1,
    )
    yield p
    p.stop()


def drain(local_stack: LocalStack, queue_url: str, wait_seconds: int = 1) -> list[dict[str, object]]:
    """Kept for tests written against it: the one drainer is ``LocalStack.drain`` (dev/stack/sqs.py)."""
    return local_stack.drain(queue_url, wait_seconds)
