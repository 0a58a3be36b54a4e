"""Freshness: update one row's description, then time until a query with the new
text's vector returns that row first with the new text in its metadata (change to
searchable, through the outbox, pelican, SQS, emu and the index); p50/p95/max.

On a private local stack holding N catalog rows loaded by `pelican backfill`
(benchmarks.backfill), with pelican and emu running as deployed.

    .venv/bin/python -m benchmarks.freshness [--rows 2000] [--samples 50] [--spacing 1.0]

Prints the figures with the machine's description and writes results/freshness.json.
It reports; it asserts nothing about time.
"""

from __future__ import annotations

import random
import statistics
import sys
import time

from benchmarks import cli, machine, workload
from benchmarks.backfill import backfill_run
from benchmarks.pipeline import Pipeline
from devstack.waiting import wait_until
from productsearch.documents import text_hash
from productsearch.embedding import Embedder
from productsearch.settings import EmbeddingSettings

WORDS = ["amber", "basalt", "cobalt", "delta", "ember", "fjord", "granite", "harbor", "indigo", "juniper",
         "kelvin", "lumen", "meadow", "nimbus", "onyx", "prairie", "quartz", "russet", "sierra", "tundra"]


def freshness(pipeline: Pipeline, embedder, ids: list[int], samples: int, spacing: float, seed: int = 11) -> dict:
    """`samples` updates of random rows among `ids`, about `spacing` s apart (uniform
    within 0.5-1.5 x), each timed until the index answers with it (see the module
    docstring; 60 s at most each, else TimeoutError). `embedder` makes the probe's
    query vector before the clock starts. Returns p50_s/p95_s/max_s/mean_s and every
    latency in seconds."""
    rnd = random.Random(seed)
    latencies = []
    for i in range(samples):
        pid = rnd.choice(ids)
        row = pipeline.conn.execute("SELECT name, description FROM products WHERE id = %s", (pid,)).fetchone()
        new_description = f"{row['description'].split(' Revised')[0]} Revised {i}: {rnd.choice(WORDS)} {rnd.choice(WORDS)} edition."
        vector = embedder.embed([f"{row['name']} {new_description}".strip()])[0]  # before the clock starts
        t0 = time.monotonic()
        pipeline.conn.execute("UPDATE products SET description = %s WHERE id = %s", (new_description, pid))

        expected_hash = text_hash(f"{row['name']} {new_description}".strip())

        def arrived():
            matches = pipeline.index.search_dense(vector, top_k=1)
            return bool(matches) and matches[0].id == str(pid) and matches[0].score > 0.999 \
                and matches[0].metadata.get("text_hash") == expected_hash

        wait_until(arrived, 60, interval=0.02, what=f"the update of product {pid} to be searchable")
        latencies.append(time.monotonic() - t0)
        time.sleep(rnd.uniform(0.5 * spacing, 1.5 * spacing))
    return {
        "samples": len(latencies),
        "criterion": "a query with the new text's embedding returns the row first (cosine > 0.999) and the "
                     "match's metadata holds the new text's fingerprint",
        "p50_s": round(cli.pct(latencies, 50), 3), "p95_s": round(cli.pct(latencies, 95), 3),
        "max_s": round(max(latencies), 3), "mean_s": round(statistics.fmean(latencies), 3),
        "latencies_s": [round(x, 3) for x in latencies],
    }


def report(r: dict) -> None:
    """Prints the freshness figures."""
    cli.say()
    cli.say(f"machine: {machine.one_line(r['machine'])}")
    cli.say(f"freshness ({r['samples']} updates, {r['rows']:,} rows indexed)   p50 {r['p50_s']:.3f}s  "
            f"p95 {r['p95_s']:.3f}s  max {r['max_s']:.3f}s")


def main(argv=None) -> int:
    """Command line: backfill --rows, then freshness; returns the exit status."""
    p = cli.parser(__doc__, "freshness.json", rows=2000)
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--spacing", type=float, default=1.0, help="mean seconds between updates")
    args = p.parse_args(argv)

    embedder = Embedder(EmbeddingSettings.from_env({}))  # the probe's query vectors
    with Pipeline.own(cli.say) as pipeline:
        cli.say(f"loading {args.rows:,} rows through pelican backfill and emu ...")
        ids = backfill_run(pipeline, workload.rows(args.rows), args.sync_timeout)["_ids"]
        cli.say(f"freshness: {args.samples} updates, about {args.spacing}s apart ...")
        result = freshness(pipeline, embedder, ids, args.samples, args.spacing)
    result.update(rows=args.rows, measured_at=cli.now_utc())
    cli.finish(result, args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
