"""What one reconcile run costs in upstream calls per location (the README's table).

    python -m bench.reconcile_cost [--latency-ms 100]

Each scenario is one location in the sandbox API (real HTTP) with some calendars and appointments
inside the swept window; the ledger (moto server) already holds every appointment, so the run is
a steady-state sweep that enqueues nothing. Prints a Markdown table: requests, windows split,
wall time (with the given upstream latency and the default pacing of 20 requests / 10 s).
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import timedelta

from dev.fakes.lambda_loader import add_code_paths
from dev.fakes.sandbox import SandboxServer
from dev.stack.awslocal import create_resources, start_moto_server
from dev.stack.reconcile_local import recent_event, seed_ledger

SCENARIOS = [  # (calendars, appointments in the window)
    (1, 20),
    (5, 100),
    (20, 400),
    (1, 1000),
    (40, 2000),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile_cost")
    parser.add_argument("--latency-ms", type=int, default=100, help="upstream latency per request")
    args = parser.parse_args(argv)
    add_code_paths()
    from appointment_enricher.config import ReconcilerSettings  # noqa: PLC0415
    from appointment_enricher.reconcile.wiring import build_reconciler  # noqa: PLC0415

    server, endpoint = start_moto_server()
    sandbox = SandboxServer().start()
    rows = []
    try:
        stack = create_resources(endpoint, suffix=uuid.uuid4().hex[:6])
        ddb = stack.client("dynamodb")
        env = {
            **stack.env(sandbox.url),
            "POWERLEADS_TOKEN": "sandbox-token",
        }
        env.pop("POWERLEADS_TOKEN_SECRET_ID")
        import os  # noqa: PLC0415

        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        for number, (calendars, appointments) in enumerate(SCENARIOS):
            location = f"CostLoc{number:02d}"
            for i in range(appointments):
                event = recent_event(
                    f"Cost{number:02d}A{i:05d}",
                    location,
                    f"CostCal{i % calendars:03d}",
                    start_in=timedelta(hours=1 + (i * 97 * 24) // max(appointments, 1)),
                )
                sandbox.put_appointment(event)
                seed_ledger(ddb, env["LEDGER_TABLE_NAME"], event["id"], location, event["dateUpdated"])
            sandbox.reset()  # request log and rate limiter; then the latency for this run
            sandbox.set_latency(args.latency_ms)
            reconciler = build_reconciler(ReconcilerSettings.from_env(env))
            started = time.monotonic()
            summary = reconciler.run([location], time.monotonic() + 600)
            seconds = time.monotonic() - started
            per = summary["perLocation"][0]
            rows.append(
                (
                    calendars,
                    appointments,
                    summary["requests"],
                    per["splits"],
                    summary["enqueued"],
                    f"{seconds:.1f}",
                )
            )
    finally:
        sandbox.stop()
        server.stop()
    print(f"upstream latency {args.latency_ms} ms per request; pacing 20 requests / 10 s per location\n")
    print("| calendars | appointments in window | requests per run | windows split | enqueued | seconds |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
