"""Benchmarks of the sync pipeline and the search, in one run on one machine, on a
private local stack (Postgres, moto, the index server, pelican, emu, the frontend):

  (a) raw embedding throughput of the configured model on the catalog's own texts,
      same batch size, device and settings as emu, in this process (texts/s);
  (b) end-to-end backfill throughput: from starting `pelican backfill` over N rows to
      the index holding the last vector, through pelican, SQS, emu and the index;
      the ratio (b)/(a), with (a) measured again after every (b) and each (b)
      compared with the mean of the (a) just before and after it; peak RSS (VmHWM)
      of pelican and of emu's processes for every N in --sizes; CPU seconds each
      part of the stack used during the backfill;
  freshness: update one row's description, time until a query with the new text's
      vector returns that row first with the new text in its metadata; p50/p95/max;
  search under concurrency through the frontend's POST /api/search with the first N
      indexed, every query new (benchmarks.search_load): p50/p95/p99 and QPS at 1, 4,
      16 and 64 concurrent clients, and where one search's time goes in process;
  then, on private parts of its own (--skip-cost skips it), cost per change
      (benchmarks.cost: index requests, read and write units, SQS requests, model runs
      and CPU per 1,000 changes for a bulk insert, scattered and hot updates, and a
      burst with added index latency; also results/cost.json, and docs/scaling.md from
      it: benchmarks.capacity).

Each part is also a module of its own (benchmarks.throughput, .backfill, .freshness,
.search_load, .cost). This is `make bench`: `python -m benchmarks [options]`. Prints the
figures with the machine's description, writes results/bench.json and a chart
results/bench.png. It reports; it asserts nothing about time.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path

from benchmarks import capacity, cli, cost, machine, search_load, workload
from benchmarks.backfill import backfill_run
from benchmarks.cli import say
from benchmarks.freshness import freshness
from benchmarks.pipeline import REPO, Pipeline
from benchmarks.throughput import raw_throughput, time_embedding
from productsearch.settings import EmbeddingSettings


def parse_args(argv=None):
    """`make bench`'s options (BENCH_ARGS); argv None reads sys.argv."""
    p = cli.parser(__doc__, "bench.json", app_env=True)
    p.add_argument("--sizes", default="10000,50000", help="comma-separated row counts N for the backfill runs (the first one "
                   "also serves the raw embedding, freshness and search figures)")
    p.add_argument("--freshness-samples", type=int, default=50,
                   help="single-row updates timed from commit to searchable (default 50; 0: none)")
    p.add_argument("--freshness-spacing", type=float, default=1.0, help="mean seconds between freshness samples")
    p.add_argument("--concurrency", default="1,4,16,64",
                   help="comma-separated numbers of concurrent search clients (default 1,4,16,64)")
    p.add_argument("--search-requests", type=int, default=400,
                   help="requests per concurrency level, each query new (capped by --search-seconds)")
    p.add_argument("--search-seconds", type=float, default=60.0, help="longest time spent per concurrency level (default 60)")
    p.add_argument("--skip-search", action="store_true", help="no frontend latency figures")
    p.add_argument("--skip-cost", action="store_true",
                   help="no cost per change (benchmarks.cost: requests, units and CPU per 1,000 changes, by shape)")
    p.add_argument("--sync-timeout", type=float, default=3600.0,
                   help="seconds a backfill run may take to be fully indexed before the benchmark fails (default 3600)")
    p.add_argument("--chart", type=Path, default=cli.RESULTS / "bench.png", help="where the chart goes (default results/bench.png)")
    return p.parse_args(argv)


# -- chart ------------------------------------------------------------------------------
def chart(result: dict, path: Path) -> None:
    """Draws the figures of `result` (main's dict) as a 2x2 PNG at `path`: throughput, the backfill
    series, freshness's distribution and search latency by clients."""
    import matplotlib  # heavy: matplotlib, for the chart alone

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: matplotlib

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    fig.suptitle(f"productsearch benchmarks, {result['measured_at'][:10]}: {machine.one_line(result['machine'])}", fontsize=9)

    ax = axes[0][0]
    labels, values = ["raw model\n(a)"], [result["raw_embedding"]["texts_per_s"]]
    for run in result["backfill"]:
        labels.append(f"pipeline (b)\nN={run['rows']:,}")
        values.append(run["rows_per_s"])
    bars = ax.bar(labels, values, color=["#4c72b0"] + ["#dd8452"] * len(result["backfill"]))
    ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_ylabel("texts / s")
    ax.set_title(f"Embedding throughput; (b)/(a) = {result['ratio_b_over_a']:.2f}", fontsize=10)

    ax = axes[0][1]
    for run in result["backfill"]:
        xs, ys = zip(*run["series"])
        ax.plot(xs, ys, label=f"N={run['rows']:,}: {run['seconds']:.0f}s, emu peak RSS "
                f"{run['memory_kib']['emu']['peak_rss_kib'] / 1024:.0f} MiB")
    ax.set_xlabel("seconds since the backfill started")
    ax.set_ylabel("vectors in the index")
    ax.set_title("End-to-end backfill", fontsize=10)
    ax.legend(fontsize=8)

    ax = axes[1][0]
    fresh = result.get("freshness")
    if fresh:
        values = sorted(fresh["latencies_s"])
        ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], drawstyle="steps-post")
        ax.axvline(fresh["p95_s"], color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"Freshness (change to searchable): p50 {fresh['p50_s']:.2f}s, p95 {fresh['p95_s']:.2f}s, "
                     f"max {fresh['max_s']:.2f}s", fontsize=10)
        ax.set_xlabel("seconds")
        ax.set_ylabel("fraction of updates")

    ax = axes[1][1]
    search = result.get("search")
    if search and search.get("levels"):
        levels = list(search["levels"].values())
        xs = [str(lv["clients"]) for lv in levels]
        for key, style in (("p50_ms", "o-"), ("p95_ms", "s-"), ("p99_ms", "^-")):
            ax.plot(xs, [lv[key] for lv in levels], style, label=key.replace("_ms", ""))
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("latency (ms)")
        ax.legend(fontsize=8, loc="upper left")
        twin = ax.twinx()
        twin.bar(xs, [lv["qps"] for lv in levels], alpha=0.2, color="green")
        twin.set_ylabel("queries / s (bars)")
        ax.set_title("Search latency, POST /api/search", fontsize=10)
    else:
        ax.text(0.5, 0.5, "search latency not measured", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------
def main(argv=None) -> int:
    """Runs every measurement (see the module docstring), writes the results JSON and the chart;
    returns the exit status (0)."""
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    levels = [int(s) for s in args.concurrency.split(",") if s.strip()]
    started = time.monotonic()
    base = workload.catalog_rows()

    pipeline = Pipeline.own(say)
    result: dict = {"measured_at": cli.now_utc(), "sizes": sizes}
    with pipeline:
        extra = dict(args.app_env)
        env = pipeline.app_env(extra)
        result["app_env"] = extra
        settings = EmbeddingSettings.from_env(env)
        texts = workload.texts(sizes[0], settings.text_template, base)
        say(f"(a) raw embedding throughput on {len(texts):,} catalog texts ...")
        raw = raw_throughput(texts, env)
        embedder = raw.pop("_embedder")
        result["raw_embedding"] = raw
        result["machine"] = machine.describe(raw["device"])
        say(f"    {raw['texts_per_s']:.1f} texts/s in {raw['seconds']:.0f}s ({raw['model']}); other processes on the "
            f"machine used {raw['cpu_s_used_by_other_processes']} CPU s meanwhile")

        result["backfill"] = []
        raw_before = raw["texts_per_s"]
        for n in sizes:
            say(f"(b) end-to-end backfill of {n:,} rows ...")
            run = backfill_run(pipeline, workload.rows(n, base), args.sync_timeout, extra)
            ids = run.pop("_ids")
            # (a) again right after (b): the machine's speed drifts by 10-20% between
            # minutes here, so each (b) is compared with the (a) runs just around it.
            raw_after = time_embedding(embedder, texts)["texts_per_s"]
            run["raw_texts_per_s_before_after"] = [raw_before, raw_after]
            run["ratio_to_raw"] = round(run["rows_per_s"] / statistics.mean([raw_before, raw_after]), 3)
            say(f"    (a) again: {raw_after:.1f} texts/s; (b)/(a) against the mean of the (a) before and after: {run['ratio_to_raw']}")
            raw_before = raw_after
            mem = run["memory_kib"]
            say(f"    {run['rows_per_s']:.1f} rows/s ({run['seconds']:.1f}s; first vector after {run['first_vector_s']}s); "
                f"peak RSS pelican {mem['pelican']['peak_rss_kib'] / 1024:.0f} MiB, emu {mem['emu']['peak_rss_kib'] / 1024:.0f} MiB")
            say(f"    CPU seconds during the backfill: {run['cpu_s_during_backfill']}; other processes on the machine: "
                f"{run['cpu_s_used_by_other_processes']}")
            result["backfill"].append(run)
            if n == sizes[0]:
                say(f"freshness: {args.freshness_samples} updates, about {args.freshness_spacing}s apart ...")
                result["freshness"] = freshness(pipeline, embedder, ids, args.freshness_samples, args.freshness_spacing)
                f = result["freshness"]
                say(f"    p50 {f['p50_s']:.3f}s  p95 {f['p95_s']:.3f}s  max {f['max_s']:.3f}s")
                if not args.skip_search:
                    # search alone on the cores, pelican and emu stopped, as docs/benchmarks.md measured it
                    pipeline.stop_app("pelican")
                    pipeline.stop_app("emu")
                    say(f"search under concurrency through the frontend with {n:,} products indexed ...")
                    result["search"] = search_load.measure(pipeline, base, extra, levels, args.search_requests,
                                                           args.search_seconds)
                    result["search"]["rows_indexed"] = n
            pipeline.stop_app("pelican")
            pipeline.stop_app("emu")
        logs = cli.RESULTS / "tmp" / "bench-logs"  # the apps' logs outlive the temporary stack (git ignores results/tmp)
        shutil.rmtree(logs, ignore_errors=True)
        shutil.copytree(pipeline.stack.root / "logs", logs)

    for run in result["backfill"]:
        if run.get("rows_per_cpu_s") and raw.get("texts_per_cpu_s"):
            run["ratio_to_raw_per_cpu_s"] = round(run["rows_per_cpu_s"] / raw["texts_per_cpu_s"], 3)
    first = result["backfill"][0]
    result["ratio_b_over_a"] = first["ratio_to_raw"]
    if first.get("rows_per_cpu_s") and raw.get("texts_per_cpu_s"):
        # The same ratio per CPU second (all parts of the stack together): it does not
        # move with the load other processes put on a shared machine.
        result["ratio_b_over_a_per_cpu_s"] = round(first["rows_per_cpu_s"] / raw["texts_per_cpu_s"], 3)
    # The cost measurement starts its own private parts, after the main stack has stopped.
    if not args.skip_cost:
        say("cost per change, by shape (benchmarks.cost) ...")
        cost_args = cost.parse_args([])
        result["cost"] = cost.run(cost_args)
        cli.finish(result["cost"], cost_args.output, cost.report)
        capacity.main([str(cost_args.output), str(REPO / "docs" / "scaling.md")])
    result["duration_s"] = round(time.monotonic() - started, 1)
    chart(result, args.chart)
    say(f"wrote {args.chart}")
    cli.finish(result, args.output, report)
    return 0


def report(r: dict) -> None:
    """Prints `r` (main's dict) as the summary table of `make bench`."""
    say()
    say(f"machine: {machine.one_line(r['machine'])}")
    say(f"model:   {r['raw_embedding']['model']}")
    say(f"(a) raw embedding            {r['raw_embedding']['texts_per_s']:>9.1f} texts/s  ({r['raw_embedding']['texts']:,} catalog texts)")
    for run in r["backfill"]:
        m = run["memory_kib"]
        around = run["raw_texts_per_s_before_after"]
        say(f"(b) backfill N={run['rows']:<7,}      {run['rows_per_s']:>9.1f} rows/s   ({run['seconds']:.1f}s; "
            f"{run.get('rows_per_cpu_s')} rows per CPU s)   "
            f"peak RSS pelican {m['pelican']['peak_rss_kib'] / 1024:.0f} MiB, emu {m['emu']['peak_rss_kib'] / 1024:.0f} MiB")
        say(f"    (b)/(a) {run['ratio_to_raw']:.3f}   against (a) {around[0]:.1f} before and {around[1]:.1f} texts/s after it")
    say(f"(b)/(a) at N={r['backfill'][0]['rows']:,}          {r['ratio_b_over_a']:>9.3f}")
    if r.get("ratio_b_over_a_per_cpu_s"):
        say(f"(b)/(a) per CPU second         {r['ratio_b_over_a_per_cpu_s']:>9.3f}  ({r['raw_embedding']['texts_per_cpu_s']} texts "
            f"per CPU s raw, {r['backfill'][0]['rows_per_cpu_s']} rows per CPU s for the whole stack)")
    f = r.get("freshness")
    if f:
        say(f"freshness ({f['samples']} updates)      p50 {f['p50_s']:.3f}s  p95 {f['p95_s']:.3f}s  max {f['max_s']:.3f}s")
    if r.get("search"):
        search_load.report(r["search"])
    say(f"duration {r['duration_s']:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
