"""End-to-end backfill throughput, (b) of `make bench`: from starting `pelican backfill`
over N rows already in the table until the index holds the last vector, through
pelican, SQS, emu and the index, on a private local stack; peak RSS (VmHWM) of pelican
and emu, and the CPU seconds each part of the stack used meanwhile.

    .venv/bin/python -m benchmarks.backfill [--rows 10000] [--app-env KEY=VALUE ...]

Prints the figures with the machine's description and writes results/backfill.json.
It reports; it asserts nothing about time.
"""

from __future__ import annotations

import sys
import time

from benchmarks import cli, machine, workload
from benchmarks.pipeline import Pipeline, cpu_by_part, machine_busy_seconds, memory_of


def backfill_run(pipeline: Pipeline, rows: list[dict], timeout: float, app_env: dict[str, str] | None = None) -> dict:
    """Empties the stack, inserts `rows` without capturing them (an existing table, as a
    backfill finds it), starts pelican and emu with `app_env`, runs `pelican backfill`
    and polls the index's count every 0.25 s until it holds them all. Leaves pelican
    and emu running. Returns the figures, the (seconds, vectors) series and the rows'
    ids under "_ids" (pop it before storing). Raises TimeoutError after `timeout` s."""
    n = len(rows)
    pipeline.reset()
    t = time.monotonic()
    ids = pipeline.insert_products(rows, capture=False)
    pipeline.refit_lexical()  # as `make up` does: hybrid search needs the table's BM25 statistics
    load_s = time.monotonic() - t
    pelican = pipeline.start_app("pelican", app_env)
    emu = pipeline.start_app("emu", app_env)
    pipeline.wait_for_log("emu", "emu started")  # model loaded: the clock measures the pipeline, not start-up
    pipeline.wait_for_log("pelican", "pelican started")
    time.sleep(1.0)
    cpu_before = cpu_by_part(pipeline)
    busy_before = machine_busy_seconds()
    series = [(0.0, 0)]
    t0 = time.monotonic()
    backfill = pipeline.run_cli(["-m", "pelican", "backfill"])
    captured_s = time.monotonic() - t0
    first_s = None
    deadline = t0 + timeout
    last_print = t0
    while True:
        count = pipeline.index.count()
        now = time.monotonic()
        series.append((round(now - t0, 3), count))
        if count and first_s is None:
            first_s = now - t0
        if count >= n:
            break
        if now > deadline:
            raise TimeoutError(f"the index holds {count} of {n} vectors after {timeout:.0f}s")
        if now - last_print > 15:
            cli.say(f"    {count}/{n} indexed after {now - t0:.0f}s")
            last_print = now
        time.sleep(0.25)
    elapsed = series[-1][0]
    cpu_after = cpu_by_part(pipeline)
    busy = machine_busy_seconds() - busy_before
    ours = sum(cpu_after.get(k, 0) - v for k, v in cpu_before.items())
    missing = pipeline.missing_ids(ids[-1000:])  # the last rows are queryable by id, not only counted
    memory = {"pelican": memory_of(pelican.pid), "emu": memory_of(emu.pid)}
    for name in ("index", "aws"):
        proc = pipeline.stack.processes.get(name)
        if proc:
            memory[name] = memory_of(proc.pid)
    return {
        "rows": n,
        "load_s": round(load_s, 2),
        "backfill_capture_s": round(captured_s, 2),
        "first_vector_s": round(first_s, 2) if first_s is not None else None,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(n / elapsed, 1),
        "missing_among_last_1000": len(missing),
        "memory_kib": memory,
        "cpu_s_during_backfill": {k: round(cpu_after.get(k, 0) - v, 1) for k, v in cpu_before.items()},
        "cpu_s_used_by_other_processes": round(busy - ours, 1),
        "rows_per_cpu_s": round(n / ours, 2) if ours > 0 else None,
        "backfill_output": backfill.stdout.strip().splitlines()[-1:] if backfill.stdout else [],
        "series": series,
        "_ids": ids,
    }


def report(r: dict) -> None:
    """Prints one backfill_run's figures."""
    cli.say()
    cli.say(f"machine: {machine.one_line(r['machine'])}")
    m = r["memory_kib"]
    cli.say(f"backfill N={r['rows']:,}: {r['rows_per_s']:.1f} rows/s ({r['seconds']:.1f}s; first vector after "
            f"{r['first_vector_s']}s; {r['rows_per_cpu_s']} rows per CPU s); peak RSS pelican "
            f"{m['pelican']['peak_rss_kib'] / 1024:.0f} MiB, emu {m['emu']['peak_rss_kib'] / 1024:.0f} MiB")
    cli.say(f"CPU seconds during the backfill: {r['cpu_s_during_backfill']}; other processes on the machine: "
            f"{r['cpu_s_used_by_other_processes']}")


def main(argv=None) -> int:
    """Command line: one backfill on a private stack; returns the exit status."""
    args = cli.parser(__doc__, "backfill.json", rows=10000, app_env=True).parse_args(argv)
    extra = dict(args.app_env)
    with Pipeline.own(cli.say) as pipeline:
        result = backfill_run(pipeline, workload.rows(args.rows), args.sync_timeout, extra)
    result.pop("_ids")
    result.update(measured_at=cli.now_utc(), app_env=extra)
    cli.finish(result, args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
