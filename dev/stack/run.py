"""The whole stack on one machine (dev only): ``make run`` / ``make demo``.

    python -m dev.stack.run            # serve: gateway on :3000, print records as they arrive, Ctrl-C stops
    python -m dev.stack.run --demo     # send the sample webhooks, check the records, exit 0 / non-zero

Starts moto server with the template's resources, the sandbox PowerLeads API (or points at the
real one with ``--powerleads-url`` and ``--token``), loads both handlers, serves the webhook
handler behind a local HTTP API gateway and feeds the enricher from the ingest queue like
Lambda's SQS event source mapping. Then it posts signed sample webhooks (plus one with a bad
signature, which must get 401) and prints every enriched record read from EnrichedQueue.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appointment_enricher.related import RELATED_KINDS
from appointment_enricher.wire import (
    DEFAULT_API_VERSION,
    DEFAULT_NOT_FOUND_GRACE_SECONDS,
    parse_json_object,
    read_webhook,
)
from dev.fakes.lambda_loader import load_handler
from dev.fakes.signing import (
    ED25519_HEADER,
    EVENTS_DIR,
    SAMPLES,
    curl_command,
    make_webhook,
    restamp,
    signed_headers,
    webhook_snapshot,
)
from dev.stack.awslocal import LocalStack, start_local_stack
from dev.stack.console import Console
from dev.stack.gateway import ROUTE_PATH, Gateway
from dev.stack.operator_env import DEFAULT_ENV_FILE, cli_env, write_env_file
from dev.stack.poller import SqsPoller
from dev.stack.reconcile_local import ReconcileLoop, recent_event, reconciler_env
from dev.stack.sqs import QueueReader, string_attributes

LOG = logging.getLogger("dev.stack.run")

SEED_ID = "ocQHyuzHvysMo5N5VsXc"
SEED_LOCATION = "0007BWpSzSwfiuSl0tR2"
SEED_START_UTC = "2023-09-25T10:30:00Z"
BAD_SIGNATURE_APPOINTMENT = "Bx7kQ2mN9pLr4TsVw1Yz"
DEFAULT_PORT = 3000
API_VERSION = DEFAULT_API_VERSION  # what the product sends (wire)


# ---- output -------------------------------------------------------------------------------


def say(message: str = "") -> None:
    print(message, flush=True)


def describe_change(change: dict[str, Any] | None) -> str | None:
    """``rescheduled (+reassigned): assignedUserId, endTime, startTime``; None without a ledger."""
    if not change:
        return None
    also = "".join(f" (+{kind})" for kind in change.get("kinds", [])[1:])
    fields = ", ".join(change.get("changedFields") or [])
    return f"{change.get('kind')}{also}" + (f": {fields}" if fields else "")


def describe_previous(change: dict[str, Any] | None) -> str | None:
    previous = (change or {}).get("previous") or {}
    return ", ".join(f"{name}={value}" for name, value in sorted(previous.items())) or None


def related_rows(record: dict[str, Any]) -> list[tuple[str, Any]]:
    """The related entities' names (or why one is missing), when ENRICH_RELATED is on."""
    related, errors = record.get("related") or {}, record.get("relatedErrors") or {}
    return [
        (kind, (related.get(kind) or {}).get("name") or errors.get(kind))
        for kind in ("contact", "calendar", "assignedUser", "location")
        if kind in related
    ]


def format_record(record: dict[str, Any], attributes: dict[str, str] | None = None) -> str:
    """One readable block per enriched record."""
    derived = record.get("derived") or {}
    appointment = record.get("appointment") or {}
    header = f"=== {record.get('eventType', '?')}  {record.get('appointmentId', '?')} "
    rows = [
        ("location", record.get("locationId")),
        ("webhookId", record.get("webhookId")),
        ("status", appointment.get("appointmentStatus")),
        ("title", appointment.get("title")),
        ("start (UTC)", derived.get("startTimeUtc")),
        ("end (UTC)", derived.get("endTimeUtc")),
        ("duration", f"{derived.get('durationMinutes')} min"),
        ("recurring", appointment.get("isRecurring")),
        ("master", derived.get("masterEventId")),
        ("instance (UTC)", derived.get("instanceStartUtc")),
        ("start (local)", derived.get("startTimeLocal")),
        ("timezone", derived.get("timezone")),
        *related_rows(record),
        ("deleted", record.get("deleted")),
        ("trigger", record.get("trigger")),
        ("change", describe_change(record.get("change"))),
        ("previous", describe_previous(record.get("change"))),
        ("receivedAt", record.get("receivedAt")),
        ("enrichedAt", record.get("enrichedAt")),
    ]
    lines = [header.ljust(72, "=")]
    lines += [f"  {name:<15} {value}" for name, value in rows if value not in (None, "", "None min")]
    if attributes:
        lines.append("  attributes      " + ", ".join(f"{k}={v}" for k, v in sorted(attributes.items())))
    return "\n".join(lines)


class _DropEmfLines:
    """stdout wrapper that drops CloudWatch EMF lines (``{"_aws": ...}``).

    Powertools prints the ColdStart metric through ``single_metric`` even with
    POWERTOOLS_METRICS_DISABLED=true; without ``--verbose`` the output stays readable.

    Several threads print at once (the record readers, the reconcile loop, the handlers), and
    ``print`` writes a message and its newline in two calls: each thread collects its own text
    until it ends a line, and that goes out in one write, so two threads' text never mixes within
    a line nor inside one record's block.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._local = threading.local()
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        pending = getattr(self._local, "pending", "") + text
        if pending.endswith("\n"):  # a print's message and its newline: out together
            kept = [line for line in pending[:-1].split("\n") if not line.startswith('{"_aws":')]
            if kept:
                with self._lock:
                    self._stream.write("\n".join(kept) + "\n")
            pending = ""
        self._local.pending = pending
        return len(text)

    def flush(self) -> None:
        pending = getattr(self._local, "pending", "")
        with self._lock:
            if pending and not '{"_aws":'.startswith(pending[:8]):
                self._stream.write(pending)
                self._local.pending = ""
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# ---- reading the output queues --------------------------------------------------------------


def reader(
    stack: LocalStack,
    queue_url: str,
    on_message: Callable[[dict[str, Any], dict[str, str], str], None],
    name: str,
    *,
    consume: bool = True,
) -> QueueReader:
    """A queue drained in a thread (``consume=False``: only peeked, left for the operator), each
    body parsed as JSON and passed to ``on_message``."""

    def on_messages(messages: list[dict[str, Any]]) -> None:
        for message in messages:
            try:
                body = json.loads(message["Body"])
            except ValueError:
                body = {"_raw": message["Body"]}
            on_message(
                body if isinstance(body, dict) else {"_raw": body},
                string_attributes(message),
                message["Body"],
            )

    return QueueReader(stack.client("sqs"), queue_url, on_messages, name, consume=consume)


@dataclass
class Collector:
    """Records and quarantined messages seen so far, with a condition to wait on."""

    verbose: bool = False
    env_file: str = str(DEFAULT_ENV_FILE)
    records: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[tuple[dict[str, str], str]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def on_record(self, record: dict[str, Any], attributes: dict[str, str], _raw: str) -> None:
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()
        say(format_record(record, attributes if self.verbose else None))

    def on_quarantine(self, _body: dict[str, Any], attributes: dict[str, str], raw: str) -> None:
        with self.changed:
            self.quarantined.append((attributes, raw))
            self.changed.notify_all()
        say(
            f"!!! quarantined: {attributes.get('errorType', '?')}: {attributes.get('errorMessage', '?')}"
            f"\n    {raw[:300]}"
            f"\n    left in the quarantine: .venv/bin/plenrich --env-file {self.env_file} inspect / redrive"
        )

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(min(remaining, 0.5))
            return True


# ---- sending webhooks -----------------------------------------------------------------------


@dataclass
class Sent:
    name: str
    webhook_id: str
    appointment_id: str
    status: int
    response: str


def sample_bodies() -> Iterator[tuple[str, bytes]]:
    """The sample webhooks of ``events/webhooks/`` with a fresh webhookId and timestamp."""
    for name in SAMPLES:
        yield name, restamp((EVENTS_DIR / "webhooks" / f"{name}.json").read_bytes())


def bad_signature_body() -> tuple[bytes, dict[str, str]]:
    """A well-formed webhook signed with a key the receiver does not trust."""
    event = json.loads((EVENTS_DIR / "appointments" / f"{BAD_SIGNATURE_APPOINTMENT}.json").read_text())[
        "event"
    ]
    body = make_webhook("AppointmentCreate", webhook_snapshot(event), event["locationId"])
    headers = signed_headers(body)
    headers[ED25519_HEADER] = base64.b64encode(Ed25519PrivateKey.generate().sign(body)).decode("ascii")
    return body, headers


def post(url: str, name: str, body: bytes, headers: dict[str, str]) -> Sent:
    ref = read_webhook(parse_json_object(body))  # the receiver's own reading of the body
    response = requests.post(url, data=body, headers=headers, timeout=15)
    sent = Sent(
        name=name,
        webhook_id=ref.webhook_id or "",
        appointment_id=ref.appointment_id,
        status=response.status_code,
        response=response.text,
    )
    say(f">>> {name:<20} {ref.type:<18} {sent.appointment_id:<40} -> {sent.status} {response.text}")
    return sent


def send_samples(url: str) -> tuple[list[Sent], Sent]:
    sent = [post(url, name, body, signed_headers(body)) for name, body in sample_bodies()]
    bad_body, bad_headers = bad_signature_body()
    return sent, post(url, "bad-signature", bad_body, bad_headers)


# ---- demo checks --------------------------------------------------------------------------


def fetch_event(base_url: str, token: str, event_id: str) -> dict[str, Any]:
    response = requests.get(
        f"{base_url}/calendars/events/appointments/{event_id}",
        headers={"Authorization": f"Bearer {token}", "Version": API_VERSION, "Accept": "application/json"},
        timeout=10,
    )
    response.raise_for_status()
    event: dict[str, Any] = response.json()["event"]
    return event


def check_demo(
    collector: Collector,
    sent: list[Sent],
    bad: Sent,
    *,
    timeout: float,
    expected_seed_event: dict[str, Any] | None,
    settle: Callable[[], None],
) -> list[str]:
    """Problems found; empty means the demo passed."""
    problems: list[str] = []
    not_accepted = [s for s in sent if s.status != 202]
    problems += [f"webhook {s.name} got {s.status}, expected 202: {s.response}" for s in not_accepted]
    if bad.status != 401:
        problems.append(f"bad-signature webhook got {bad.status}, expected 401: {bad.response}")
    expected = {s.webhook_id for s in sent if s.status == 202}

    def arrived() -> set[str]:
        return {str(r.get("webhookId")) for r in collector.records} & expected

    def done() -> bool:
        quarantined = any(any(wid in raw for wid in expected) for _, raw in collector.quarantined)
        return arrived() == expected or quarantined

    collector.wait_for(done, timeout)
    for attributes, raw in collector.quarantined:
        problems.append(
            f"quarantined ({attributes.get('errorType')}: {attributes.get('errorMessage')}): {raw[:200]}"
        )
    missing = sorted(s.name for s in sent if s.status == 202 and s.webhook_id not in arrived())
    if missing:
        problems.append(f"no enriched record within {timeout:.0f} s for: {', '.join(missing)}")

    settle()  # let anything still in flight land before asserting absence
    with collector.changed:
        records = list(collector.records)
    if any(
        r.get("webhookId") == bad.webhook_id or r.get("appointmentId") == bad.appointment_id for r in records
    ):
        problems.append("the bad-signature webhook produced a record")
    counts: dict[str, int] = {}
    for r in records:
        counts[str(r.get("webhookId"))] = counts.get(str(r.get("webhookId")), 0) + 1
    problems += [f"{n} records for webhookId {w}" for w, n in counts.items() if n > 1]

    if expected_seed_event is None:
        return problems  # real PowerLeads: the docs' seed example does not exist there
    seed_webhook = next((s.webhook_id for s in sent if s.appointment_id == SEED_ID), None)
    seed = next((r for r in records if r.get("webhookId") == seed_webhook), None)
    return problems + ([] if seed is None else check_seed(seed, expected_seed_event))


def check_seed(seed: dict[str, Any], expected_event: dict[str, Any]) -> list[str]:
    """The seed record against the docs' example the sandbox serves."""
    problems = []
    derived = seed.get("derived") or {}
    if derived.get("startTimeUtc") != SEED_START_UTC:
        problems.append(
            f"seed record derived.startTimeUtc is {derived.get('startTimeUtc')!r}, "
            f"expected {SEED_START_UTC!r}"
        )
    appointment = seed.get("appointment")
    want = {**expected_event, "isRecurring": True}
    if not isinstance(appointment, dict) or appointment.get("isRecurring") is not True:
        problems.append("seed record appointment.isRecurring is not the boolean true")
    elif appointment != want:
        diff = sorted(k for k in set(want) | set(appointment) if appointment.get(k, "-") != want.get(k, "-"))
        problems.append(f"seed record appointment differs from the sandbox's event in: {', '.join(diff)}")
    return problems


# ---- main ---------------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _configure_logging(verbose: bool) -> str:
    level = "INFO" if verbose else "WARNING"
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return level


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dev.stack.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true", help="check the sample records arrive, then exit")
    parser.add_argument("--port", type=int, default=None, help=f"gateway port (default {DEFAULT_PORT})")
    parser.add_argument("--powerleads-url", help="use this PowerLeads API instead of the sandbox")
    parser.add_argument(
        "--token", help="PowerLeads token (default: env POWERLEADS_TOKEN, else sandbox-token)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="demo: seconds to wait for records")
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=None,
        help="ingest queue visibility timeout (default: the template's)",
    )
    parser.add_argument("--no-samples", action="store_true", help="run mode: don't send the sample webhooks")
    parser.add_argument(
        "--reconcile-every",
        type=float,
        default=30.0,
        help="run mode: invoke the reconciler every N seconds (0: never; deployed it runs every 15 min)",
    )
    parser.add_argument("--verbose", action="store_true", help="handler logs at INFO, metrics on")
    parser.add_argument(
        "--env-file",
        default=str(DEFAULT_ENV_FILE),
        help="write the environment for plenrich here (default: .run/local-stack.env)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = _configure_logging(args.verbose)
    token = args.token or os.environ.get("POWERLEADS_TOKEN")
    if args.powerleads_url and not token:
        say("--powerleads-url needs --token or POWERLEADS_TOKEN")
        return 2

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        # Installed for SIGINT too: a shell's background job inherits SIGINT ignored.
        stopping.set()
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    try:
        return _main(args, level, token, stopping)
    except KeyboardInterrupt:
        say("interrupted")
        return 130


def _main(args: argparse.Namespace, level: str, token: str | None, stopping: threading.Event) -> int:
    with contextlib.ExitStack() as cleanup:
        if not args.verbose:
            original_stdout = sys.stdout
            sys.stdout = _DropEmfLines(original_stdout)
            cleanup.callback(setattr, sys, "stdout", original_stdout)
        started = time.monotonic()
        stack = start_local_stack(visibility_timeout=args.visibility_timeout, token=token or "sandbox-token")
        cleanup.callback(stack.stop)
        if args.powerleads_url:
            base_url = args.powerleads_url.rstrip("/")
            sandbox_token: str | None = None
        else:
            from dev.fakes.sandbox import SandboxServer  # noqa: PLC0415 - only when the sandbox is used

            sandbox_token = token or "sandbox-token"
            sandbox = SandboxServer(tokens={sandbox_token: None}).start()
            cleanup.callback(sandbox.stop)
            base_url = sandbox.url
        stack.apply_env(
            base_url,
            POWERTOOLS_LOG_LEVEL=level,
            POWERTOOLS_METRICS_DISABLED="false" if args.verbose else "true",
            ENRICH_RELATED=",".join(RELATED_KINDS),  # names, calendars and local times in every record
        )
        os.environ.update(reconciler_env(dict(os.environ), stack.ledger_table_name, SEED_LOCATION))

        # Concurrent, as in Lambda; each log line still names its function (lambda_loader.FunctionNames).
        webhook = load_handler("webhook")
        enricher = load_handler("enricher")
        console = Console(
            say,
            grace_seconds=float(os.environ.get("NOT_FOUND_GRACE_SECONDS") or DEFAULT_NOT_FOUND_GRACE_SECONDS),
            next_try_seconds=_visibility_timeout(stack),
        )
        cleanup.callback(console.attach(os.environ.get("POWERTOOLS_SERVICE_NAME") or "service_undefined"))
        env_file = write_env_file(Path(args.env_file), cli_env(dict(os.environ), sandbox_token))

        port = args.port if args.port is not None else DEFAULT_PORT
        if args.port is None and not _port_free(port):
            say(f"port {port} is busy; using a free port (pass --port to choose)")
            port = 0
        gateway = Gateway(webhook, port=port).start()
        cleanup.callback(gateway.stop)
        poller = SqsPoller(enricher, stack.ingest_queue_url, endpoint_url=stack.endpoint_url).start()
        cleanup.callback(poller.stop)

        collector = Collector(verbose=args.verbose, env_file=str(env_file))
        for started_reader in (
            reader(stack, stack.enriched_queue_url, collector.on_record, "enriched-reader"),
            reader(
                stack, stack.quarantine_queue_url, collector.on_quarantine, "quarantine-reader", consume=False
            ),
        ):
            cleanup.callback(started_reader.start().stop)

        say(f"local stack up in {time.monotonic() - started:.1f} s")
        say(f"  gateway      {gateway.webhook_url}")
        say(f"  PowerLeads   {base_url}{'' if args.powerleads_url else ' (sandbox)'}")
        say(f"  moto server  {stack.endpoint_url}")
        say(f"  CLI env      {env_file}  (source it, or: .venv/bin/plenrich --env-file {env_file} ...)")
        say()

        if not args.demo and args.reconcile_every > 0:
            if not args.powerleads_url:  # a change no webhook will announce, for the reconciler to find
                missed = recent_event("RunMissedAppt01", SEED_LOCATION, "RunReconcileCal1")
                sandbox.put_appointment(missed)
                say(
                    f"  reconciler   every {args.reconcile_every:g} s; {missed['id']} changed with no webhook"
                )
            reconciler = load_handler("reconciler")
            loop = ReconcileLoop(reconciler, args.reconcile_every, say).start()
            cleanup.callback(loop.stop)

        if args.demo:
            return run_demo(
                args,
                gateway=gateway,
                poller=poller,
                collector=collector,
                base_url=base_url,
                sandbox_token=sandbox_token,
                console=console,
            )
        return serve(args, gateway, stopping, env_file)


def run_demo(
    args: argparse.Namespace,
    *,
    gateway: Gateway,
    poller: SqsPoller,
    collector: Collector,
    base_url: str,
    sandbox_token: str | None,
    console: Console,
) -> int:
    expected_seed = fetch_event(base_url, sandbox_token, SEED_ID) if sandbox_token else None
    sent, bad = send_samples(gateway.webhook_url)
    say()

    def settle() -> None:
        poller.wait_idle(timeout=5)
        time.sleep(0.5)

    problems = check_demo(
        collector, sent, bad, timeout=args.timeout, expected_seed_event=expected_seed, settle=settle
    )
    say()
    if problems:
        say("DEMO FAILED:")
        for problem in problems:
            say(f"  - {problem}")
        for subject, cause in sorted(console.causes.items()):
            say(f"  - cause: {subject}: {cause}")
        return 1
    say(
        f"DEMO OK: {len(sent)} webhooks accepted, {len(sent)} enriched records, "
        f"the bad signature got 401 and produced no record "
        f"({poller.invocations} enricher invocations, {gateway.invocations} webhook invocations)"
    )
    return 0


def _visibility_timeout(stack: LocalStack) -> float:
    """When a retried ingest message comes back: the ingest queue's visibility timeout."""
    name = "VisibilityTimeout"
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.ingest_queue_url, AttributeNames=[name]
    )
    return float(attributes["Attributes"].get(name, 30))


def serve(args: argparse.Namespace, gateway: Gateway, stopping: threading.Event, env_file: Path) -> int:
    if not args.no_samples:
        send_samples(gateway.webhook_url)
        say()
    body = restamp((EVENTS_DIR / "webhooks" / "create.json").read_bytes(), webhook_id=str(uuid.uuid4()))
    say("Send your own (body signed just now with dev/keys/ed25519-private.pem):")
    say()
    say(curl_command(gateway.webhook_url, body))
    say()
    say(
        f"Gateway: {gateway.url}  (POST {ROUTE_PATH});"
        " re-sign any body: python -m dev.fakes.signing FILE --restamp"
    )
    say("Operate it from another shell (quarantined messages stay queued for inspect/redrive):")
    say(f"  .venv/bin/plenrich --env-file {env_file} inspect")
    say(f"  (or: source {env_file}; .venv/bin/plenrich inspect)")
    say(f"Replay the signed samples: .venv/bin/python -m dev.tools.replay --url {gateway.webhook_url}")
    say("Serving; records print as they arrive. Ctrl-C to stop.")
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    say("stopping...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
