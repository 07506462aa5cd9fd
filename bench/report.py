"""The benchmark report: ``render()`` turns the harness's figures into ``BENCHMARKS.md`` (goals,
ratios, costs, the method), keeping the sections other benchmarks maintain."""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import cost
from bench.harness import (
    EAGER_RECEIVER_IMPORTS,
    LATENCY_MS,
    RELATED_MODES,
    RELATED_PAUSE_S,
    Figure,
    Results,
    per_unit,
)


def _fmt(value: float, unit: str = "") -> str:
    if value != value:  # NaN
        return "n/a"
    if unit == "$":
        return f"${value:,.2f}"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _delta(value: float) -> str:
    """A signed amount of money: ``+$0.10``, ``-$0.03``; what rounds to zero is ``+$0.00``."""
    if value != value:
        return "n/a"
    rounded = round(value, 2)
    return f"{'-' if rounded < 0 else '+'}${abs(rounded):,.2f}"


def _ratio(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}x"


def _machine() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    uname = " ".join(platform.uname())
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return [
        f"- `uname -a`: `{uname}`",
        f"- CPU: {cpu}; {os.cpu_count()} cores (shared; load average at the end "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f})",
        f"- Python: {platform.python_version()} ({sys.executable})",
    ]


def _versions() -> str:
    names = [
        "boto3",
        "botocore",
        "aws-lambda-powertools",
        "pydantic",
        "pydantic-core",
        "requests",
        "urllib3",
        "cryptography",
        "moto",
    ]
    found = []
    for name in names:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


@dataclass
class Row:
    figure: str
    fig: Figure | None
    unit: str
    reference: str
    goal: str
    met: bool | None
    ratio_text: str | None = None
    value_text: str | None = None


def _rows(r: Results) -> list[Row]:
    f = r.figures
    empty = Figure()

    def g(name: str) -> Figure:
        return f.get(name, empty)

    def le(value: float, limit: float) -> bool | None:
        return None if value != value else value <= limit

    rows = [
        Row(
            "receiver cold start (import + init + first webhook, 202)",
            g("receiver_cold"),
            "ms",
            f"floor `import boto3` + SQS client: {_fmt(g('floor_cold').median, 'ms')}",
            "<= 1.2x floor",
            le(g("receiver_cold").ratio, 1.2),
        ),
        Row(
            "receiver cold start, vs floor + its first SendMessage",
            g("receiver_cold_vs_send"),
            "ms",
            f"floor + 1 SendMessage: {_fmt(g('floor_cold_send').median, 'ms')}",
            "(context)",
            None,
        ),
        Row(
            "enricher cold start (import + init + first batch of 1)",
            g("enricher_cold"),
            "ms",
            f"floor: {_fmt(g('floor_cold').median, 'ms')}",
            "<= 1.8x floor",
            le(g("enricher_cold").ratio, 1.8),
        ),
        Row(
            "enricher cold start vs peer SDK (import + first get_appointment)",
            g("enricher_cold_vs_peer"),
            "ms",
            f"peer: {_fmt(g('peer_cold').median, 'ms')} (import alone {_fmt(g('peer_import').median, 'ms')})",
            "<= 0.4x peer",
            le(g("enricher_cold_vs_peer").ratio, 0.4),
        ),
        Row(
            f"enricher batch of 10 distinct appointments in 10 locations, upstream {LATENCY_MS} ms",
            g("product_distinct"),
            "ms",
            f"one {LATENCY_MS} ms round trip: {_fmt(g('product_floor').median, 'ms')}",
            "<= 1.5x (ledger on)",
            le(g("product_distinct").ratio, 1.5),
        ),
        Row(
            f"enricher batch of 10 appointments in 10 quiet locations (each request its container's "
            f"own budget share: no lease on the path), upstream {LATENCY_MS} ms",
            g("product_quiet"),
            "ms",
            f"one round trip: {_fmt(g('product_floor').median, 'ms')}",
            "(context)",
            None,
        ),
        Row(
            "naive baseline, same batch (serial, new connection, publish per record)",
            g("naive_distinct"),
            "ms",
            f"one round trip: {_fmt(g('naive_floor').median, 'ms')}",
            "(baseline)",
            None,
        ),
        *_related_rows(g),
        Row(
            "10 updates to one appointment in one batch: upstream calls",
            g("product_same_upstream"),
            "calls",
            f"naive: {_fmt(g('naive_same_upstream').median, 'calls')}",
            "exactly 1",
            None
            if not g("product_same_upstream").values
            else all(v == 1 for v in g("product_same_upstream").values),
            ratio_text="-",
        ),
        Row(
            "10 updates to one appointment: batch latency",
            g("product_same"),
            "ms",
            f"naive: {_fmt(g('naive_same').median, 'ms')}; "
            f"one round trip {_fmt(g('product_floor').median, 'ms')}",
            "(context)",
            None,
        ),
        Row(
            "warm CPU per record: validate + enrich + serialize",
            g("cpu_us"),
            "us",
            "-",
            "<= 200 us",
            le(g("cpu_us").median, 200),
            ratio_text="-",
        ),
        Row(
            f"receiver peak RSS after {_records(r, 'receiver_records')} webhooks",
            g("receiver_rss_vs_peer") if g("receiver_rss_vs_peer").values else g("receiver_rss"),
            "MB",
            f"peer after one fetch: {_fmt(g('peer_rss').median, 'MB')}",
            "<= 100 MB",
            le(g("receiver_rss").median, 100),
        ),
        Row(
            f"enricher peak RSS after {_records(r, 'enricher_records')} records",
            g("enricher_rss_vs_peer") if g("enricher_rss_vs_peer").values else g("enricher_rss"),
            "MB",
            f"peer after one fetch: {_fmt(g('peer_rss').median, 'MB')}",
            "<= 100 MB",
            le(g("enricher_rss").median, 100),
        ),
        Row(
            "receiver warm latency p50",
            g("receiver_p50"),
            "ms",
            f"floor: one warm SendMessage p50 {_fmt(g('floor_p50').median, 'ms')}",
            "(context)",
            None,
        ),
        Row(
            "receiver warm latency p99",
            g("receiver_p99"),
            "ms",
            f"floor: one warm SendMessage p99 {_fmt(g('floor_p99').median, 'ms')}",
            "p99 <= 2x floor",
            le(g("receiver_p99").ratio, 2.0),
        ),
    ]
    if g("runtime_enricher_cold").values:  # the template's runtime, when a Python 3.13 was found
        runtime_floor = f"floor on 3.13: {_fmt(g('runtime_floor_cold').median, 'ms')}"
        rows[4:4] = [  # after the enricher's cold-start rows
            Row(
                "receiver cold start on Python 3.13, the template's runtime (each run beside the above)",
                g("runtime_receiver_cold"),
                "ms",
                runtime_floor,
                "(context)",
                None,
            ),
            Row(
                "enricher cold start on Python 3.13, the template's runtime (each run beside the above)",
                g("runtime_enricher_cold"),
                "ms",
                runtime_floor,
                "(context)",
                None,
            ),
        ]
    return rows


COST_GOAL = 3.00  # dollars per million webhook events, with the template's defaults


def _records(r: Results, key: str) -> str:
    values = r.raw.get(key) or []
    return f"{int(statistics.median(values)):,}" if values else "n/a"


def _receiver(r: Results) -> tuple[float, dict[str, float]]:
    """The receiver's measured warm p50 and its billed requests per webhook (for every build)."""
    receiver_ms = r.figures["receiver_p50"].median if "receiver_p50" in r.figures else float("nan")
    receiver_aws = r.raw.get("receiver_aws") or []
    n = (r.raw.get("receiver_warm_n") or [1])[0]
    chunks = {k: v / n for k, v in (receiver_aws[0]["chunks"] if receiver_aws else {}).items()}
    return receiver_ms, chunks


def _costs(r: Results) -> tuple[dict[str, float], dict[str, float]] | None:
    if not (r.raw.get("product_distinct_aws") and r.raw.get("naive_distinct_aws")):
        return None
    receiver_ms, chunks = _receiver(r)
    product = cost.per_million(
        receiver_ms=receiver_ms,
        receiver_chunks_per_event=chunks,
        enricher_batch_ms=r.figures["product_distinct"].median,
        enricher_chunks_per_batch=r.raw["product_distinct_aws"][0],
    )
    naive = cost.per_million(
        receiver_ms=receiver_ms,
        receiver_chunks_per_event=chunks,
        enricher_batch_ms=r.figures["naive_distinct"].median,
        enricher_chunks_per_batch=r.raw["naive_distinct_aws"][0],
    )
    return product, naive


def _shape_cost(r: Results, shape: str) -> dict[str, float] | None:
    """The product's cost on another batch shape: ``local`` (ten appointments in one location:
    past the container's own share, leases) or ``quiet`` (ten in locations with no request in the
    window: no lease)."""
    if not (r.raw.get(f"product_{shape}_aws") and f"product_{shape}" in r.figures):
        return None
    receiver_ms, chunks = _receiver(r)
    return cost.per_million(
        receiver_ms=receiver_ms,
        receiver_chunks_per_event=chunks,
        enricher_batch_ms=r.figures[f"product_{shape}"].median,
        enricher_chunks_per_batch=r.raw[f"product_{shape}_aws"][0],
    )


# The product's batch shapes beside the main one (ten appointments in ten locations), as the
# results table and the cost breakdown name them.
COST_SHAPES = {
    "local": (
        "batches of ten appointments in one location (past the container's own share: budget leases)",
        "product, one location per batch",
    ),
    "quiet": (
        "batches of ten appointments in ten quiet locations (each request its location's first in "
        "10 s: the container's own budget share, no lease)",
        "product, ten quiet locations",
    ),
}


def _calls_text(calls: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in calls.items()) or "none"


def render(r: Results, args: argparse.Namespace, meta: dict[str, Any], elapsed: float) -> str:
    rows = _rows(r)
    costs = _costs(r)
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run`); do not edit by hand.",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s with "
        f"`--runs {args.runs} --records {args.records} --batches {args.batches}`.",
        "",
        "## Machine and versions",
        "",
        *_machine(),
        f"- Product and bench: {_versions()}",
        f"- Peer venv (`bench/out/peer-venv`, from `bench/requirements.txt`): {meta['peer_versions']}",
        "- Runtime venv (`bench/out/runtime-venv`, the layer's requirements on the template's Python "
        f"3.13, for the cold starts' context rows): {meta.get('runtime_versions', 'not measured')}",
        "- Backing services, each in its own process (as AWS and HighLevel are separate services: in "
        "one process the sandbox's answers waited behind moto's work for the same batch): moto server "
        "(embedded AWS over HTTP) and the sandbox PowerLeads API (`dev/fakes/sandbox.py`, rate "
        "limiter lifted), both on 127.0.0.1.",
        "",
        "## Results",
        "",
        "Medians over runs, with min and max; *ratio* is the median of per-run ratios to the "
        "floor/peer measured in the same run (absolute times drift on a shared machine; ratios hold).",
        "",
        "| figure | median | min | max | floor / peer (median) | ratio | goal | met? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        fig = row.fig or Figure()
        values = fig.values
        lo = _fmt(min(values), row.unit) if values else "n/a"
        hi = _fmt(max(values), row.unit) if values else "n/a"
        met = "-" if row.met is None else ("**yes**" if row.met else "**NO**")
        ratio = row.ratio_text if row.ratio_text is not None else _ratio(fig.ratio)
        lines.append(
            f"| {row.figure} | {_fmt(fig.median, row.unit)} | {lo} | {hi} | {row.reference} | "
            f"{ratio} | {row.goal} | {met} |"
        )
    if costs is not None:
        product, naive = costs
        # The goal, and never more than the naive build at the same settings.
        met = "**yes**" if product["Total"] <= COST_GOAL and product["Total"] < naive["Total"] else "**NO**"
        lines.append(
            "| cost per million webhook events, batches of ten appointments in ten locations, each asked "
            f"every batch (breakdown below) | {_fmt(product['Total'], '$')} | - | - | "
            f"naive at the same settings: {_fmt(naive['Total'], '$')} | "
            f"{_ratio(product['Total'] / naive['Total'])} | <= ${COST_GOAL:.2f}, below naive | {met} |"
        )
        for shape, (title, _) in COST_SHAPES.items():
            other = _shape_cost(r, shape)
            if other is None:
                continue
            met = "**yes**" if other["Total"] <= COST_GOAL and other["Total"] < naive["Total"] else "**NO**"
            lines.append(
                f"| cost per million webhook events, {title} | {_fmt(other['Total'], '$')} | - | - | "
                f"naive: {_fmt(naive['Total'], '$')} | "
                f"{_ratio(other['Total'] / naive['Total'])} | <= ${COST_GOAL:.2f}, below naive | {met} |"
            )
    related = related_costs(r)
    if related is not None:
        lines.append(_related_cost_row(related))
    lines += [
        "",
        f"Runs: {len(r.figures.get('receiver_cold', Figure()).values)} cold-start runs, "
        f"{len(r.figures.get('product_distinct', Figure()).values)} timed batches per implementation, "
        f"{len(r.figures.get('cpu_us', Figure()).values)} CPU samples of {args.cpu_iterations} records.",
    ]
    loads = r.raw.get("load") or []
    cores = os.cpu_count() or 1
    if loads and max(loads) > cores:
        lines += [
            "",
            f"**This machine was busy during the run** (1-minute load average up to {max(loads):.1f} on "
            f"{cores} cores, other work included): absolute cold-start times and their min/max spread "
            "are noisy; the per-run ratios are the figures to read, and a cold-start ratio close to its "
            "goal should be confirmed on a quiet machine.",
        ]
    lines += _misses(rows)
    lines += ["", *_cost_section(r, costs), "", *_related_section(r, related), ""]
    lines += [*_optimisations(r), "", *_method(args)]
    if r.notes:
        lines += ["", "## Notes from this run", "", *[f"- {n}" for n in r.notes]]
    return "\n".join(lines) + "\n"


# ---- related entities (ENRICH_RELATED) ---------------------------------------------------------

RELATED_COST_GOAL = 0.30  # dollars per million events above the same build without ENRICH_RELATED
RELATED_LABELS = {
    "off": "without `ENRICH_RELATED`",
    "warm": "all four, cache warm",
    "cold": "all four, no cache (every entity fetched)",
}


def _related_rows(g: Any) -> list[Row]:
    """The batch latency with all four entities, warm and cold, against one round trip (ratio)
    and against the same batches without ENRICH_RELATED (reference)."""
    off = g("related_off")
    rows = []
    for mode, what in (("warm", "cache warm"), ("cold", "no cache: 4 entity fetches per record")):
        fig = g(f"related_{mode}")
        factor = fig.median / off.median if off.values and fig.values else float("nan")
        rows.append(
            Row(
                f"ENRICH_RELATED all four ({what}): batch of 10 appointments in 10 locations, "
                f"upstream {LATENCY_MS} ms",
                fig,
                "ms",
                f"one round trip: {_fmt(_median(fig.reference), 'ms')}; without ENRICH_RELATED: "
                f"{_fmt(off.median, 'ms')} ({_ratio(factor)})",
                "(context)",
                None,
            )
        )
    return rows


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def related_costs(r: Results) -> dict[str, dict[str, float]] | None:
    """Cost per million events of each related-entity build, from its measured batch median and
    AWS calls (the fleet budget's writes are among them: measured, so none assumed on top)."""
    if not all(r.raw.get(f"related_{mode}_aws") for mode in RELATED_MODES):
        return None
    receiver_ms, chunks = _receiver(r)
    return {
        mode: cost.per_million(
            receiver_ms=receiver_ms,
            receiver_chunks_per_event=chunks,
            enricher_batch_ms=r.figures[f"related_{mode}"].median,
            enricher_chunks_per_batch=per_unit(r.raw[f"related_{mode}_aws"], "chunks", 1),
            settings=cost.Settings(budget_writes_per_event=0.0),
        )
        for mode in RELATED_MODES
    }


def _related_cost_row(costs: dict[str, dict[str, float]]) -> str:
    off = costs["off"]["Total"]
    warm, cold = costs["warm"]["Total"] - off, costs["cold"]["Total"] - off
    met = "**yes**" if cold <= RELATED_COST_GOAL else "**NO**"
    return (
        f"| ENRICH_RELATED all four: cost per million events above the same build without "
        f"(no cache, the upper bound) | {_delta(cold)} | - | - | without: {_fmt(off, '$')}; "
        f"cache warm: {_delta(warm)}; no cache: {_fmt(costs['cold']['Total'], '$')} | "
        f"{_ratio(costs['cold']['Total'] / off)} | <= +${RELATED_COST_GOAL:.2f} | {met} |"
    )


def _related_section(r: Results, costs: dict[str, dict[str, float]] | None) -> list[str]:
    lines = ["## Related entities (ENRICH_RELATED)", ""]
    if costs is None:
        return [*lines, "Not measured in this run."]
    f = r.figures
    off = f["related_off"]
    lines += [
        "The warm-batch probe (`bench/probe.py`, kind `batch`) on batches of 10 appointments in 10 "
        "locations, each naming its own contact, calendar and assigned user (`bench/services.py`, "
        f"`related_appointments`), upstream {LATENCY_MS} ms for every endpoint, one batch every "
        f"{RELATED_PAUSE_S:g} s or more (untimed) so each location's fleet budget lease covers its "
        "appointment and its four entities. Three builds of the same enricher in fresh processes, "
        "side by side, their order reversed every other round: "
        + "; ".join(f"*{label}*" for label in RELATED_LABELS.values())
        + " (`RELATED_CACHE_SECONDS=0`, `CONTACT_CACHE_SECONDS=0`: what a cold container pays, the "
        "upper bound; real traffic lies between, see docs/ARCHITECTURE.md for the cache's hit rates). "
        f"{len(off.values)} timed batches per build; upstream requests counted in the sandbox's "
        "log, AWS calls in the probe.",
        "",
        "| build | batch of 10 (median) | one round trip | ratio to one round trip (median of per-batch) "
        "| vs without | upstream requests per record | AWS calls per batch | cost per million events "
        "| above without |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = costs["off"]["Total"]
    for mode, label in RELATED_LABELS.items():
        fig = f[f"related_{mode}"]
        calls = per_unit(r.raw[f"related_{mode}_aws"], "calls", 1)
        total = costs[mode]["Total"]
        lines.append(
            f"| {label} | {_fmt(fig.median, 'ms')} | {_fmt(_median(fig.reference), 'ms')} "
            f"| {_ratio(fig.ratio)} | {_ratio(fig.median / off.median)} "
            f"| {_fmt(f[f'related_{mode}_requests'].median)} | {_calls_text(calls)} "
            f"| {_fmt(total, '$')} | {'-' if mode == 'off' else _delta(total - base)} |"
        )
    differ = [
        f"{name} ${costs['off'][name]:.4f} -> warm ${costs['warm'][name]:.4f}, "
        f"no cache ${costs['cold'][name]:.4f}"
        for name in costs["off"]
        if name != "Total" and max(abs(costs[m][name] - costs["off"][name]) for m in ("warm", "cold")) > 1e-6
    ]
    cold = costs["cold"]["Total"] - base
    lines += [
        "",
        "Cost lines that differ (per million events): " + ("; ".join(differ) or "none") + ".",
        "",
        f"Goal: at most ${RELATED_COST_GOAL:.2f} per million events above the build without, judged "
        f"on the no-cache build: {'met' if cold <= RELATED_COST_GOAL else '**missed**'} "
        f"({_delta(cold)}; cache warm {_delta(costs['warm']['Total'] - base)}). HighLevel's API has no "
        "per-request price: an entity fetch costs the enricher's GB-s while the batch waits for it "
        "and the fleet budget's lease writes when it needs one more (measured here: the "
        "`UpdateItem` calls, as in the main table). Priced as the main table (same prices, receiver "
        "figures and "
        "settings).",
    ]
    return lines


# Why a goal can miss here, by row; printed only for rows that missed in this run. The phase
# timings quoted were measured by hand (bench services, 10 distinct appointments at 100 ms).
_MISS_REASONS: dict[str, str] = {
    "receiver cold start": (
        "Beyond `import boto3` + one client the receiver imports Powertools Logger and Metrics, "
        "cryptography, parses both public keys (RSA-4096 included), verifies a signature and makes its "
        "first `SendMessage` (the floor does none of these; see the *floor + 1 SendMessage* row). It "
        "imports nothing of the enricher (a test enforces it). What is left is the cost of the "
        "contract's own parts: signature checking, structured logs and EMF metrics."
    ),
    "enricher cold start (import": (
        "The clock covers everything the first batch needs that the floor does not: pydantic and "
        "the models, requests, three boto3 clients (DynamoDB, SNS, Secrets Manager; the SQS one "
        "is made on first use, by a quarantine or a hand-back), Powertools parameters, and the "
        "round trips of a first batch with the ledger on (the token secret's read, then the "
        "upstream GET (the container's own budget share: no lease), beside them the ledger's "
        "BatchGetItem and, after it, the locations write when no entry read shows the location; "
        "then the conditional ledger write, PublishBatch with SNS delivery inside moto, the "
        "announce write). Measured apart (`python -X importtime`, cProfile and py-spy, 2026-12-07"
        " and 2026-12-08), the time over the floor is about 40-44 ms of pydantic itself (about 30"
        " of them the imports its first model pulls in: pydantic-core's schema module, "
        "annotated_types, pydantic.types), about 40 ms of our models, settings and modules "
        "(2026-12-08, a fresh interpreter with pydantic loaded: sixteen pydantic models 13.5 ms, "
        "thirty dataclasses 15 ms, 0.3-0.9 ms each to create on 3.11 and 3.13 alike, the rest "
        "module code; the related entities' modules no longer among them), 9 ms of `requests` "
        "(without its character-set detector; cookiejar and idna remain), 9 ms of Powertools "
        "Logger and Metrics, about 16 ms for the clients beyond the floor's one (DynamoDB's "
        "service model alone 6.6 ms; since then made from service models cut to the operations "
        "called, about 8-11 ms less, see the optimisation table) and 24-30 ms of the first batch."
        " On Python 3.13, the template's runtime, the same code measured 1.86x the floor (floor "
        "155 ms) against 1.93x on 3.11 in one side-by-side of 8 runs (before the cut models); "
        "this bench runs on the Python that runs it. With `EnableTracing=true` (the template "
        "default) Lambda also pays the X-Ray SDK import, which this bench leaves out."
    ),
    "enricher cold start vs peer": (
        "The peer's figure is dominated by its own import; ours includes a whole first batch "
        "(ledger read, fetch, ledger write, publish, announce), not one GET."
    ),
    "enricher batch of 10 distinct": (
        "The ten fetches overlap (10 workers, one pooled session). With the ledger on (the "
        "template's default) and first receives, a batch is four sequential steps: the fetches, "
        "started beside the batch's one BatchGetItem of entries and receipts (which the claims "
        "and the changes wait for; each request its container's own budget share here: no "
        "lease write; a location past its share adds a lease step, ten conditional UpdateItems "
        "at most), the ten conditional ledger writes ahead of the publish, one PublishBatch "
        "(with moto's in-process fan-out to the subscribed queue), the ten announce writes "
        "(which also settle the deliveries). Redeliveries and reconcile messages read first. "
        "Each non-fetch step is a round trip to moto server, one Python process that serialises "
        "requests: ten parallel conditional PutItems take 15.5 ms there, 2.0 ms each one after "
        "another (measured 2026-12-07, with the local stack's connections kept alive as AWS "
        "keeps them: 19.2 ms and 2.3 ms before), where DynamoDB answers ten parallel writes in "
        "well under 10 ms. The enricher's own CPU is the other bound on this 2-core machine: "
        "47-50 ms of thread CPU per batch of ten (measured 2026-12-08: the ledger's twenty saves "
        "26.4 ms, 21.7 ms of it botocore's PutItems, 1.1 ms each for serialising, validating, "
        "signing and HTTP; the ten GETs 8.9 ms; the PublishBatch 2.6 ms; the read 2.3 ms; the ten "
        "records 1.5 ms; settling 1.1 ms), about 40 ms of it after the first answer arrives, on "
        "one GIL, while moto's and the sandbox's processes use the other core (the sandbox answers "
        "ten parallel GETs within 1.7 ms of each other: the answers' spread in a batch is the "
        "enricher's CPU). Publishing in waves as groups finish, each announced while the others "
        "still fetch, was tried (2026-12-08: after 30, 50 or 70 % of the groups; 1.644x -> 1.650x, "
        "1.719x -> 1.683x, 1.655x -> 1.651x over 24 batches each): no gain, the CPU is the bound. "
        "The write must precede "
        "the publish (no gap after a crash) and the announce must follow it, so neither can "
        "overlap the publish; a transactional write of ten would be one round trip at twice the "
        "write units (+$0.63 per million events, past the cost goal). Leasing each group's budget "
        "while the ledger read is in flight was tried (2026-12-07): no gain on moto (the read then "
        "waits behind the ten lease writes in moto's one process: batch median 274 ms against "
        "269 ms without, 28 batches each, alternating), so it is not kept."
    ),
    "cost per million webhook events": (
        "Per event: the receiver's Lambda request ($0.20) and its FIFO send with the event "
        "source's share of receives and deletes ($0.60), the SNS->SQS delivery ($0.40), and "
        "DynamoDB: the ledger's two writes (ahead of the publish and the announce after it, both "
        "required so that a state is announced only once published: $1.25), the budget lease "
        "(nothing while a location stays within the container's own share, nine requests per 10 s "
        "at the template's five containers; past it one write per lease of up to five tokens, one "
        "per request when requests come one at a time) and the batch read ($0.19). The table "
        "below has every line; the naive baseline pays per-record SNS requests instead of the "
        "ledger."
    ),
}


def _misses(rows: list[Row]) -> list[str]:
    missed = [row for row in rows if row.met is False]
    if not missed:
        return []
    lines = ["", "### Goals missed in this run, and why", ""]
    for row in missed:
        reason = next((text for key, text in _MISS_REASONS.items() if row.figure.startswith(key)), None)
        lines.append(f"- **{row.figure}**: {reason or 'no known reason recorded; investigate.'}")
    return lines


def _cost_section(r: Results, costs: tuple[dict[str, float], dict[str, float]] | None) -> list[str]:
    lines = ["## Cost per million webhook events", ""]
    if costs is None:
        return [*lines, "Not measured in this run."]
    product, naive = costs
    p = cost.PRICES
    settings = cost.Settings()
    lines += [
        f"us-east-1 list prices as of {cost.PRICES_DATE} (`bench/cost.py`; first tier, no free tier; "
        "not re-checked on this run, the bench machine has no internet): Lambda arm64 "
        f"${p['lambda_gb_second']:.10f}/GB-s and ${p['lambda_request'] * 1e6:.2f}/M requests; HTTP API "
        f"${p['http_api_request'] * 1e6:.2f}/M; SQS FIFO ${p['sqs_fifo_request'] * 1e6:.2f}/M and standard "
        f"${p['sqs_standard_request'] * 1e6:.2f}/M requests (per 64 KiB chunk); SNS "
        f"${p['sns_publish_request'] * 1e6:.2f}/M publish requests (per 64 KiB chunk; deliveries to SQS "
        f"free on the SNS side); DynamoDB on-demand ${p['ddb_write_request_unit'] * 1e6:.3f}/M writes, "
        f"${p['ddb_read_request_unit'] * 1e6:.3f}/M reads; Secrets Manager ${p['secrets_api_call'] * 1e4:.2f}"
        " per 10,000 calls.",
        "",
        f"Settings for both: intake endpoint {settings.intake_endpoint} (the template default; "
        f"`IntakeEndpoint=HttpApi` adds ${p['http_api_request'] * 1e6:.2f} per million), the fleet rate "
        "budget's lease writes measured (the product's `UpdateItem`s: none while a location stays "
        "within the container's own share of nine requests per 10 s, which covers the same ten "
        "locations asked every batch and the quiet ones; leases of up to five tokens past it, as "
        "for the one-location batch; the naive implementation has no budget), receiver "
        f"{settings.receiver_memory_mb} MB, enricher "
        f"{settings.enricher_memory_mb} MB (template defaults), full batches of {settings.batch_size} "
        f"distinct appointments, upstream latency {LATENCY_MS} ms. Durations are the measured warm "
        "medians (receiver p50 per webhook, enricher per batch), billed per started ms. AWS requests "
        "are the ones counted in the measured processes (botocore calls by operation and payload "
        "chunk), per batch: product "
        f"{_calls_text(r.raw['product_distinct_calls'][0])}; product, one location "
        f"{_calls_text((r.raw.get('product_local_calls') or [{}])[0])}; product, ten quiet locations "
        f"{_calls_text((r.raw.get('product_quiet_calls') or [{}])[0])}; naive "
        f"{_calls_text(r.raw['naive_distinct_calls'][0])}. DynamoDB units are billed per started KB of "
        "the larger of the item replaced and the new one (the probe remembers the items its process "
        "put).",
        "",
        "| line item | product, ten locations per batch | "
        + " | ".join(column for _, column in COST_SHAPES.values())
        + " | naive |",
        "|---|---|" + "---|" * len(COST_SHAPES) + "---|",
    ]
    others = [_shape_cost(r, shape) or {} for shape in COST_SHAPES]
    for name in product:
        bold = "**" if name == "Total" else ""
        cells = [f"{bold}${other[name]:.4f}{bold}" if name in other else "n/a" for other in others]
        lines.append(
            f"| {bold}{name}{bold} | {bold}${product[name]:.4f}{bold} | {' | '.join(cells)} | "
            f"{bold}${naive[name]:.4f}{bold} |"
        )
    lines += [
        "",
        "Caveats: on Lambda a 128 MB function gets about 1/14 of a vCPU, so the CPU-bound part of "
        "these durations stretches there; both implementations are priced from the same machine. "
        "Cold starts, empty long polls of the event source mapping, CloudWatch Logs/metrics and X-Ray "
        "are not included. A warm container re-reads the token secret once per 5 minutes "
        "(Powertools cache), which rounds to $0.00 per million events.",
    ]
    return lines


def _optimisations(r: Results) -> list[str]:
    f = r.figures
    empty = Figure()

    def g(name: str) -> Figure:
        return f.get(name, empty)

    lines = [
        "## What each optimisation bought",
        "",
        "Measured in this run; *before* is the naive choice, *after* the product's.",
        "",
        "| optimisation | before | after | bought |",
        "|---|---|---|---|",
    ]

    def add(name: str, before: float, after: float, unit: str, extra: str = "") -> None:
        if before != before or after != after:
            lines.append(f"| {name} | n/a | n/a | not measured |")
            return
        saved = before - after
        factor = f"{before / after:.1f}x" if after else "-"
        lines.append(
            f"| {name} | {_fmt(before, unit)} | {_fmt(after, unit)} | {_fmt(saved, unit)} less ({factor}) "
            f"{extra}|"
        )

    add(
        "Receiver imports only the intake path (no pydantic, requests, enricher, idempotency, "
        "parameters): cold start eager vs lazy",
        g("receiver_cold_eager").median,
        g("receiver_cold").median,
        "ms",
    )
    add(
        "Enricher: lazy imports, every AWS client made once from one boto3 session and handed "
        "to Powertools (`appointment_enricher.enrich.wiring`) vs the naive module (eager imports; Powertools "
        "builds its own boto3 Sessions; no Powertools logger/metrics): cold start",
        g("naive_cold").median,
        g("enricher_cold").median,
        "ms",
        "(a negative saving would mean the product pays more on its first batch) ",
    )
    add(
        "Parallel fetches on a pooled session + one batch publish: batch of 10 distinct, 100 ms upstream",
        g("naive_distinct").median,
        g("product_distinct").median,
        "ms",
    )
    add(
        "Coalescing: 10 updates to one appointment, upstream calls",
        g("naive_same_upstream").median,
        g("product_same_upstream").median,
        "calls",
    )
    add(
        "Coalescing: 10 updates to one appointment, batch latency",
        g("naive_same").median,
        g("product_same").median,
        "ms",
    )
    add(
        "Session reuse: one GET at 100 ms, new connection per call vs warm keep-alive session "
        "(loopback, no TLS)",
        g("micro_new_conn_ms").median,
        g("micro_session_ms").median,
        "ms",
    )
    add(
        "Batch publish: 10 records, 10 x SNS Publish vs 1 x PublishBatch (moto round trips)",
        g("micro_publish_single_ms").median,
        g("micro_publish_batch_ms").median,
        "ms",
    )
    add(
        "Enricher and reconciler: their DynamoDB, SNS and Secrets Manager clients made from botocore's "
        "service models cut to the operations called (`aws.service_models`) vs the full models: a new "
        "session making the three (fresh interpreters, collector off as during init)",
        g("clients_full_ms").median,
        g("clients_cut_ms").median,
        "ms",
    )
    add(
        "PowerLeads session: the environment's proxy and CA settings read once "
        "(`powerleads.client.read_environment_once`) vs on every request (requests' `trust_env`): "
        "thread CPU per warm GET",
        g("micro_get_cpu_env_us").median,
        g("micro_get_cpu_once_us").median,
        "us",
    )
    add(
        "SNS client: PublishBatch of 10 with its form body url-encoded once, before signing "
        "(`aws.sdk.encode_form_once`) vs botocore's twice (to sign, to send): client thread CPU",
        g("micro_publish_cpu_twice_us").median,
        g("micro_publish_cpu_once_us").median,
        "us",
    )
    add(
        "Receiver: collector off during init, then `gc.freeze()` (functions/*/app.py) vs the default "
        "collector: cold start",
        g("receiver_cold_gc").median,
        g("receiver_cold").median,
        "ms",
    )
    add(
        "Enricher: collector off during init, then `gc.freeze()`: cold start",
        g("enricher_cold_gc").median,
        g("enricher_cold").median,
        "ms",
    )
    add(
        "Enricher and reconciler: `import requests` without its character-set detector "
        "(`powerleads.detection`, first thing in their `app.py`) vs with it (fresh interpreters, "
        "boto3 loaded)",
        g("requests_with_detector_ms").median,
        g("requests_without_detector_ms").median,
        "ms",
    )
    add(
        "Enricher: the related entities' fetcher and models (`enrich/related.py`, `entities.py`) "
        "imported by `ENRICH_RELATED` builds only vs by every build: the enricher's own modules "
        "(fresh interpreters, boto3, requests and pydantic loaded)",
        g("enricher_imports_related_ms").median,
        g("enricher_imports_default_ms").median,
        "ms",
    )
    add(
        "Enricher: settings list defaults by value (`Field(default=[])`) vs `default_factory=list` "
        "(pydantic reads a factory's signature; `list`'s is parsed from its text, compiling the "
        "tokenizer's patterns): a model with one such field (fresh interpreters)",
        g("list_default_factory_ms").median,
        g("list_default_value_ms").median,
        "ms",
    )
    add(
        "`aws/queues.py`: refused characters as a positive class vs the negated XML class: compile "
        "(once per cold start, both handlers)",
        g("regex_negated_ms").median,
        g("regex_positive_ms").median,
        "ms",
    )
    add(
        "Enricher: `ReconcilerSettings` with `defer_build` (the enricher imports its module) vs built "
        "at class creation",
        g("reconciler_settings_eager_ms").median,
        g("reconciler_settings_deferred_ms").median,
        "ms",
    )
    add(
        "Enricher: the four related-entity models (`entities.py`) with `defer_build` (built on first "
        "use, by `ENRICH_RELATED` builds only) vs built at class creation",
        g("related_models_eager_ms").median,
        g("related_models_deferred_ms").median,
        "ms",
    )
    add(
        "Enricher: its SQS client (quarantine and hand-backs only) made on first use "
        "(`aws.sdk.LazyClient`) vs at init, after its other clients",
        g("sqs_client_at_init_ms").median,
        g("sqs_client_lazy_ms").median,
        "ms",
    )
    add(
        "Ledger write ahead of a publish (an announced and a pending appointment, ten settled marks): "
        "write units per write, plain zlib vs zlib preset dictionaries (`ledger/compression.py`; the "
        "announce that replaces it is billed on the larger item, so it pays the same)",
        g("ledger_item_units_plain").median,
        g("ledger_item_units_dictionary").median,
        "units",
    )
    product_units = (r.raw.get("product_distinct_aws") or [{}])[0]
    add(
        "Settling 10 published deliveries: write units per batch, a receipt item each (the earlier "
        "design) vs marked in the ledger's announce write (measured: the receipts' BatchWriteItem)",
        10.0,
        float(product_units.get("dynamodb:BatchWriteItem", 0.0)),
        "units",
    )
    if "product_distinct_read_first" in f:
        add(
            "Enricher: first-receive webhooks fetched beside the batch's ledger read (`fetch_early`) "
            "vs after it: batch of 10 distinct, 100 ms upstream",
            g("product_distinct_read_first").median,
            g("product_distinct").median,
            "ms",
        )
    no_share = (r.raw.get("product_quiet_no_share_calls") or [{}])[0]
    share = (r.raw.get("product_quiet_calls") or [{}])[0]
    if no_share and share:
        add(
            "Fleet budget: each container's own share per location and 10 s "
            "(`ENRICHER_MAXIMUM_CONCURRENCY`, from the template) vs none: lease writes per batch "
            "of ten quiet locations",
            float(no_share.get("dynamodb:UpdateItem", 0.0)),
            float(share.get("dynamodb:UpdateItem", 0.0)),
            "calls",
        )
        add(
            "The same: batch latency (the lease off the path)",
            g("product_quiet_no_share").median,
            g("product_quiet").median,
            "ms",
        )
    naive_calls = (r.raw.get("naive_distinct_calls") or [{}])[0]
    product_calls = (r.raw.get("product_distinct_calls") or [{}])[0]
    add(
        "Batch publish: SNS requests per batch of 10 (billed)",
        float(naive_calls.get("sns:Publish", float("nan"))),
        float(product_calls.get("sns:PublishBatch", float("nan"))),
        "calls",
    )
    return lines


def _method(args: argparse.Namespace) -> list[str]:
    return [
        "## Method",
        "",
        "- **Cold starts** (`bench/probe.py`): each run starts fresh interpreters for the floor, the "
        "receiver, an eager-import receiver, the enricher, the naive enricher and the peer. All "
        "import the same stdlib harness and read their inputs *before* the clock starts; the clock "
        "(`time.perf_counter`) covers exactly import + init + first request. Interpreter start-up "
        "(identical for all) is outside it. Handlers are loaded with `dev.fakes.lambda_loader` after the "
        "contract env points them at the moto server and the sandbox; logs at INFO and EMF metrics "
        "are on, as deployed, and go to /dev/null; X-Ray is off (`POWERTOOLS_TRACE_DISABLED`). "
        "The layers' packages are byte-compiled first (`harness.compile_layers`), as `sam build` "
        "ships the layer; the functions' `app.py` is not (Lambda compiles it at every cold start).",
        "- **On the template's runtime** (context rows): when a Python 3.13 is found (`PYTHON313`, "
        "`python3.13` on the PATH, or pyenv's, as `make sam-build` finds one), each run also starts "
        "the floor, the receiver and the enricher on it, right after the same run's on the bench's "
        "own Python, from a venv of the layer's pinned requirements (`bench/out/runtime-venv`) with "
        "the layer byte-compiled by it. The goals stay measured on the bench's own Python, the one "
        "`make bench` was started with.",
        '- **Floor**: a fresh process doing `import boto3` + `boto3.client("sqs")` (our '
        "definition, used for the goals). Its first `SendMessage` to the FIFO ingest queue is timed "
        "separately and shown as *floor + 1 SendMessage*, the like-for-like cost of what the "
        "receiver does on its first request.",
        "- **Receiver**: `functions/webhook/app.py` handling an API Gateway HTTP API v2 event with an "
        "Ed25519-signed webhook (dev key); must answer 202. Then, in the same process, "
        f"{args.records - 1} more webhooks, each timed (warm latency p50/p99), then peak RSS "
        "(`ru_maxrss`). The warm floor is the floor process's own warm `SendMessage`s (same count).",
        "- **Eager receiver**: the same, with the enricher's modules "
        f"({', '.join(f'`{m}`' for m in EAGER_RECEIVER_IMPORTS)}) imported inside the clock first.",
        "- **Enricher**: `functions/enricher/app.py` (idempotency on DynamoDB, token from Secrets "
        "Manager, output to the SNS topic) handling a batch of one `AppointmentUpdate`; then "
        f"{args.records - 1} more records in batches of 10 distinct appointments in 10 locations "
        "(`bench.services.rss_appointments`: no location's budget binds), then peak RSS.",
        "- **Peer** (`bench/peer_probe.py`, in `bench/out/peer-venv`): `import highlevel`, "
        "`HighLevel(private_integration_token=...)` with `BASE_URL` pointed at the sandbox and "
        "`API_VERSION` set to `2021-04-15` (the SDK forces its own `v3`, which Get Appointment "
        "rejects), then `asyncio.run(client.calendars.get_appointment(id))` for the same "
        "appointment shape; RSS after that one fetch.",
        f"- **Batches**: a warm process per implementation (two warm-up batches), then {args.batches} "
        "pairs of batches with the sandbox answering after "
        f"{LATENCY_MS} ms, 1 s apart (untimed: one process is one container, whose own share of a "
        "location's budget and part of the bucket serve one pair's batches then; back to back the "
        "budget would bind, which `make soak-bulk` measures): 10 distinct appointments in 10 "
        "locations, and 10 updates of one appointment (upstream "
        "calls read from the sandbox's request log, cleared before each batch); for the cost model "
        "also 10 appointments in one location and 10 in ten quiet locations (fresh ones each batch, "
        "`bench.services.quiet_sets`). The floor is one "
        "warm keep-alive GET of an appointment at the same latency, in the same process, after "
        "each pair. AWS calls are counted by operation for the cost model.",
        "- **Related entities**: the same warm-batch probe on batches of 10 appointments in 10 "
        "locations, without `ENRICH_RELATED`, with all four entities and a warm cache, and with all "
        f"four and no cache, side by side, {args.related_rounds} round(s) of {args.batches} batches "
        "each (see the section above).",
        "- **Naive baseline** (`bench/naive.py`): serial, `requests.get` per fetch (new connection), "
        "no coalescing, `sns.publish` per record, eager imports and clients; the same models, "
        "enrichment, idempotency and token source as the product.",
        "- **Micro**: in the product's batch process: a GET through a warm session vs `requests.get` "
        f"at {LATENCY_MS} ms (loopback, plain HTTP: no TLS handshake, so this is the lower bound of "
        "what reuse saves against the real HTTPS API); 10 x `sns.publish` vs one `publish_batch` "
        "of the same 10 records.",
        "- **Warm CPU per record**: in one process, `IngestMessage` + `AppointmentWebhook` from JSON, "
        "the Get Appointment body parsed and validated, `build_record`, `model_dump_json`, the "
        f"outbound size check; {args.cpu_iterations} records per sample, `time.process_time`.",
        "- **Percentiles**: nearest rank over each run's samples; the table shows the median of the "
        "per-run p50/p99 and the median of per-run ratios.",
    ]


def kept_sections(path: Path) -> str:
    """Sections other benches or soaks own (``<!-- NAME:start -->`` ... ``<!-- NAME:end -->``:
    ``python -m bench.ledger``'s, ``make soak-bulk``'s), carried over from the old file in order."""
    text = path.read_text() if path.exists() else ""
    kept = []
    for match in re.finditer(r"<!-- ([a-z-]+):start -->.*?<!-- \1:end -->", text, flags=re.S):
        kept.append(match.group(0))
    return "\n\n".join(kept)
