"""``make bench``: every benchmark figure on the local stack, written to ``BENCHMARKS.md``.

    python -m bench.run                       # full run (>= 5 runs per figure), ~3-5 minutes
    python -m bench.run --runs 1 --records 5 --batches 1 --no-peer --output /tmp/b.md   # smoke

Each run interleaves fresh processes (floor, receiver, enricher, naive, peer) so a figure and its
floor/peer are measured side by side; ratios are taken per run, then the median is reported.
The related-entity builds (ENRICH_RELATED off, on with a warm cache, on with none) run the warm
batch probe side by side, ``--related-rounds`` times each.
Backing services (moto server + sandbox PowerLeads API) run in their own process
(``bench.services``). The peer SDK lives in its own venv, ``bench/out/peer-venv``, created from
``bench/requirements.txt`` on first use.

The measurements are ``bench.harness``; the write-up is ``bench.report``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.harness import OUT_DIR, REPO_ROOT, bench
from bench.report import kept_sections, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The benchmarks; writes BENCHMARKS.md.")
    parser.add_argument("--runs", type=int, default=5, help="cold-start runs (>= 5 for the report)")
    parser.add_argument("--records", type=int, default=1000, help="records per RSS / warm-latency run")
    parser.add_argument("--batches", type=int, default=7, help="timed batch pairs per implementation")
    parser.add_argument("--cpu-iterations", type=int, default=2000)
    parser.add_argument("--micro", type=int, default=20, help="samples of each micro-benchmark")
    parser.add_argument(
        "--related-rounds",
        type=int,
        default=2,
        help="rounds of the related-entity builds (without, warm cache, no cache), --batches each",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the peer SDK (no venv install)")
    parser.add_argument(
        "--no-runtime",
        action="store_true",
        help="skip the cold starts on Python 3.13, the template's runtime (no venv install)",
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.records < 2:
        parser.error("--records must be at least 2")
    if args.related_rounds < 1:
        parser.error("--related-rounds must be at least 1")

    def log(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    started = time.monotonic()
    results, meta = bench(args, log)
    elapsed = time.monotonic() - started
    text = render(results, args, meta, elapsed)
    kept = kept_sections(args.output)
    args.output.write_text(text.rstrip("\n") + ("\n\n" + kept if kept else "") + "\n")
    (OUT_DIR / "results.json").write_text(
        json.dumps(
            {"figures": {k: vars(v) for k, v in results.figures.items()}, "raw": results.raw},
            indent=1,
        )
    )
    log(f"wrote {args.output} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
