"""Soak: N signed webhooks with faults through the whole local stack, then prove the counts balance.

    python -m dev.soak.webhooks --events 10000          # make soak
    python -m dev.soak.webhooks --events 500 --quick    # the version `make test` runs (tests/integration)
    python -m dev.soak.webhooks --reconcile --events 2000   # lost webhooks (dev/soak/reconcile.py)

Path: sender threads -> local gateway (real HTTP) -> WebhookFunction -> IngestQueue.fifo (moto
server, its own process) -> SqsPoller + EnricherFunction in ``--workers`` processes (one Lambda
container each, FIFO group semantics from the queue) -> sandbox PowerLeads API -> EnrichedTopic
(SNS) -> EnrichedQueue (standard SQS, raw delivery) and QuarantineQueue.

Traffic and faults (all seeded, so a run can be repeated):
* every appointment gets a sequence of webhooks (Create, Updates, for some a final Delete); the
  sequence number is in the ``webhookId`` (``soak-<appointment>-<seq>-<nonce>``), which every
  record and every quarantined message carries;
* ``--duplicates`` (10 %) of the webhooks are delivered twice with the same bytes: half promptly
  (FIFO deduplication at intake, or the enricher's in-flight claim), half after the original
  settled (moto forgets a FIFO deduplication id once the message is deleted, like AWS after its
  5 minute window: the DynamoDB idempotency table must catch these);
* bursts of upstream 429 (``Retry-After`` 0.2 s) and 500, hung (slow) responses, dropped
  connections and changing latency;
* ``--invalid`` (1 %) of the appointments are permanently invalid: half are served without
  required fields (``InvalidAppointment``), half answer 422 (``UpstreamRejected``).

With ``--intake-faults`` the webhook handler's SQS endpoint sits behind ``dev/fakes/faultproxy.py``,
which now and then fails a queue write (500, 503, throttling), hangs it, trickles its answer, or
lets it land and answers 500; the receiver must answer those 429 within its budget. With
``--sender highlevel`` each delivery follows HighLevel's documented retry policy: only 429 is
retried (up to 6 attempts, honouring ``Retry-After``, its 10-minute spacing compressed to
``--retry-unit`` seconds); every other status is final. A webhook still refused after its last
attempt is counted as given up by the sender (zero when the faults are transient).
``--foreign N`` adds N verified deliveries for another marketplace app (the handler serves
only the dev app id): each must be answered 200 ignored and produce no outcome.

Checks, each a non-zero exit with the reason when it fails:
* every webhook was accepted (202) by the receiver;
* every accepted webhook produced exactly one record on EnrichedQueue, or exactly one quarantine
  message with the expected ``errorType`` (never both, never neither); nothing reached
  IngestDLQ; no record or quarantine message for a webhook that was never sent;
* every record validates against ``schemas/enriched-record-v1.json``;
* per-appointment order. EnrichedQueue is a standard queue fed by a standard topic: AWS gives no
  order there, so order is checked where the enricher *publishes*: the enricher also writes
  every record to a FIFO mirror queue (``OUTPUT_QUEUE_URL``, group = appointment id), and the
  sequence numbers of each appointment read back from it must be strictly increasing;
* per-appointment order at the consumer: every record on EnrichedQueue carries a ``sequence``
  (distinct per appointment), and each appointment's records sorted by it must be in the order
  their webhooks were sent (what a consumer of the standard queue re-sorts by; the arrival order
  there, which moto keeps anyway, is printed for information only).

Its moto server runs in its own process (``python -m dev.stack.awslocal --bare``). Internal sub-command:
``python -m dev.soak.webhooks worker`` (an SqsPoller + EnricherFunction on ``INGEST_QUEUE_URL`` from the
environment; prints one JSON line per invocation start, used by the crash-safety test).

The pieces, one module each, for other soak phases to reuse: ``config`` (SoakConfig), ``plan`` (the
traffic), ``stack`` (``start_stack``: the whole local stack in one call), ``processes`` (moto and
the enricher processes), ``sender`` (lanes and retry policies), ``faults``, ``collect`` (the output
queues drained) and ``balance`` (``check``: the verdict; ``report``). This module is the run and the CLI.
"""

from __future__ import annotations

import argparse
import functools
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

from dev.soak.balance import EXIT_INFRA, SoakResult, Verdict, check, check_foreign_ignored, report
from dev.soak.config import SoakConfig
from dev.soak.faults import FaultStats, IntakeFaultStats, serve_plan, start_fault_injection
from dev.soak.plan import build_plan, foreign_webhooks
from dev.soak.processes import worker_main
from dev.soak.sender import SendStats, make_sender, send_late_duplicates, wait_for_threads, wait_until
from dev.soak.stack import start_stack
from dev.stack.sqs import queue_depth


class WorkerDied(RuntimeError):
    """An enricher process exited during the run (e.g. the product failed to import)."""


def run_soak(config: SoakConfig, say: Callable[[str], None] | None = None) -> SoakResult:
    say = say or functools.partial(print, file=sys.stdout, flush=True)
    started = time.monotonic()
    deadline = started + config.timeout
    rng = random.Random(config.seed)
    plan = build_plan(
        config.events,
        seed=config.seed,
        duplicate_ratio=config.duplicates,
        invalid_ratio=config.invalid,
        senders=config.senders,
    )
    say(
        f"soak: {len(plan.webhooks)} webhooks over {len(plan.appointments)} appointments, "
        f"{len(plan.prompt_duplicates) + len(plan.late_duplicates)} duplicate deliveries, "
        f"{len(plan.invalid_missing) + len(plan.invalid_422)} invalid appointments, "
        f"{config.workers} enricher processes"
    )
    sent = SendStats()
    faults = FaultStats()
    intake_faults = IntakeFaultStats()
    foreign = foreign_webhooks(config.foreign, config.seed)
    stop_faults = threading.Event()
    stop_senders = threading.Event()
    verdict = Verdict()
    with start_stack(config) as stack:
        sandbox, sqs, collector, proxy = stack.sandbox, stack.sqs, stack.collector, stack.proxy
        serve_plan(sandbox, plan)
        start_fault_injection(
            config,
            sandbox,
            proxy=proxy,
            rng=rng,
            stop=stop_faults,
            faults=faults,
            intake_faults=intake_faults,
        )
        send = make_sender(config, stack.webhook_url)
        dead_workers = stack.dead_workers

        try:
            t_send = time.monotonic()

            def backlog() -> int:
                with sent.lock:
                    accepted = len(sent.accepted)
                return accepted - collector.data.outcomes()

            senders = [
                threading.Thread(
                    target=send,
                    args=(lane, sent, stop_senders),
                    kwargs={"backlog": backlog, "max_backlog": config.max_backlog},
                    daemon=True,
                )
                for lane in [*plan.sender_lanes, foreign]
                if lane
            ]
            for thread in senders:
                thread.start()
            wait_for_threads(
                senders,
                deadline,
                stop_early=lambda: bool(dead_workers()),
                progress=lambda: say(
                    f"  ... {len(sent.accepted)} accepted, {collector.data.outcomes()} outcomes, "
                    f"{time.monotonic() - t_send:.0f} s"
                ),
            )
            stop_senders.set()
            # No new faults once nothing new is sent: bursts every 1.5 s would otherwise all land
            # on the last few messages still retrying, and starve them into the DLQ.
            stop_faults.set()
            send_seconds = time.monotonic() - t_send
            say(
                f"sent {sent.deliveries} deliveries in {send_seconds:.1f} s "
                f"({sent.deliveries / max(send_seconds, 1e-9):.0f}/s), statuses {dict(sent.statuses)}"
            )
            settled_originals = wait_until(
                lambda: (
                    bool(dead_workers()) or collector.data.outcomes() >= len(sent.accepted & set(plan.by_id))
                ),
                deadline,
            )
            if dead_workers():
                stop_senders.set()
                raise WorkerDied(f"enricher process(es) exited with {dead_workers()}; see {stack.log_path}")
            t_first_settled = time.monotonic()
            if not settled_originals:
                verdict.fail(
                    f"timed out after {config.timeout:.0f} s waiting for outcomes "
                    f"({collector.data.outcomes()} of {len(sent.accepted)})"
                )
            stop_faults.set()
            if proxy is not None:
                proxy.set_fault(None)  # and drop one-off faults not yet used
            send_late_duplicates(send, plan, sent)
            # Settle: the ingest queue empty and no new outcome for a while (bounded by deadline).
            last = [collector.data.outcomes(), time.monotonic()]

            def quiet() -> bool:
                now_outcomes = collector.data.outcomes()
                if now_outcomes != last[0]:
                    last[:] = [now_outcomes, time.monotonic()]
                    return False
                return (
                    queue_depth(sqs, stack.resources.ingest_queue_url, in_flight=True) == 0
                    and time.monotonic() - last[1] > 3
                )

            if not wait_until(quiet, max(deadline, time.monotonic() + 30), step=0.5):
                verdict.fail(
                    "ingest queue did not drain: "
                    f"{queue_depth(sqs, stack.resources.ingest_queue_url, in_flight=True)} messages left"
                )
            elapsed_pipeline = t_first_settled - t_send
        finally:
            stop_senders.set()
            stop_faults.set()
    verdict_checks = check(plan, sent, collector.data)
    verdict.problems.extend(verdict_checks.problems)
    verdict.figures.update(verdict_checks.figures)
    if collector.errors:
        verdict.fail(f"collector errors: {collector.errors[:3]}")
    ignored_foreign = check_foreign_ignored(verdict, sent, foreign)
    accepted = verdict.figures.get("accepted", 0)
    verdict.figures.update(
        {
            "deliveries": sent.deliveries,
            "deliveryStatuses": dict(sent.statuses),
            "senderRetries": sent.retries,
            "duplicateDeliveries": len(plan.prompt_duplicates) + len(plan.late_duplicates),
            "upstreamRequests": sandbox.count("/calendars/events/appointments/"),
            "upstreamStatuses": dict(Counter(r["status"] for r in sandbox.requests_log())),
            "faults": vars(faults),
            "sender": config.sender,
            "senderGivenUp": len(sent.given_up),
            "foreignIgnored": len(ignored_foreign),
            "intakeFaultsQueued": dict(intake_faults.queued),
            "intakeFaultsHit": dict(proxy.stats.faulted if proxy is not None else {}),
            "pipelineSeconds": round(elapsed_pipeline, 1),
            "throughputWebhooksPerSecond": round(accepted / max(elapsed_pipeline, 1e-9), 1),
            "totalSeconds": round(time.monotonic() - started, 1),
        }
    )
    return SoakResult(verdict, time.monotonic() - started, stack.log_path)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        return worker_main(argv[1:])
    if "--reconcile" in argv:  # lost webhooks recovered by one reconcile pass: dev/soak/reconcile.py
        from dev.soak.reconcile import main as reconcile_soak_main  # noqa: PLC0415

        return reconcile_soak_main([a for a in argv if a != "--reconcile"])
    parser = argparse.ArgumentParser(
        prog="python -m dev.soak.webhooks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = SoakConfig()
    parser.add_argument("--events", type=int, default=defaults.events, help="distinct webhooks to send")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="enricher processes")
    parser.add_argument("--senders", type=int, default=defaults.senders, help="sender threads")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--duplicates", type=float, default=defaults.duplicates)
    parser.add_argument("--invalid", type=float, default=defaults.invalid)
    parser.add_argument("--timeout", type=float, default=defaults.timeout, help="give up after (s)")
    parser.add_argument("--no-faults", action="store_true", help="no upstream 429/500/hang/drop bursts")
    parser.add_argument("--intake-faults", action="store_true", help="queue-write faults at intake")
    parser.add_argument("--sender", choices=["retry-all", "highlevel"], default=defaults.sender)
    parser.add_argument("--retry-unit", type=float, default=defaults.retry_unit, help="seconds per 10 min")
    parser.add_argument("--foreign", type=int, default=defaults.foreign, help="deliveries for another app")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    config = SoakConfig(
        events=args.events,
        workers=args.workers,
        senders=args.senders,
        seed=args.seed,
        duplicates=args.duplicates,
        invalid=args.invalid,
        timeout=args.timeout,
        faults=not args.no_faults,
        intake_faults=args.intake_faults,
        sender=args.sender,
        retry_unit=args.retry_unit,
        foreign=args.foreign,
    )
    # SIGTERM unwinds like Ctrl-C, so the child processes are stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run_soak(config)
    except Exception as exc:  # noqa: BLE001 - the stack could not be brought up: say so and exit 2
        print(f"soak could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INFRA
    report(result)
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
