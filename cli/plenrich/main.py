"""The ``plenrich`` command line: the parser, and the dispatch to each command's module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from plenrich import envfile
from plenrich.backfill import cmd_backfill
from plenrich.context import PARTIAL, USAGE, Env, UsageError, aws_endpoint
from plenrich.failures import describe
from plenrich.ledger import cmd_reconcile, cmd_show
from plenrich.queues import cmd_inspect, cmd_redrive


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _quarantine_default() -> str | None:
    return os.environ.get("QUARANTINE_QUEUE_URL") or os.environ.get("DEAD_LETTER_QUEUE_URL")


def _quarantine_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--quarantine-url",
        "--dlq-url",
        dest="quarantine_url",
        default=_quarantine_default(),
        metavar="URL",
        help="quarantine queue (default: QUARANTINE_QUEUE_URL, else DEAD_LETTER_QUEUE_URL); "
        "--dlq-url is the older name of this flag",
    )
    sub.add_argument(
        "--error-type",
        action="append",
        default=[],
        metavar="TYPE",
        help="only messages of this errorType, e.g. AppointmentNotFound (repeatable)",
    )
    sub.add_argument(
        "--max", type=_positive_int, default=0, metavar="N", help="at most N messages (default: all)"
    )
    sub.add_argument("--visibility-timeout", type=_positive_int, default=120, help=argparse.SUPPRESS)
    sub.add_argument("--wait", type=int, default=1, help=argparse.SUPPRESS)


def _queue_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inspect = commands.add_parser(
        "inspect",
        help="show quarantined messages and why, consuming none",
        description="List the quarantined messages with their errorType, errorMessage and appointment; "
        "every message stays in the quarantine.",
    )
    _quarantine_flags(inspect)
    inspect.add_argument(
        "--json", action="store_true", help="a JSON array, one message per line ([] when none)"
    )
    inspect.set_defaults(run=cmd_inspect)

    redrive = commands.add_parser(
        "redrive",
        help="move quarantined messages back to the ingest queue",
        description="Send quarantined messages back to the ingest queue (a fresh dedupe id each), then "
        "delete them from the quarantine; a message whose send fails stays quarantined.",
    )
    _quarantine_flags(redrive)
    redrive.add_argument(
        "--ingest-queue-url",
        default=os.environ.get("INGEST_QUEUE_URL"),
        metavar="URL",
        help="default: INGEST_QUEUE_URL",
    )
    redrive.add_argument("--dry-run", action="store_true", help="list what would move; move nothing")
    redrive.set_defaults(run=cmd_redrive)

    backfill = commands.add_parser(
        "backfill",
        help="re-enrich appointments from a list of ids",
        description="Queue one ingest message per appointment, paced under the upstream rate limit; "
        "the enricher fetches and publishes each as it would a webhook (trigger backfill).",
    )
    backfill.add_argument(
        "--file", metavar="FILE", help="'<locationId> <appointmentId>' per line, # comments (default: stdin)"
    )
    backfill.add_argument(
        "--location", metavar="LOCATION_ID", help="location for lines that hold only an appointment id"
    )
    backfill.add_argument(
        "--rate", type=float, default=8.0, metavar="N", help="N messages per second (below 10; default 8)"
    )
    backfill.add_argument(
        "--ingest-queue-url",
        default=os.environ.get("INGEST_QUEUE_URL"),
        metavar="URL",
        help="default: INGEST_QUEUE_URL",
    )
    backfill.add_argument("--dry-run", action="store_true", help="validate and list; queue nothing")
    backfill.set_defaults(run=cmd_backfill)


def _ledger_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    show = commands.add_parser(
        "show",
        help="what the ledger holds for one appointment",
        description="The ledger's entry for one appointment: its last announced state and the recent "
        "deliveries with what changed. Exit 1 when it is not in the ledger.",
    )
    show.add_argument("appointment_id", metavar="APPOINTMENT_ID", help="the appointment's id")
    show.add_argument(
        "--ledger-table",
        default=os.environ.get("LEDGER_TABLE_NAME"),
        metavar="NAME",
        help="default: LEDGER_TABLE_NAME",
    )
    show.add_argument("--json", action="store_true", help="one JSON object (null when not in the ledger)")
    show.set_defaults(run=cmd_show)

    reconcile = commands.add_parser(
        "reconcile",
        help="recover appointment changes no webhook delivered",
        description="Run the reconciler here with the function's variables: INGEST_QUEUE_URL, "
        "LEDGER_TABLE_NAME, POWERLEADS_API_BASE_URL, POWERLEADS_TOKEN or POWERLEADS_TOKEN_SECRET_ID, "
        "RECONCILE_* (the file `make run` writes has them all for the local stack).",
    )
    reconcile.add_argument(
        "--location",
        action="append",
        default=[],
        metavar="LOCATION_ID",
        help="sweep this location (repeatable; default: RECONCILE_LOCATION_IDS and every location "
        "the ledger knows)",
    )
    reconcile.add_argument(
        "--ingest-queue-url", default=None, metavar="URL", help="default: INGEST_QUEUE_URL"
    )
    reconcile.add_argument(
        "--dry-run", action="store_true", help="list what would be enqueued; enqueue nothing"
    )
    reconcile.add_argument(
        "--max-seconds",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="stop after SECONDS (default 600), keeping the cursors so the next run resumes there",
    )
    reconcile.set_defaults(run=cmd_reconcile)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - only for --version

    try:
        return version("plenrich")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plenrich",
        description="Operate the PowerLeads appointment enricher (AWS or the local stack).",
        epilog="Exit codes: 0 ok, 1 failure (items failed; AWS or PowerLeads refused or unreachable), "
        "2 usage or configuration error. Every failure is one line on stderr: the cause and the fix.",
    )
    parser.add_argument(
        "--endpoint-url", default=None, metavar="URL", help="AWS endpoint (default: AWS_ENDPOINT_URL / AWS)"
    )
    parser.add_argument(
        "--region", default=None, metavar="REGION", help="AWS region (default: the usual boto3 lookup)"
    )
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        help="read NAME=VALUE lines (the file `make run` writes; `export` and quotes allowed) into the "
        "environment first; they win over the shell's",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _queue_commands(commands)
    _ledger_commands(commands)
    for sub in commands.choices.values():  # the shared flags are welcome after the command too
        sub.add_argument(
            "--endpoint-url", default=argparse.SUPPRESS, metavar="URL", help="AWS endpoint (see plenrich -h)"
        )
        sub.add_argument("--region", default=argparse.SUPPRESS, help="AWS region (see plenrich -h)")
        sub.add_argument(
            "--env-file", metavar="FILE", default=argparse.SUPPRESS, help="NAME=VALUE file (see plenrich -h)"
        )
    return parser


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen: argparse.ArgumentParser = action.choices[name]
            return chosen
    return parser


def _load_env_file(argv: Sequence[str], env: Env) -> bool:
    """Apply ``--env-file`` before the parser reads its defaults from the environment."""
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--env-file")
    try:
        known, _rest = pre.parse_known_args(list(argv))
    except argparse.ArgumentError:
        return True  # e.g. --env-file without a value: the real parser says so, with the right usage
    if not known.env_file:
        return True
    try:
        os.environ.update(envfile.read(known.env_file))
    except envfile.EnvFileError as exc:
        env.stderr.write(f"plenrich: error: --env-file {known.env_file}: {exc}\n")
        return False
    return True


def main(argv: Sequence[str] | None = None, env: Env | None = None) -> int:
    env = env or Env()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not _load_env_file(argv, env):
        return USAGE
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:  # argparse would show the top-level usage; the subcommand's is the useful one
            _subcommand(parser, args.command).error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        code: int = args.run(args, env)
    except UsageError as exc:
        env.stderr.write(f"plenrich {args.command}: error: {exc}\n")
        return USAGE
    except KeyboardInterrupt:
        env.stderr.write("\ninterrupted\n")
        return PARTIAL
    except Exception as exc:  # noqa: BLE001 - every AWS/HTTP failure is one line, never a traceback
        failure = describe(exc, aws_endpoint(args))
        env.stderr.write(f"plenrich {args.command}: error: {failure.line}\n")
        return failure.code
    return code


if __name__ == "__main__":
    sys.exit(main())
