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
  search latency through the frontend's POST /api/search with the first N indexed:
      p50/p95/p99 and QPS at 1, 4 and 16 concurrent clients;
  optionally (--int8) int8 dynamic quantization: its raw throughput gain and, with
      --quality-dataset, its nDCG@10 change on a BEIR dataset (two full evaluations);
  then, each on private parts of its own (skip any with its --skip-* flag):
  cost per change (benchmarks.cost: index requests, read and write units, SQS requests,
      model runs and CPU per 1,000 changes for a bulk insert, scattered and hot
      updates, and a burst with added index latency; also results/cost.json, and
      docs/scaling.md from it: benchmarks.capacity),
  CPU embedding runtimes (benchmarks.runtimes: torch, ONNX Runtime, OpenVINO; texts/s,
      agreement, peak RSS), change capture against writers (benchmarks.capture: pgbench
      tps per capture design, a bulk UPDATE, freshness), search under concurrency
      with query batching on and off (benchmarks.search_load: 1/4/16/64 clients),
      and CUDA fp16 (benchmarks.cuda) on a machine with a GPU, else its stored
      figures.

Each part is also a module of its own (benchmarks.throughput, .backfill, .freshness,
.search_load, ...). This is `make bench`: `python -m benchmarks [options]`. Prints the
figures with the machine's description, writes results/bench.json and a chart
results/bench.png. It reports; it asserts nothing about time.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import capacity, capture, cli, cost, cuda, machine, runtimes, search_load, workload
from benchmarks.backfill import backfill_run
from benchmarks.cli import say
from benchmarks.evaluate import dataset_key
from benchmarks.freshness import freshness
from benchmarks.pipeline import REPO, Pipeline, healthy, memory_of
from benchmarks.search_load import search_breakdown, search_latency
from benchmarks.throughput import raw_throughput, time_embedding
from devstack.waiting import wait_until
from productsearch.embedding import Embedder
from productsearch.settings import EmbeddingSettings


def parse_args(argv=None):
    """`make bench`'s options (BENCH_ARGS); argv None reads sys.argv."""
    p = cli.parser(__doc__, "bench.json")
    p.add_argument("--sizes", default="10000,50000", help="comma-separated row counts N for the backfill runs (the first one "
                   "also serves the raw embedding, freshness and search figures)")
    p.add_argument("--freshness-samples", type=int, default=50,
                   help="single-row updates timed from commit to searchable (default 50; 0: none)")
    p.add_argument("--freshness-spacing", type=float, default=1.0, help="mean seconds between freshness samples")
    p.add_argument("--concurrency", default="1,4,16", help="comma-separated numbers of concurrent search clients (default 1,4,16)")
    p.add_argument("--search-requests", type=int, default=400, help="requests per concurrency level (capped by --search-seconds)")
    p.add_argument("--search-seconds", type=float, default=60.0, help="longest time spent per concurrency level (default 60)")
    p.add_argument("--skip-search", action="store_true", help="no frontend latency figures")
    p.add_argument("--skip-runtimes", action="store_true", help="no CPU embedding runtime comparison (benchmarks.runtimes)")
    p.add_argument("--skip-capture", action="store_true", help="no change-capture writer comparison (benchmarks.capture, pgbench)")
    p.add_argument("--skip-cost", action="store_true",
                   help="no cost per change (benchmarks.cost: requests, units and CPU per 1,000 changes, by shape)")
    p.add_argument("--skip-search-load", action="store_true",
                   help="no query batching comparison at 1/4/16/64 clients (benchmarks.search_load)")
    p.add_argument("--int8", action="store_true", help="also measure int8 dynamic quantization's raw throughput")
    p.add_argument("--quality-dataset", type=Path, help="with --int8: BEIR folder to measure the nDCG@10 change on")
    p.add_argument("--fresh-quality", action="store_true", help="with --quality-dataset: re-run both evaluations even if "
                   "results/ holds them")
    p.add_argument("--app-env", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting for the apps and the raw measurement alike, e.g. EMBEDDING_BATCH_SIZE=128 (repeatable)")
    p.add_argument("--sync-timeout", type=float, default=3600.0,
                   help="seconds a backfill run may take to be fully indexed before the benchmark fails (default 3600)")
    p.add_argument("--chart", type=Path, default=cli.RESULTS / "bench.png", help="where the chart goes (default results/bench.png)")
    return p.parse_args(argv)


# -- int8 nDCG change -------------------------------------------------------------------
def quality_pair(dataset: Path, fresh: bool = False) -> dict:
    """nDCG@10 with and without int8. Each figure is taken from the latest full
    evaluation of the same dataset in results/ when there is one (a score does not
    depend on timing or load; `make eval` writes the fp32 one), else measured here:
    a full evaluation through the pipeline each. fresh=True measures both."""
    key = dataset_key(dataset.resolve().name)
    out = {"dataset": dataset.resolve().name}
    for mode in ("none", "int8"):
        path = cli.RESULTS / (f"eval-{key}.json" if mode == "none" else f"eval-{key}-int8.json")
        previous = json.loads(path.read_text()) if path.exists() and not fresh else None
        expected = "(fp32)" if mode == "none" else "(int8-dynamic)"
        if previous and not previous.get("subset") and expected in previous.get("model", ""):
            say(f"  {mode} nDCG@10 from {path.relative_to(REPO)} ({previous['measured_at']})")
            result = previous
        else:
            say(f"  evaluating {dataset} with EMBEDDING_QUANTIZE={mode} ...")
            subprocess.run([sys.executable, "-m", "benchmarks.evaluate", str(dataset), "--quantize", mode,
                            "--output", str(path)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
            result = json.loads(path.read_text())
        out[mode] = {"ndcg@10": result["ndcg@10"], "recall@100": result["recall@100"], "model": result["model"],
                     "sync_s": result["timings_s"]["sync_s"], "from": str(path.relative_to(REPO))}
    out["ndcg_change"] = round(out["int8"]["ndcg@10"] - out["none"]["ndcg@10"], 5)
    return out


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
    if result.get("int8"):
        labels.append("raw model\nint8")
        values.append(result["int8"]["raw_texts_per_s"])
    for run in result["backfill"]:
        labels.append(f"pipeline (b)\nN={run['rows']:,}")
        values.append(run["rows_per_s"])
    bars = ax.bar(labels, values, color=["#4c72b0"] * (2 if result.get("int8") else 1) + ["#dd8452"] * len(result["backfill"]))
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
        extra = dict(item.split("=", 1) for item in args.app_env)
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
        if args.int8:
            q = raw_throughput(texts, {**env, "EMBEDDING_QUANTIZE": "int8"})
            q.pop("_embedder")
            result["int8"] = {"raw_texts_per_s": q["texts_per_s"], "model": q["model"],
                              "throughput_gain": round(q["texts_per_s"] / raw["texts_per_s"], 2)}
            say(f"    int8: {q['texts_per_s']:.1f} texts/s (x{result['int8']['throughput_gain']})")

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
                if args.skip_search:
                    result["search"] = {"skipped": "--skip-search"}
                elif not (REPO / "apps" / "frontend" / "frontend" / "__main__.py").exists():
                    result["search"] = {"skipped": "apps/frontend is not there"}
                    say("search latency: skipped, apps/frontend is not there")
                else:
                    say(f"search latency through the frontend with {n:,} products indexed ...")
                    pipeline.start_app("frontend", extra)
                    url = pipeline.env["FRONTEND_URL"]
                    wait_until(lambda: healthy(url), 300, 0.5, what="the frontend's /healthz")
                    result["search"] = search_latency(url, workload.queries(200, base), levels, args.search_requests,
                                                      args.search_seconds)
                    result["search"]["rows_indexed"] = n
                    result["search"]["frontend_memory_kib"] = memory_of(pipeline.stack.processes["frontend"].pid)
                    pipeline.stop_app("frontend")
                # The frontend's own query runtime (frontend.__main__'s defaults), beside emu's.
                query_embedder = Embedder(EmbeddingSettings.for_queries(pipeline.app_env(extra)))
                result["search_breakdown"] = search_breakdown(pipeline, embedder, workload.queries(200, base),
                                                              query_embedder=query_embedder)
                say(f"    search path in process, per stage: {result['search_breakdown']}")
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
    result["cuda"] = cuda.figures(say)
    # Each of these starts its own private parts, after the main stack has stopped.
    if not args.skip_cost:
        say("cost per change, by shape (benchmarks.cost) ...")
        cost_args = cost.parse_args([])
        result["cost"] = cost.run(cost_args)
        cli.finish(result["cost"], cost_args.output, cost.report)
        capacity.main([str(cost_args.output), str(REPO / "docs" / "scaling.md")])
    if not args.skip_runtimes:
        say("CPU embedding runtimes, interleaved ...")
        result["runtimes"] = runtimes.run()
        runtimes.report(result["runtimes"])
    if not args.skip_capture:
        say("change capture and writers (pgbench), interleaved ...")
        result["capture"] = capture.run(log=say)
        capture.report(result["capture"], say)
    if not args.skip_search_load:
        say("search under concurrency, query batching on and off ...")
        result["search_load"] = search_load.run(log=say)
        search_load.report(result["search_load"])
    if args.int8 and args.quality_dataset:
        say("int8 quality: two full evaluations ...")
        result["int8"]["quality"] = quality_pair(args.quality_dataset, args.fresh_quality)
    result["duration_s"] = round(time.monotonic() - started, 1)
    chart(result, args.chart)
    say(f"wrote {args.chart}")
    cli.finish(result, args.output, report)
    return 0


def report(r: dict) -> None:  # noqa: C901 (one branch per optional section of the report)
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
    s = r.get("search") or {}
    for lv in (s.get("levels") or {}).values():
        say(f"search, {lv['clients']:>2} client(s)         p50 {lv['p50_ms']:.1f} ms  p95 {lv['p95_ms']:.1f} ms  "
            f"p99 {lv['p99_ms']:.1f} ms  {lv['qps']:.1f} QPS  ({lv['requests']} requests, {lv['errors']} errors)")
    b = r.get("search_breakdown")
    if b:
        emu_runtime = b.get("embed_ms_emu_runtime")
        threads = f"{b['torch_threads']} thread{'' if b['torch_threads'] == 1 else 's'}"
        torch_part = f"emu's runtime {emu_runtime['p50']} ms with {threads}, " if emu_runtime else f"{threads}; "
        say(f"search stages (in process)    embed p50 {b['embed_ms']['p50']} ms ({torch_part}"
            f"{b['embed_ms_1_thread']['p50']} ms with 1), index query p50 {b['index_query_ms']['p50']} ms, "
            f"Postgres rows p50 {b['postgres_rows_ms']['p50']} ms")
        if b.get("query_runtime"):
            say(f"  the frontend's query embedding: {b['query_runtime']}")
    if s.get("skipped"):
        say(f"search: skipped ({s['skipped']})")
    if r.get("int8"):
        q = r["int8"]
        line = f"int8 dynamic quantization    {q['raw_texts_per_s']:>9.1f} texts/s  (x{q['throughput_gain']} raw)"
        if q.get("quality"):
            line += f"; nDCG@10 {q['quality']['int8']['ndcg@10']:.5f} vs {q['quality']['none']['ndcg@10']:.5f} ({q['quality']['ndcg_change']:+.5f})"
        say(line)
    gpu = r.get("cuda") or {}
    if gpu.get("skipped"):
        say(f"GPU: none on this machine; {gpu['skipped']}")
    if gpu.get("corpora"):
        for name, c in gpu["corpora"].items():
            say(f"CUDA fp16 on {gpu['gpu']}, {name:<8} raw {c['raw_fp16_texts_per_s']} texts/s by batch size; "
                f"through emu's model process {c['emu_process_fp16_texts_per_s']} texts/s")
        a = gpu.get("agreement_with_cpu_fp32")
        if a:
            say(f"    vectors against CPU fp32: min cosine {a['min_cosine']:.7f} over {a['texts']} texts")
    stored = gpu.get("backfill")
    if stored:
        say(f"GPU end-to-end backfill on {stored['gpu']} (results/{cuda.STORED_GPU_BENCH}, {stored['measured_at']}):")
        for run in stored["runs"]:
            before, after = run["raw_texts_per_s_before_after"]
            say(f"    N={run['rows']:<7,} {run['rows_per_s']:>9.1f} rows/s ({run['seconds']:.1f}s)  (b)/(a) {run['ratio_to_raw']:.3f} "
                f"against (a) {before:.1f} before and {after:.1f} texts/s after it")
    say(f"duration {r['duration_s']:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
