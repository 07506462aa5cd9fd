"""What change tracking costs: the enricher with and without the ledger, side by side.

    python -m bench.ledger [--runs 3] [--batches 7]

Runs only the warm-batch probe of ``make bench`` (a batch of 10 distinct appointments in 10
locations at 100 ms upstream, a fresh set of appointments each run, and 10 updates of one
appointment), alternating a build without a ledger
(``LEDGER_TABLE_NAME`` unset) and with one, each in fresh processes against the same backing
services. Reports batch latency against one warm round trip, DynamoDB requests and billed units
per batch, and the cost per million events (``bench.cost``), then writes the section between the
``ledger`` markers of BENCHMARKS.md (``make bench`` keeps that section).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import cost, events
from bench.harness import LATENCY_MS, OUT_DIR, REPO_ROOT, SANDBOX_TOKEN, Services, child_env, run_probe

START, END = "<!-- ledger:start -->", "<!-- ledger:end -->"
RECEIVER_P50_MS = 13.3  # the receiver's warm p50 of the last full `make bench` (unchanged by the ledger)
MODES = ("off", "on")


PAUSE_S = 1.0  # seconds between pairs of batches, untimed: more than a budget lease's 0.5 s


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _per_batch(snapshots: list[dict[str, dict[str, int]]], key: str) -> dict[str, float]:
    names = sorted({n for s in snapshots for n in s[key]})
    return {n: _median([float(s[key].get(n, 0)) for s in snapshots]) for n in names}


def measure(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {
        m: {"distinct": [], "same": [], "ratio": [], "aws": []} for m in MODES
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    services = Services()
    try:
        with tempfile.TemporaryDirectory(dir=OUT_DIR) as tmp:
            work = Path(tmp)
            ids: list[str] = services.info["appointment_ids"]
            location: str = services.info["location_id"]
            for run in range(args.runs):
                for mode in MODES:
                    log(f"run {run + 1}/{args.runs}: ledger {mode}")
                    extra = {"LEDGER_TABLE_NAME": ""} if mode == "off" else {}
                    spread = services.info["spread_sets"][run % len(services.info["spread_sets"])]
                    pairs = events.write_batch_pairs(
                        work / f"batches-{mode}-{run}.jsonl", ids, location, args.batches + 2, spread=spread
                    )
                    batch = run_probe(
                        {
                            "kind": "batch",
                            "impl": "enricher",
                            "sandbox_url": services.info["sandbox_url"],
                            "latency_ms": LATENCY_MS,
                            "batches": str(pairs),
                            "purge": services.info["purge_queue_urls"],
                            "warmup": 2,
                            "floor_id": ids[0],
                            "token": SANDBOX_TOKEN,
                            "topic_arn": services.env["OUTPUT_TOPIC_ARN"],
                            "micro": 0,
                            "shapes": ["distinct", "same"],
                            # both builds pay each location's budget lease alike: a pause past
                            # the lease's 0.5 s, or the faster build would spend its spare tokens
                            "pause_s": PAUSE_S,
                        },
                        child_env(services, **extra),
                        work,
                    )
                    out = found[mode]
                    out["distinct"] += batch["distinct_ms"]
                    out["same"] += batch["same_ms"]
                    out["ratio"] += [
                        d / f for d, f in zip(batch["distinct_ms"], batch["floor_ms"], strict=True)
                    ]
                    out["floor"] = out.get("floor", []) + batch["floor_ms"]
                    out["aws"] += batch["distinct_aws"]
                    out["same_aws"] = out.get("same_aws", []) + batch["same_aws"]
    finally:
        services.close()
    return found


def render(found: dict[str, dict[str, Any]], args: argparse.Namespace, elapsed: float) -> str:
    rows, costs = [], {}
    for mode in MODES:
        out = found[mode]
        calls = _per_batch(out["aws"], "calls")
        units = _per_batch(out["aws"], "chunks")
        same_calls = _per_batch(out["same_aws"], "calls")
        costs[mode] = cost.per_million(
            receiver_ms=RECEIVER_P50_MS,
            receiver_chunks_per_event={"sqs:SendMessage": 1.0},
            enricher_batch_ms=_median(out["distinct"]),
            enricher_chunks_per_batch=units,
        )
        ddb = {k.split(":", 1)[1]: v for k, v in calls.items() if k.startswith("dynamodb:")}
        ddb_units = {k.split(":", 1)[1]: v for k, v in units.items() if k.startswith("dynamodb:")}
        ddb_same = {k.split(":", 1)[1]: v for k, v in same_calls.items() if k.startswith("dynamodb:")}
        rows.append(
            f"| {mode} | {_median(out['distinct']):,.0f} ms | {_median(out['floor']):,.0f} ms "
            f"| {_median(out['ratio']):.2f}x | {_median(out['same']):,.0f} ms "
            f"| {sum(ddb.values()):g} ({_text(ddb)}) | {sum(ddb_units.values()):g} ({_text(ddb_units)}) "
            f"| {sum(ddb_same.values()):g} | ${costs[mode]['Total']:.2f} |"
        )
    lines = [
        START,
        "## Change tracking (the ledger): with and without",
        "",
        f"Written by `python -m bench.ledger --runs {args.runs} --batches {args.batches}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s (load average "
        f"{os.getloadavg()[0]:.2f}); not rewritten by `make bench`, which keeps this section. "
        "Each run starts fresh processes for both builds, alternating, against the same moto server "
        "and sandbox; the ledger holds every appointment after the warm-up (the steady state). "
        f"Pairs of batches {PAUSE_S:g} s apart, so both builds lease each location's budget alike "
        "(closer together, the faster build's batches spend the spare tokens of the last lease).",
        "",
        "| ledger | batch of 10 distinct in 10 locations, 100 ms upstream (median) | one round trip "
        "| ratio (median of per-batch) | 10 updates of one appointment "
        "| DynamoDB requests per batch of 10 distinct | billed units "
        "(WRU/RRU) | DynamoDB requests, 10 updates of one | cost per million events |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Cost lines that differ (per million events): "
        + "; ".join(
            f"{name} ${costs['off'][name]:.4f} -> ${costs['on'][name]:.4f}"
            for name in costs["on"]
            if abs(costs["on"][name] - costs["off"][name]) > 1e-6 and name != "Total"
        )
        + ".",
        "",
        _goals(found, costs),
        "",
        f"Receiver figures are the last full run's (p50 {RECEIVER_P50_MS} ms): the ledger does "
        "not touch the receiver. Billed units are computed from the requests (PutItem: 1 WRU per "
        "started KB of the item; BatchGetItem: 1 RRU per key read strongly consistent, 0.5 eventually, "
        "items < 4 KB).",
        END,
    ]
    return "\n".join(lines)


COST_GOAL = 3.64  # $ per million events of the build without a ledger, before this change
LATENCY_GOAL = 1.5  # x one upstream round trip, batch of 10 distinct appointments


def _goals(found: dict[str, dict[str, Any]], costs: dict[str, dict[str, float]]) -> str:
    ratio = _median(found["on"]["ratio"])
    total = costs["on"]["Total"]
    return (
        f"Goals with the ledger on: batch latency <= {LATENCY_GOAL}x one round trip: "
        f"{'met' if ratio <= LATENCY_GOAL else '**missed**'} ({ratio:.2f}x); cost <= ${COST_GOAL:.2f} per "
        f"million events: {'met' if total <= COST_GOAL else '**missed**'} (${total:.2f}). Why: a batch is "
        "five sequential steps (one BatchGetItem of the entries and receipts, the fetches, the "
        "conditional ledger writes ahead of the publish, one PublishBatch, the announce writes); the "
        "fetch is the 100 ms, the other four are DynamoDB/SNS round trips that moto server (one "
        "Python process) answers in tens of ms each under load, where DynamoDB answers in "
        "single-digit ms. The write must precede the publish (write-ahead: no gap after a crash) "
        "and the announce must follow it, so neither can overlap the publish. Cost: two writes per "
        "message (ahead and announce; the announce also settles the delivery, so no receipt item), "
        "and the read: 1 RRU per entry, strongly consistent (an eventually consistent read of an "
        "entry written by the previous batch of a burst would be stale and cost a retry), and 0.5 "
        "RRU per receipt key (eventually consistent: a duplicate delivery comes minutes later)."
    )


def _text(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in values.items()) or "none"


def write_section(section: str, path: Path) -> None:
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    found = measure(args, lambda message: print(f"[bench.ledger] {message}", flush=True))
    section = render(found, args, time.monotonic() - started)
    print(section)
    write_section(section, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
