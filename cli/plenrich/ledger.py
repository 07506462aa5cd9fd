"""``show`` (what the ledger holds for one appointment) and ``reconcile`` (recover the changes no
webhook delivered, comparing upstream with the ledger)."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from appointment_enricher.ledger.compression import decompress_appointment
from appointment_enricher.wire import ID_PATTERN, is_valid_id
from plenrich.context import OK, PARTIAL, Env, UsageError, required
from plenrich.failures import upstream_reason
from plenrich.output import Progress, millis_timestamp, table, truncate

if TYPE_CHECKING:
    from appointment_enricher.config import ReconcilerSettings

SHOWN_FIELDS = ("appointmentStatus", "startTime", "endTime", "assignedUserId", "calendarId", "title")

# ----- show -------------------------------------------------------------------------------------


def ledger_view(item: Mapping[str, Any]) -> dict[str, Any]:
    """The ledger item (layout in appointment_enricher/ledger/base.py) as plain JSON."""
    expiration = int(item.get("expiration", {}).get("N", "0"))
    return {
        "appointmentId": item["id"]["S"].removeprefix("appointment#"),
        "locationId": item.get("locationId", {}).get("S"),
        "dateUpdated": item.get("dateUpdated", {}).get("S"),
        "deleted": item.get("deleted", {}).get("BOOL", False),
        "revision": int(item.get("revision", {}).get("N", "0")),
        "expiresAt": millis_timestamp(datetime.fromtimestamp(expiration, tz=UTC)) if expiration else None,
        "appointment": json.loads(decompress_appointment(item["appointment"]["B"]))
        if "appointment" in item
        else {},
        "recent": [
            {"dedupeId": dedupe, "change": change}
            for dedupe, change in json.loads(item.get("recent", {}).get("S", "[]"))
        ],
    }


def cmd_show(args: argparse.Namespace, env: Env) -> int:
    table_name = required(args.ledger_table, "--ledger-table", "LEDGER_TABLE_NAME")
    if not is_valid_id(args.appointment_id):
        raise UsageError(f"APPOINTMENT_ID must match {ID_PATTERN}")
    response = env.dynamodb(args).get_item(
        TableName=table_name, Key={"id": {"S": f"appointment#{args.appointment_id}"}}, ConsistentRead=True
    )
    if "Item" not in response:
        env.stderr.write(f"appointment {args.appointment_id} is not in the ledger\n")
        if args.json:
            env.stdout.write("null\n")  # --json output stays JSON
        return PARTIAL
    view = ledger_view(response["Item"])
    if args.json:
        env.stdout.write(json.dumps(view) + "\n")
        return OK
    rows = [
        (name, view[name]) for name in ("appointmentId", "locationId", "dateUpdated", "deleted", "revision")
    ]
    rows += [(name, view["appointment"].get(name)) for name in SHOWN_FIELDS if name in view["appointment"]]
    rows.append(("expiresAt", view["expiresAt"]))
    env.stdout.write(table(("field", "value"), rows) + "\n")
    recent = [
        (r["dedupeId"], r["change"]["kind"], ",".join(r["change"]["changedFields"])) for r in view["recent"]
    ]
    env.stdout.write(
        "\nrecent deliveries (oldest first)\n" + table(("dedupeId", "change", "fields"), recent) + "\n"
    )
    return OK


# ----- reconcile --------------------------------------------------------------------------------


@dataclass
class _Recorded:
    """``--dry-run``: what would be enqueued, and cursors neither read nor written."""

    sent: list[tuple[str, str]] = field(default_factory=list)  # (group id, event type)

    def send(self, body: str, *, group_id: str, dedupe_id: str, attributes: Mapping[str, str]) -> str:
        self.sent.append((group_id, attributes.get("eventType", "")))
        return f"dry-run-{len(self.sent)}"

    def load(self, location_ids: Sequence[str]) -> dict[str, Any]:
        return {}

    def save(self, location_id: str, cursor: Any) -> None:
        """A dry run leaves the scheduled run's cursors alone."""


@dataclass
class _Reasons:
    """Why locations failed, in words, from the reconciler's own log calls (which carry status
    codes and exception names, never a token or a body)."""

    seen: dict[str, list[str]] = field(default_factory=dict)

    def log(self, level: str, message: str, **fields: Any) -> None:
        if level not in ("warning", "error"):
            return
        reason = upstream_reason({"message": message, **fields})
        found = self.seen.setdefault(str(fields.get("locationId") or "all locations"), [])
        if reason not in found:
            found.append(reason)

    def lines(self) -> list[tuple[str, str]]:
        return [(location, reason) for location, found in self.seen.items() for reason in found]


RECONCILE_HEADERS = (
    "locationId",
    "calendars",
    "requests",
    "listed",
    "updates",
    "deletes",
    "current",
    "errors",
    "complete",
)


def _settings(args: argparse.Namespace) -> ReconcilerSettings:
    """The reconciler's settings from the function's variables, with the flags applied."""
    from appointment_enricher.config import ConfigError, ReconcilerSettings  # noqa: PLC0415 - pydantic

    variables = dict(os.environ)
    for name, value in (("AWS_ENDPOINT_URL", args.endpoint_url), ("AWS_DEFAULT_REGION", args.region)):
        if value:
            os.environ[name] = value  # boto3 inside the reconciler reads these
    endpoint = args.endpoint_url or variables.get("AWS_ENDPOINT_URL")
    if endpoint and not variables.get("POWERLEADS_API_BASE_URL"):
        raise UsageError(
            f"AWS is {endpoint} but POWERLEADS_API_BASE_URL is unset, which means production PowerLeads: "
            "set it (the file `make run` writes does: --env-file FILE), or unset AWS_ENDPOINT_URL"
        )
    if args.ingest_queue_url:
        variables["INGEST_QUEUE_URL"] = args.ingest_queue_url
    if args.dry_run:
        variables.setdefault("INGEST_QUEUE_URL", "dry-run (nothing is sent)")
    try:
        return ReconcilerSettings.from_env(variables)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _summary_rows(summary: Mapping[str, Any]) -> list[tuple[object, ...]]:
    return [
        (
            t["location_id"],
            t["calendars"],
            t["requests"],
            t["listed"],
            t["recovered"].get("AppointmentUpdate", 0),
            t["recovered"].get("AppointmentDelete", 0),
            t["skipped"],
            t["errors"],
            "yes" if t["complete"] else "no (resumes next run)",
        )
        for t in summary["perLocation"]
    ]


def cmd_reconcile(args: argparse.Namespace, env: Env) -> int:
    """Run the reconciler here, with the function's variables (INGEST_QUEUE_URL, LEDGER_TABLE_NAME,
    POWERLEADS_*, RECONCILE_*): sweep, compare with the ledger, enqueue what the webhooks missed."""
    bad = [loc for loc in args.location if not is_valid_id(loc)]
    if bad:
        raise UsageError(f"--location must match {ID_PATTERN.strip('^$')}: {truncate(bad[0], 40)!r}")
    from appointment_enricher.reconcile.lease import run_alone  # noqa: PLC0415 - boto3, requests
    from appointment_enricher.reconcile.wiring import build_reconciler, build_run_lease  # noqa: PLC0415

    settings = _settings(args)
    recorded = _Recorded()
    reasons = _Reasons()
    reconciler = build_reconciler(
        settings,
        log=reasons.log,
        sink=recorded if args.dry_run else None,
        cursors=recorded if args.dry_run else None,
    )
    locations, errors = reconciler.locations(args.location, settings.RECONCILE_LOCATION_IDS)
    if not locations and errors:  # the ledger's locations were unreadable: say why (main, one line)
        reconciler.ledger.known_locations()
    if not locations:
        raise UsageError("no locations: pass --location, set RECONCILE_LOCATION_IDS, or fill the ledger")
    progress = Progress("reconcile" + (" (dry run)" if args.dry_run else ""), len(locations), env.stderr)
    finished: set[str] = set()

    def on_step(tally: Any) -> None:
        if tally.complete and tally.location_id not in finished:
            finished.add(tally.location_id)
            progress.advance()

    # One run at a time with the scheduled function (a dry run writes nothing and takes no lease).
    lease = None if args.dry_run else build_run_lease(settings)
    try:
        summary = run_alone(
            reconciler, lease, locations, time.monotonic() + args.max_seconds, on_step=on_step
        )
    finally:
        progress.close()
    if summary.get("busy"):
        env.stderr.write(
            f"another reconcile run is in progress (its lease ends {summary['leaseHeldUntil']}); "
            "nothing swept, try again then\n"
        )
        return PARTIAL
    summary["errors"] += errors
    env.stdout.write(table(RECONCILE_HEADERS, _summary_rows(summary)) + "\n")
    verb = "would enqueue" if args.dry_run else "enqueued"
    env.stdout.write(
        f"{verb} {summary['enqueued']} change(s) no webhook delivered; {summary['errors']} error(s); "
        f"{summary['requests']} upstream request(s) in {summary['durationMs'] / 1000:.1f} s"
        f"{'; stopped early' if summary['stoppedEarly'] else ''}\n"
    )
    for group_id, kind in recorded.sent:
        env.stdout.write(f"would enqueue {kind} {group_id}\n")
    for location_id, reason in reasons.lines():
        env.stderr.write(f"{location_id}: {reason}\n")
    return PARTIAL if summary["errors"] or summary["stoppedEarly"] else OK
