"""What per-product ordering costs: the same backfill and freshness measurements with
the jobs queue as SQS FIFO (a message group per product partition, as deployed) and
as a standard queue (no ordering guarantee), interleaved in one run so the machine's
drift falls on both alike.

For each kind and round, on a private local stack: end-to-end backfill throughput of
N rows (rows/s, from `pelican backfill` to the last vector), then freshness (an
update until a query with its embedding returns it first with the new text; p50/p95).
Prints each run, the median per kind and the ratio FIFO / standard; writes
results/ordering.json (`make bench-ordering`: python -m benchmarks.ordering). It
reports; it asserts nothing about time.
"""

from __future__ import annotations

import statistics
import sys

from benchmarks import cli, machine, workload
from benchmarks.backfill import backfill_run
from benchmarks.cli import say
from benchmarks.freshness import freshness
from benchmarks.pipeline import Pipeline
from productsearch.embedding import Embedder
from productsearch.settings import EmbeddingSettings

KINDS = ("standard", "fifo")


def parse_args(argv=None):
    """The ordering benchmark's options; argv None reads sys.argv."""
    p = cli.parser(__doc__, "ordering.json")
    p.add_argument("--rows", type=int, default=5000, help="rows per backfill")
    p.add_argument("--rounds", type=int, default=2, help="runs per kind, interleaved")
    p.add_argument("--freshness-samples", type=int, default=20)
    p.add_argument("--freshness-spacing", type=float, default=0.5)
    p.add_argument("--sync-timeout", type=float, default=1800.0)
    return p.parse_args(argv)


def report(result: dict) -> None:
    """Prints the medians per queue kind and their ratio, FIFO over standard."""
    say("")
    say(f"{'queue':10} {'rows/s':>8} {'fresh p50':>10} {'fresh p95':>10}")
    for kind in KINDS:
        m = result["median"][kind]
        say(f"{kind:10} {m['rows_per_s']:8.1f} {m['freshness_p50_s']:9.3f}s {m['freshness_p95_s']:9.3f}s")
    ratio = result["fifo_over_standard"]
    say(f"{'fifo/std':10} {ratio['rows_per_s']:8.3f} {ratio['freshness_p50_s']:10.3f} {ratio['freshness_p95_s']:10.3f}")


def main(argv=None) -> int:
    """Runs both queue kinds in interleaved rounds, prints and writes the figures; returns 0."""
    args = parse_args(argv)

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
    result = {"measured_at": cli.now_utc(), "machine": machine.describe(),
              "rows": args.rows, "rounds": args.rounds, "runs": runs, "median": summary, "fifo_over_standard": ratio}
    cli.finish(result, args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
