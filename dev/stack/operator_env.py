"""The local stack's environment for the operations CLI, written to a file ``make run`` names.

``source FILE`` in a shell, or ``plenrich --env-file FILE``: either way ``inspect``, ``redrive``,
``backfill``, ``show`` and ``reconcile`` reach the local stack (moto's endpoint, dummy credentials,
the queues, the topic, the ledger table, the sandbox PowerLeads API), never AWS or production.

Dev only, never ships. The file is written with mode 0600; it never holds a real PowerLeads
token (``POWERLEADS_TOKEN`` only when it is the sandbox's; a real one stays in the local secret,
``POWERLEADS_TOKEN_SECRET_ID``).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ENV_FILE = REPO_ROOT / ".run" / "local-stack.env"

# What the CLI reads, in the order the file lists them.
CLI_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "INGEST_QUEUE_URL",
    "QUARANTINE_QUEUE_URL",
    "OUTPUT_TOPIC_ARN",
    "OUTPUT_QUEUE_URL",
    "LEDGER_TABLE_NAME",
    "IDEMPOTENCY_TABLE_NAME",
    "POWERLEADS_API_BASE_URL",
    "POWERLEADS_API_VERSION",
    "POWERLEADS_TOKEN_SECRET_ID",
    "RECONCILE_LOCATION_IDS",
    "RECONCILE_LOOKBACK_DAYS",
    "RECONCILE_LOOKAHEAD_DAYS",
)


def cli_env(environ: Mapping[str, str], sandbox_token: str | None) -> dict[str, str]:
    """The CLI's variables out of the local functions' environment (plus the sandbox token)."""
    env = {name: environ[name] for name in CLI_VARIABLES if environ.get(name)}
    if sandbox_token:
        env["POWERLEADS_TOKEN"] = sandbox_token
    return env


def render(env: Mapping[str, str]) -> str:
    lines = [
        "# The local stack (make run) for plenrich: `source` this file, or plenrich --env-file FILE.",
        "# Valid while that make run keeps running; rewritten by the next one. Sourced, it points every",
        "# AWS tool of that shell at the local stack until the shell ends.",
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    return "\n".join(lines) + "\n"


def write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    """Write ``env`` to ``path`` (mode 0600, parents created); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(render(env))
    os.chmod(path, 0o600)
    return path
