#!/usr/bin/env python3
"""What per-product ordering costs: the same backfill and freshness measurements with
the jobs queue as SQS FIFO (a message group per product partition, as deployed) and
as a standard queue (no ordering guarantee), interleaved in one run so the machine's
drift falls on both alike.

For each kind and round, on a private local stack: end-to-end backfill throughput of
N rows (rows/s, from `pelican backfill` to the last vector), then freshness (an
update until a query with its embedding returns it first with the new text; p50/p95).
Prints each run, the median per kind and the ratio FIFO / standard; writes
results/ordering.json. It reports; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks import machine, workload  # noqa: E402
from benchmarks.pipeline import REPO, Pipeline  # noqa: E402
from benchmark import backfill_run, freshness, say  # noqa: E402

KINDS = ("standard", "fifo")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=5000, help="rows per backfill")
    p.add_argument("--rounds", type=int, default=2, help="runs per kind, interleaved")
    p.add_argument("--freshness-samples", type=int, default=20)
    p.add_argument("--freshness-spacing", type=float, default=0.5)
    p.add_argument("--sync-timeout", type=float, default=1800.0)
    p.add_argument("--output", type=Path, default=REPO / "results" / "ordering.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from productsearch.embedding import Embedder
    from productsearch.settings import EmbeddingSettings

    embedder = Embedder(EmbeddingSettings.from_env({}))  # the freshness probe's query vectors
    rows = workload.rows(args.rows, workload.catalog_rows())
    runs: list[dict] = []
    for round_ in range(1, args.rounds + 1):
        for kind in KINDS:
            say(f"round {round_}, {kind} queue: backfill of {args.rows:,} rows ...")
            with Pipeline.own(say, fifo=kind == "fifo") as pipeline:
                run = backfill_run(pipeline, rows, args.sync_timeout)
                ids = run.pop("_ids")
                fresh = freshness(pipeline, embedder, ids, args.freshness_samples, args.freshness_spacing)
            runs.append({"kind": kind, "round": round_, "rows_per_s": run["rows_per_s"], "seconds": run["seconds"],
                         "freshness_p50_s": fresh["p50_s"], "freshness_p95_s": fresh["p95_s"]})
            say(f"    {run['rows_per_s']:.1f} rows/s; freshness p50 {fresh['p50_s']}s, p95 {fresh['p95_s']}s")

    summary: dict[str, dict] = {}
    for kind in KINDS:
        mine = [r for r in runs if r["kind"] == kind]
        summary[kind] = {key: round(statistics.median(r[key] for r in mine), 3)
                         for key in ("rows_per_s", "freshness_p50_s", "freshness_p95_s")}
    ratio = {key: round(summary["fifo"][key] / summary["standard"][key], 3) if summary["standard"][key] else None
             for key in summary["fifo"]}
    result = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine.describe(),
              "rows": args.rows, "rounds": args.rounds, "runs": runs, "median": summary, "fifo_over_standard": ratio}
    say("")
    say(f"{'queue':10} {'rows/s':>8} {'fresh p50':>10} {'fresh p95':>10}")
    for kind in KINDS:
        m = summary[kind]
        say(f"{kind:10} {m['rows_per_s']:8.1f} {m['freshness_p50_s']:9.3f}s {m['freshness_p95_s']:9.3f}s")
    say(f"{'fifo/std':10} {ratio['rows_per_s']:8.3f} {ratio['freshness_p50_s']:10.3f} {ratio['freshness_p95_s']:10.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    say(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
