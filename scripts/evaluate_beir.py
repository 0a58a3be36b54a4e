#!/usr/bin/env python3
"""Search quality, end to end: loads a BEIR-format dataset into Postgres as products,
syncs it through the real pipeline (change capture -> pelican -> SQS -> emu -> index),
runs every test query through the frontend's search path (productsearch.search.
ProductSearch, top_k 100) and reports nDCG@10 and recall@100 next to the published
reference for the model.

    .venv/bin/python scripts/evaluate_beir.py ../shared/data/beir-scifact --min-ndcg 0.64008

Each document becomes a product: name = title, description = text (so the indexed
text is `(title + " " + text).strip()`, the MTEB convention), sku = the document id,
price 0. Queries go in as their raw text. By default the command starts a private
local stack in a temporary folder; --use-running-stack .local/stack.env uses the stack
`make up` started instead (the rows then get the category `beir-<dataset>`, queries
filter on it so the catalog already there does not compete, and the rows are deleted
afterwards unless --keep-rows).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import beir, machine  # noqa: E402
from bench.metrics import evaluate  # noqa: E402
from bench.pipeline import REPO, Pipeline  # noqa: E402

# Published nDCG@10 of sentence-transformers/all-MiniLM-L6-v2 (MTEB results), by dataset.
PUBLISHED_NDCG10 = {"scifact": 0.64508}
TOLERANCE = 0.005


def dataset_key(name: str) -> str:
    return name.lower().removeprefix("beir-").removeprefix("beir_")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    p.add_argument("--split", default="test")
    p.add_argument("--use-running-stack", type=Path, metavar="STACK_ENV",
                   help="the stack.env of a running stack (make up writes .local/stack.env)")
    p.add_argument("--keep-rows", action="store_true", help="with --use-running-stack: leave the dataset's rows in place")
    p.add_argument("--reference", type=float, help="published nDCG@10 to compare with (known for: %s)" % ", ".join(PUBLISHED_NDCG10))
    p.add_argument("--min-ndcg", type=float, help="exit 1 when nDCG@10 is below this")
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--batch-size", type=int, help="EMBEDDING_BATCH_SIZE for emu (default: the environment's, else 64)")
    p.add_argument("--quantize", choices=["none", "int8"], help="EMBEDDING_QUANTIZE for emu and the queries")
    p.add_argument("--limit-docs", type=int, help="load only the first N documents (smoke runs; scores then mean little)")
    p.add_argument("--limit-queries", type=int, help="run only the first N judged queries (smoke runs)")
    p.add_argument("--sync-timeout", type=float, default=3600.0, help="seconds to wait for the index to hold every row")
    p.add_argument("--output", type=Path, help="JSON result (default results/eval-<dataset>.json)")
    return p.parse_args(argv)


def say(text: str) -> None:
    print(text, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    data = beir.load(args.dataset, args.split)
    key = dataset_key(data.name)
    if args.limit_docs:
        data.corpus = data.corpus[: args.limit_docs]
    if args.limit_queries:
        keep = list(data.qrels)[: args.limit_queries]
        data.qrels = {q: data.qrels[q] for q in keep}
        data.queries = {q: data.queries[q] for q in keep}
    subset = bool(args.limit_docs or args.limit_queries)
    # A published score is for the whole dataset: a subset's is not comparable with it.
    reference = None if subset else (args.reference if args.reference is not None else PUBLISHED_NDCG10.get(key))
    say(f"dataset {data.name}: {len(data.corpus)} documents, {len(data.queries)} judged {args.split} queries")

    from productsearch.search import MAX_QUERY_CHARS

    too_long = {q: len(t.strip()) for q, t in data.queries.items() if len(t.strip()) > MAX_QUERY_CHARS}
    if too_long:
        say(f"WARNING: {len(too_long)} quer(ies) exceed the search limit of {MAX_QUERY_CHARS} characters; the search "
            f"refuses them and they score 0 (counted, not dropped): {sorted(too_long.items())[:10]}")

    app_env: dict[str, str] = {}
    if args.batch_size:
        app_env["EMBEDDING_BATCH_SIZE"] = str(args.batch_size)
    if args.quantize:
        app_env["EMBEDDING_QUANTIZE"] = args.quantize
    timings: dict[str, float] = {}

    pipeline = Pipeline.running(args.use_running_stack) if args.use_running_stack else Pipeline.own(say)
    with pipeline:
        timings["stack_start_s"] = time.monotonic() - started
        own = pipeline.is_own
        category = "" if own else f"beir-{key}"[:100]
        sku_prefix = "" if own else f"beir-{key}:"
        rows = [{"name": d.title, "sku": f"{sku_prefix}{d.id}", "description": d.text, "price": 0, "category": category}
                for d in data.corpus]

        # Load: the triggers capture each insert. On our own stack the apps start after the
        # load, so pelican ships the captured changes as a burst, like a bulk import.
        t = time.monotonic()
        product_ids = pipeline.insert_products(rows, capture=True)
        timings["load_s"] = time.monotonic() - t
        doc_of = {pid: d.id for pid, d in zip(product_ids, data.corpus, strict=True)}
        say(f"loaded {len(product_ids)} products into Postgres in {timings['load_s']:.1f}s; syncing through the pipeline ...")

        t = time.monotonic()
        if own:
            pipeline.start_app("pelican", app_env)
            pipeline.start_app("emu", app_env)
            progress = lambda n: say(f"  indexed {n}/{len(product_ids)} ({time.monotonic() - t:.0f}s)")  # noqa: E731
            pipeline.wait_count(len(product_ids), args.sync_timeout, interval=1.0, progress=progress)
        pipeline.wait_ids(product_ids, args.sync_timeout,
                          progress=lambda n: say(f"  indexed {n}/{len(product_ids)} ({time.monotonic() - t:.0f}s)"))
        timings["sync_s"] = time.monotonic() - t
        say(f"every row is in the index after {timings['sync_s']:.1f}s "
            f"({len(product_ids) / max(timings['sync_s'], 1e-9):.1f} docs/s through the pipeline)")

        # The frontend's search path, with the same settings as emu.
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        from productsearch.embedding import Embedder
        from productsearch.search import InvalidSearch, ProductSearch, SearchFilters
        from productsearch.settings import EmbeddingSettings

        embedder = Embedder(EmbeddingSettings.from_env(pipeline.app_env(app_env)))
        filters = SearchFilters(category=category) if category else None
        runs: dict[str, list[str]] = {}
        refused: dict[str, str] = {}
        foreign = 0
        t = time.monotonic()
        with ConnectionPool(pipeline.env["DATABASE_URL"], min_size=1, max_size=2, open=True,
                            kwargs={"row_factory": dict_row, "autocommit": True}) as pool:
            search = ProductSearch(embedder, pipeline.index, pool)
            for qid, text in data.queries.items():
                try:
                    results = search.search(text, top_k=args.top_k, filters=filters)
                except InvalidSearch as exc:
                    refused[qid] = str(exc)
                    runs[qid] = []
                    continue
                ranking = []
                for r in results:
                    if r.id in doc_of:
                        ranking.append(doc_of[r.id])
                    else:
                        foreign += 1
                runs[qid] = ranking
        timings["search_s"] = time.monotonic() - t
        if not own and not args.keep_rows:
            pipeline.conn.execute("DELETE FROM products WHERE id = ANY(%s)", (product_ids,))
            say(f"deleted the {len(product_ids)} dataset rows again (the pipeline removes their vectors)")
        device = str(embedder.device)
        model = embedder.description

    scores = evaluate(runs, data.qrels, ndcg_k=10, recall_k=100)
    timings["total_s"] = time.monotonic() - started
    info = machine.describe(device)
    ndcg, recall = scores["ndcg@10"], scores["recall@100"]
    result = {
        "dataset": data.name,
        "split": args.split,
        "documents": len(data.corpus),
        "queries": scores["queries"],
        "ndcg@10": round(ndcg, 5),
        "recall@100": round(recall, 5),
        "reference_ndcg@10": reference,
        "delta_vs_reference": round(ndcg - reference, 5) if reference is not None else None,
        "within_tolerance": (ndcg >= reference - TOLERANCE) if reference is not None else None,
        "min_ndcg": args.min_ndcg,
        "refused_queries": refused,
        "results_outside_dataset": foreign,
        "model": model,
        "search_path": "productsearch.search.ProductSearch.search (top_k=%d%s)" % (args.top_k, f", category={category}" if category else ""),
        "stack": "own (temporary)" if own else str(args.use_running_stack),
        "subset": subset,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "machine": info,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "per_query": scores["per_query"],
    }
    out = args.output or REPO / "results" / f"eval-{key}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    say("")
    say(f"machine: {machine.one_line(info)}")
    say(f"model:   {model}")
    say(f"{data.name} ({args.split}): {len(data.corpus)} docs, {scores['queries']} queries")
    ref_text = f"   published {reference:.5f}   delta {ndcg - reference:+.5f}" if reference is not None else (
        "   (a subset: not comparable with the published score)" if subset else "")
    say(f"  nDCG@10    {ndcg:.5f}{ref_text}")
    say(f"  recall@100 {recall:.5f}")
    if refused:
        say(f"  {len(refused)} queries refused by the search (scored 0)")
    say(f"  time: stack {timings['stack_start_s']:.0f}s, load {timings['load_s']:.0f}s, sync {timings['sync_s']:.0f}s, "
        f"search {timings['search_s']:.0f}s, total {timings['total_s']:.0f}s")
    say(f"wrote {out}")
    if args.min_ndcg is not None and ndcg < args.min_ndcg:
        say(f"FAIL: nDCG@10 {ndcg:.5f} is below the required {args.min_ndcg:.5f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
