"""What each change costs the pipeline, in figures that do not depend on the machine:
index requests, Pinecone read and write units, SQS requests, model runs and CPU
seconds per 1,000 changes, for the shapes real catalogs see, on a private local stack
(pelican and emu as in production, the index server and the SQS endpoint counting
each request they serve):

  bulk       one INSERT of N new rows (what a backfill or first load looks like: every
             row new to the index, consecutive ids);
  scattered  single-row price updates of distinct products, one transaction each, at
             --rate a second, on products spread over --groups message groups (as
             products picked at random from a catalog of groups x 1,024 would be);
  text       the same, editing descriptions instead (the model must run);
  hot        single-row price updates cycling over 10 products at --rate a second;

then the emu CPU of a price-only change over that of a text change, and how much of
its speed a burst of price-only changes keeps when every index request takes
--latency-ms more, and when every SQS request does too (set on the servers, the
three measured in turn, three times; the median ratio is quoted). The
record's size is what Pinecone bills storage and queries by.

A shape ends when pelican has shipped every change and emu has settled each one
(read from their logs, so the benchmark sends no request the counters would see).
`python -m benchmarks.cost`; `make bench` runs it too. Writes results/cost.json,
which `python -m benchmarks.capacity` reads. It reports; it asserts nothing about time.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import time
from collections.abc import Callable

from benchmarks import cli, workload
from benchmarks.cli import say
from benchmarks.pipeline import Pipeline, cpu_by_part
from benchmarks.throughput import raw_throughput
from devstack import costs
from devstack.waiting import wait_until
from productsearch.documents import indexed_text
from productsearch.jobs import PARTITION_SPAN
from productsearch.settings import EmbeddingSettings

HOT_PRODUCTS = 10
# Rounds of the latency burst, each measuring the three settings in turn; the ratio
# quoted is the median of the rounds' ratios, so one slow or fast round does not decide it.
ROUNDS = 3
# Where the spread products' ids start: above any id the bulk insert takes.
SPREAD_FIRST_ID = 100_000_000
# Pinecone docs: Understanding cost, Storage: a record's size is its id, its metadata,
# 4 bytes per dense dimension and 8 per non-zero sparse value.
DENSE_BYTES_PER_DIMENSION = 4
SPARSE_BYTES_PER_VALUE = 8


def parse_args(argv=None):
    """The options; argv None reads sys.argv."""
    p = cli.parser(__doc__, "cost.json")
    p.add_argument("--rows", type=int, default=2000, help="rows of the bulk insert, also the table the other shapes "
                   "change (default 2000; at least the burst)")
    p.add_argument("--changes", type=int, default=1000, help="single-row changes per scattered, text and hot shape "
                   "(hot writes twice as many; default 1000)")
    p.add_argument("--rate", type=float, default=500.0, help="single-row changes written a second (default 500)")
    p.add_argument("--burst", type=int, default=2000, help="price-only changes of the latency burst (default 2000)")
    p.add_argument("--latency-ms", type=float, default=50.0, help="latency added to every index request for the "
                   "burst's second measurement (default 50)")
    p.add_argument("--groups", type=int, default=50, help="FIFO message groups the single-row shapes' products "
                   "spread over (default 50, a 51,200-product catalog's worth; the local SQS slows with the "
                   "square of the messages it holds, and one change per group means one message per change)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a shape may take before the run fails")
    return p.parse_args(argv)


# -- reading the apps' progress from their logs --------------------------------------
def _log_lines(pipeline: Pipeline, app: str, message: str) -> list[dict]:
    out = []
    for line in pipeline.log_text(app).splitlines():
        if f'"msg": "{message}"' in line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def shipped(pipeline: Pipeline) -> int:
    """Changes pelican has shipped since it started (one per product per claim)."""
    return sum(int(entry.get("products", 0)) for entry in _log_lines(pipeline, "pelican", "shipped changes"))


def emu_counts(pipeline: Pipeline) -> dict[str, int]:
    """emu's totals since it started, from its latest "batch written" line."""
    lines = _log_lines(pipeline, "emu", "batch written")
    keys = ("indexed", "deleted", "superseded", "dead_letter", "texts_embedded", "vectors_kept")
    return {k: int(lines[-1].get(k, 0)) if lines else 0 for k in keys}


def settled(counts: dict[str, int]) -> int:
    return counts["indexed"] + counts["deleted"] + counts["superseded"] + counts["dead_letter"]


def outbox_rows(pipeline: Pipeline) -> int:
    return pipeline.conn.execute("SELECT count(*) AS n FROM product_changes").fetchone()["n"]


def wait_settled(pipeline: Pipeline, shipped_before: int, settled_before: int, timeout: float) -> None:
    """Waits until the outbox is empty and emu has settled every change pelican shipped
    (at least one: every shape writes).
    RuntimeError when pelican or emu exits meanwhile; TimeoutError after `timeout`
    seconds. Either names the counts it last saw and ends with both apps' latest log
    lines, so a run that never settles says why instead of only that it did not."""
    def state() -> dict:
        for app in ("pelican", "emu"):
            pipeline.check_running(app, " before the changes settled")
        return {"outbox_rows": outbox_rows(pipeline), "shipped": shipped(pipeline) - shipped_before,
                "settled": settled(emu_counts(pipeline)) - settled_before}

    last: dict = {}

    def done() -> bool:
        last.update(state())
        # pelican logs a claim just after its commit empties the outbox: until that line
        # is read nothing counts as shipped, so an empty outbox alone settles nothing.
        return last["outbox_rows"] == 0 and 0 < last["shipped"] <= last["settled"]

    try:
        wait_until(done, timeout, 0.05, what="every change shipped and settled")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; last seen {last}" + _log_tails(pipeline)) from None


def _log_tails(pipeline: Pipeline, lines: int = 15) -> str:
    return "".join(f"\n--- {app}'s latest log lines:\n" + "\n".join(pipeline.log_text(app).splitlines()[-lines:])
                   for app in ("pelican", "emu"))


# -- writers ----------------------------------------------------------------------------
def paced(pipeline: Pipeline, statements: list[tuple[str, tuple]], rate: float) -> int:
    """Runs each statement in its own transaction, `rate` a second; returns how many."""
    start = time.monotonic()
    for n, (sql, params) in enumerate(statements):
        wait = start + n / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        pipeline.conn.execute(sql, params)
    return len(statements)


def spread_insert(pipeline: Pipeline, ids: list[int], rows: list[dict]) -> int:
    """Inserts a product for each of `ids` (explicit ids), texts from `rows`; one transaction."""
    with pipeline.conn.transaction(), pipeline.conn.cursor() as cur:
        cur.executemany("INSERT INTO products (id, name, sku, description, price, category) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        [(pid, r["name"], f"SPREAD-{pid}", r["description"], r["price"], r["category"])
                         for pid, r in zip(ids, (rows[n % len(rows)] for n in range(len(ids))), strict=True)])
    return len(ids)


def measure(pipeline: Pipeline, label: str, write: Callable[[], int], timeout: float) -> dict:
    """Runs `write` (which returns the row changes it wrote) and waits for the pipeline
    to settle them; returns the shape's costs per 1,000 changes written."""
    before_shipped, before = shipped(pipeline), emu_counts(pipeline)
    costs.reset_stats(pipeline.env)
    cpu_before = cpu_by_part(pipeline)
    started = time.monotonic()
    written = write()
    wait_settled(pipeline, before_shipped, settled(before), timeout)
    seconds = time.monotonic() - started
    stats = costs.read_stats(pipeline.env)
    cpu_after = cpu_by_part(pipeline)
    after = emu_counts(pipeline)
    per = 1000.0 / written
    index_ops = stats["index"]["operations"]
    sqs_ops = stats["aws"]["operations"]
    result = {
        "changes": written,
        "seconds": round(seconds, 2),
        "changes_per_s": round(written / seconds, 1),
        "index_requests": round(stats["index"]["totals"]["requests"] * per, 2),
        "index_requests_by_operation": {op: round(row["requests"] * per, 2) for op, row in index_ops.items()},
        "read_units": round(stats["index"]["totals"]["read_units"] * per, 2),
        "write_units": round(stats["index"]["totals"]["write_units"] * per, 2),
        "sqs_requests": round(stats["aws"]["totals"]["requests"] * per, 2),
        "sqs_requests_by_action": {op: round(row["requests"] * per, 2) for op, row in sqs_ops.items()},
        "model_texts": round((after["texts_embedded"] - before["texts_embedded"]) * per, 1),
        "vectors_kept": round((after["vectors_kept"] - before["vectors_kept"]) * per, 1),
        "emu_cpu_s_per_change": round((cpu_after["emu"] - cpu_before["emu"]) / written, 6),
        "pelican_cpu_s_per_change": round((cpu_after["pelican"] - cpu_before["pelican"]) / written, 6),
    }
    if "billed_requests" in stats["aws"]["totals"]:
        result["sqs_billed_requests"] = round(stats["aws"]["totals"]["billed_requests"] * per, 2)
    say(f"  {label}: {result['index_requests']} index requests, {result['read_units']} RU, {result['write_units']} WU, "
        f"{result['sqs_requests']} SQS requests, {result['model_texts']} model texts per 1,000 changes; "
        f"emu {result['emu_cpu_s_per_change'] * 1000:.2f} CPU ms per change")
    return result


def record_bytes(pipeline: Pipeline, ids: list[int]) -> dict:
    """The mean size of the records of `ids`, as Pinecone bills it (see the constants)."""
    found = pipeline.index.fetch([str(i) for i in ids])
    sizes = {"id": [], "metadata": [], "dense": [], "sparse": []}
    for vid, vector in found.items():
        sizes["id"].append(len(vid.encode()))
        sizes["metadata"].append(len(json.dumps(vector.metadata or {}, separators=(",", ":")).encode()))
        sizes["dense"].append(DENSE_BYTES_PER_DIMENSION * len(vector.values or []))
        sparse = getattr(vector, "sparse_values", None)
        sizes["sparse"].append(SPARSE_BYTES_PER_VALUE * (len(sparse.indices) if sparse is not None else 0))
    out = {part: round(statistics.fmean(values), 1) for part, values in sizes.items()}
    out["total"] = round(sum(out.values()), 1)
    out["records"] = len(found)
    return out


def stored_gpu_texts_per_s() -> float | None:
    """The model's raw texts/s on a GPU from the stored CUDA run, when there is one."""
    path = cli.RESULTS / "bench-gpu.json"
    try:
        return float(json.loads(path.read_text())["raw_embedding"]["texts_per_s"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def raw_cpu_texts_per_s(pipeline: Pipeline, texts: list[str]) -> float:
    """The model's own texts/s in this process, with emu's settings."""
    return float(raw_throughput(texts, pipeline.app_env())["texts_per_s"])


# -- the run ----------------------------------------------------------------------------
def run(args) -> dict:
    """Every shape on a private stack; returns the results (see the module docstring)."""
    rnd = random.Random(11)
    rows = workload.rows(max(args.rows, args.burst))
    result: dict = {"measured_at": cli.now_utc(), "how": {
        "rows": len(rows), "changes": args.changes, "rate_per_s": args.rate, "burst": args.burst, "groups": args.groups,
        "added_latency_ms": args.latency_ms, "per": "figures per 1,000 changes written unless named otherwise"}}
    with Pipeline.own(say) as pipeline:
        template = EmbeddingSettings.from_env(pipeline.app_env()).text_template
        say("raw model throughput on the catalog's texts ...")
        result["raw_model_texts_per_s"] = {"cpu": round(raw_cpu_texts_per_s(
            pipeline, [indexed_text(r, template) for r in rows[:1000]]), 1), "gpu": stored_gpu_texts_per_s()}
        pipeline.start_app("pelican")
        pipeline.start_app("emu")
        pipeline.wait_for_log("emu", "emu started")
        shapes: dict = {}

        def bulk() -> int:
            return len(pipeline.insert_products(rows, batch=len(rows)))

        say(f"bulk insert of {len(rows):,} rows ...")
        shapes["backfill"] = measure(pipeline, "bulk insert", bulk, args.timeout)
        ids = [r["id"] for r in pipeline.conn.execute("SELECT id FROM products ORDER BY id").fetchall()]
        result["record_bytes"] = record_bytes(pipeline, ids[:200])

        # The products the single-row shapes change, spread over message groups, set up unmeasured.
        groups = max(1, min(args.groups, args.changes))
        spread = [SPREAD_FIRST_ID + (n % groups) * PARTITION_SPAN + n // groups for n in range(args.changes)]
        say(f"setting up {len(spread):,} products over {groups} message groups ...")
        measure(pipeline, "setup", lambda: spread_insert(pipeline, spread, rows), args.timeout)
        ids = spread

        def price_updates(targets: list[int]) -> Callable[[], int]:
            return lambda: paced(pipeline, [("UPDATE products SET price = price + 1 WHERE id = %s", (pid,))
                                            for pid in targets], args.rate)

        scattered = rnd.sample(ids, min(args.changes, len(ids)))
        say(f"{len(scattered):,} scattered single-row price updates at {args.rate:g}/s ...")
        shapes["scattered"] = measure(pipeline, "scattered price updates", price_updates(scattered), args.timeout)

        edited = rnd.sample(ids, min(args.changes, len(ids)))
        say(f"{len(edited):,} scattered single-row description edits at {args.rate:g}/s ...")
        shapes["text"] = measure(pipeline, "scattered text edits", lambda: paced(pipeline, [
            ("UPDATE products SET description = description || %s WHERE id = %s", (f" Revised {n}.", pid))
            for n, pid in enumerate(edited)], args.rate), args.timeout)

        hot = rnd.sample(ids, HOT_PRODUCTS)
        say(f"{2 * args.changes:,} price updates on {HOT_PRODUCTS} hot products at {args.rate:g}/s ...")
        shapes["hot"] = measure(pipeline, "hot products", price_updates([hot[n % HOT_PRODUCTS]
                                                                         for n in range(2 * args.changes)]), args.timeout)
        result["shapes"] = shapes
        price, text = shapes["scattered"]["emu_cpu_s_per_change"], shapes["text"]["emu_cpu_s_per_change"]
        result["price_only_over_text_cpu"] = round(price / text, 3) if text > 0 else None

        burst_ids = [r["id"] for r in pipeline.conn.execute(
            "SELECT id FROM products WHERE id < %s ORDER BY id LIMIT %s", (SPREAD_FIRST_ID, args.burst)).fetchall()]

        def burst() -> int:
            pipeline.conn.execute("UPDATE products SET price = price + 1 WHERE id = ANY(%s)", (burst_ids,))
            return len(burst_ids)

        # In turn, ROUNDS times: no added latency, added to every index request, added to every
        # index and SQS request (pelican's sends and emu's receives and deletes too).
        settings = {"local": (0.0, 0.0), "added": (args.latency_ms, 0.0), "added_everywhere": (args.latency_ms, args.latency_ms)}
        speeds: dict[str, list[float]] = {key: [] for key in settings}
        for round_ in range(ROUNDS):
            for key, (index_ms, aws_ms) in settings.items():
                costs.set_latency(pipeline.env, index_ms=index_ms, aws_ms=aws_ms)
                say(f"burst of {len(burst_ids):,} price-only changes, +{index_ms:g} ms per index request, "
                    f"+{aws_ms:g} ms per SQS request (round {round_ + 1}) ...")
                speeds[key].append(measure(pipeline, f"burst ({key})", burst, args.timeout)["changes_per_s"])
        costs.set_latency(pipeline.env, index_ms=0.0, aws_ms=0.0)
        ratios = [a / b for a, b in zip(speeds["added"], speeds["local"], strict=True)]
        everywhere = [a / b for a, b in zip(speeds["added_everywhere"], speeds["local"], strict=True)]
        result["latency_overlap"] = {"added_ms": args.latency_ms, "changes": len(burst_ids),
                                     "changes_per_s": speeds, "ratios": [round(r, 3) for r in ratios],
                                     "ratio": round(statistics.median(ratios), 3),
                                     "ratios_everywhere": [round(r, 3) for r in everywhere],
                                     "ratio_everywhere": round(statistics.median(everywhere), 3)}
        logs = cli.RESULTS / "tmp" / "cost-logs"  # the apps' logs outlive the stack (git ignores results/tmp)
        shutil.rmtree(logs, ignore_errors=True)
        shutil.copytree(pipeline.stack.root / "logs", logs)
    return result


GOALS = (
    ("emu CPU, price-only change / text change", lambda r: r["price_only_over_text_cpu"], "<=", 0.2),
    ("index requests per 1,000 scattered single-row changes", lambda r: r["shapes"]["scattered"]["index_requests"], "<=", 30),
    ("index requests per 1,000 rows of a bulk insert", lambda r: r["shapes"]["backfill"]["index_requests"], "<=", 12),
    ("burst speed with added index latency / without", lambda r: r["latency_overlap"]["ratio"], ">=", 0.7),
)


def report(r: dict) -> None:
    """Prints the figures, each goal beside its figure."""
    say()
    say(f"Costs per 1,000 changes ({r['measured_at']}):")
    say(f"  {'shape':<10} {'index req':>9} {'RU':>8} {'WU':>9} {'SQS req':>8} {'model texts':>11} {'emu CPU ms/change':>17}")
    for name, s in r["shapes"].items():
        say(f"  {name:<10} {s['index_requests']:>9} {s['read_units']:>8} {s['write_units']:>9} {s['sqs_requests']:>8} "
            f"{s['model_texts']:>11} {s['emu_cpu_s_per_change'] * 1000:>17.2f}")
    b = r["record_bytes"]
    say(f"  index record: {b['total']:.0f} bytes (id {b['id']:.0f}, metadata {b['metadata']:.0f}, dense {b['dense']:.0f}, "
        f"sparse {b['sparse']:.0f})")
    lo = r["latency_overlap"]
    say(f"  burst of {lo['changes']:,} price-only changes: {lo['changes_per_s']['added']} changes/s with +{lo['added_ms']:g} ms "
        f"per index request, {lo['changes_per_s']['local']} without; ratios {lo['ratios']}")
    say(f"  the same with +{lo['added_ms']:g} ms per SQS request too: {lo['changes_per_s']['added_everywhere']} changes/s; "
        f"ratios {lo['ratios_everywhere']}")
    for label, figure, op, goal in GOALS:
        value = figure(r)
        met = value is not None and (value <= goal if op == "<=" else value >= goal)
        say(f"  {label}: {value} (goal {op} {goal}: {'met' if met else 'NOT met'})")


def main(argv=None) -> int:
    """Runs the shapes (module docstring), writes the JSON and prints the figures."""
    args = parse_args(argv)
    started = time.monotonic()
    result = run(args)
    result["duration_s"] = round(time.monotonic() - started, 1)
    cli.finish(result, args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

