"""Replay the signed sample webhooks against a receiver (dev only: signs with the dev keys).

    python -m dev.tools.replay [--url URL] [--keep-ids] [--scheme ed25519|rsa|both|none]
                               [--timeout 10] [FILE ...]

Each body (default: ``events/webhooks/*.json``) gets a fresh ``webhookId`` (unless ``--keep-ids``)
and a current ``timestamp``, is signed with ``dev/keys/`` and POSTed; only a stack configured with
the dev public keys accepts them. One line per file on stdout, progress on stderr.
Exit codes: 0 every file answered 2xx, 1 some did not (or could not be read or sent), 2 usage error.
(Formerly ``plenrich replay``; the operations CLI in ``cli/`` carries no dev keys.)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from dev.fakes.signing import EVENTS_DIR, restamp, signed_headers
from plenrich.output import Progress, truncate

OK, PARTIAL, USAGE = 0, 1, 2
DEFAULT_REPLAY_URL = "http://127.0.0.1:3000/webhooks/appointments"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dev.tools.replay", description="POST the signed sample webhooks to a URL"
    )
    parser.add_argument("files", nargs="*", help="webhook bodies (default: events/webhooks/*.json)")
    parser.add_argument("--url", default=DEFAULT_REPLAY_URL)
    parser.add_argument("--keep-ids", action="store_true", help="keep each file's webhookId")
    parser.add_argument("--scheme", choices=("ed25519", "rsa", "both", "none"), default="ed25519")
    parser.add_argument("--timeout", type=float, default=10.0)
    return parser


def _replay_one(path: Path, args: argparse.Namespace, post: Callable[..., Any], out: IO[str]) -> bool:
    """POST one file; True when it was answered 2xx."""
    try:
        original = path.read_bytes()
        webhook_id = json.loads(original).get("webhookId") if args.keep_ids else None
        body = restamp(original, webhook_id=webhook_id)
    except (OSError, ValueError, AttributeError) as exc:
        out.write(f"{path.name}: unreadable ({type(exc).__name__})\n")
        return False
    try:
        response = post(args.url, data=body, headers=signed_headers(body, args.scheme), timeout=args.timeout)
        status, text = int(response.status_code), str(response.text)
    except Exception as exc:  # noqa: BLE001 - network errors are reported per file
        out.write(f"{path.name}: error {type(exc).__name__}\n")
        return False
    out.write(f"{path.name}: {status} {truncate(text, 120)}\n")
    return 200 <= status < 300


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    http_post: Callable[..., Any] | None = None,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    paths = [Path(p) for p in args.files] or sorted((EVENTS_DIR / "webhooks").glob("*.json"))
    if not paths:
        err.write("python -m dev.tools.replay: error: no webhook files to replay\n")
        return USAGE
    if http_post is None:
        import requests  # noqa: PLC0415 - keeps `--help` fast

        http_post = requests.post
    failures = 0
    progress = Progress("replay", len(paths), err)
    for path in paths:
        if not _replay_one(path, args, http_post, out):
            failures += 1
        progress.advance()
    progress.close()
    return PARTIAL if failures else OK


if __name__ == "__main__":
    raise SystemExit(main())
