"""Search quality, end to end: loads a BEIR-format dataset into Postgres as products,
syncs it through the real pipeline (change capture -> pelican -> SQS -> emu -> index),
runs every test query through the frontend's search path (productsearch.search.
ProductSearch, top_k 100) in each mode (hybrid, semantic, keyword) and reports nDCG@10
and recall@100, semantic's next to the published reference for the model.

    .venv/bin/python -m benchmarks.evaluate ../shared/data/beir-scifact --min-ndcg 0.64008 --min-hybrid-ndcg 0.72

The keyword statistics are refitted (`pelican refit-lexical`) after the load and
before anything is shipped. --tune first sweeps the hybrid weighting on the train
split's queries (same corpus, same path), writes results/hybrid-tuning.json and
evaluates hybrid with the weighting chosen there; the test split never chooses it.

Each document becomes a product: name = title, description = text (so the indexed
text is `(title + " " + text).strip()`, the MTEB convention), sku = the document id,
price 0. Queries go in as their raw text. By default the command starts a private
local stack in a temporary folder; --use-running-stack .local/stack.env uses the stack
`make up` started instead (the rows then get the category `beir-<dataset>`, queries
filter on it so the catalog already there does not compete, and the rows are deleted
afterwards unless --keep-rows).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from benchmarks import beir, cli, machine
from benchmarks.cli import say
from benchmarks.metrics import evaluate
from benchmarks.pipeline import Pipeline
from productsearch import search as search_module
from productsearch.embedding import Embedder
from productsearch.fusion import DOCUMENT_HYBRID_ALPHA
from productsearch.search import MAX_QUERY_CHARS, NORMALISATIONS, InvalidSearch, ProductSearch, SearchFilters
from productsearch.settings import EmbeddingSettings

# Published nDCG@10 of sentence-transformers/all-MiniLM-L6-v2 (MTEB results), by dataset.
PUBLISHED_NDCG10 = {"scifact": 0.64508}
TOLERANCE = 0.005
MODES = ("hybrid", "semantic", "keyword")
# The hybrid weightings --tune tries, by sparse normalisation (productsearch.search.
# SPARSE_NORMALISATION): alpha is the dense part's weight, the sparse part gets 1 - alpha.
# Unnormalised BM25 scores run to tens, so only an alpha near 1 can balance them.
TUNING_ALPHAS = {
    "l1": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "l2": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "none": (0.9, 0.95, 0.98, 0.99),
}


def dataset_key(name: str) -> str:
    """The dataset's short name in result files and PUBLISHED_NDCG10: "beir-scifact" -> "scifact"."""
    return name.lower().removeprefix("beir-").removeprefix("beir_")


def parse_args(argv=None):
    """The evaluation's options; argv None reads sys.argv."""
    p = cli.parser(__doc__, None, output_help="the results JSON (default results/eval-<dataset>.json)")
    p.add_argument("dataset", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    p.add_argument("--split", default="test")
    p.add_argument("--use-running-stack", type=Path, metavar="STACK_ENV",
                   help="the stack.env of a running stack (make up writes .local/stack.env)")
    p.add_argument("--keep-rows", action="store_true", help="with --use-running-stack: leave the dataset's rows in place")
    p.add_argument("--reference", type=float, help="published nDCG@10 to compare with (known for: %s)" % ", ".join(PUBLISHED_NDCG10))
    p.add_argument("--min-ndcg", type=float, help="exit 1 when semantic nDCG@10 is below this")
    p.add_argument("--min-hybrid-ndcg", type=float, help="exit 1 when hybrid nDCG@10 is below this")
    p.add_argument("--tune", action="store_true",
                   help="first sweep the hybrid weighting on --tune-split's queries (same corpus, same search path), "
                        "write results/hybrid-tuning.json, and evaluate hybrid with the weighting it chose")
    p.add_argument("--tune-split", default="train", help="the split --tune chooses on (never the evaluated one)")
    p.add_argument("--tuning-output", type=Path, help="the sweep's JSON (default results/hybrid-tuning.json)")
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--batch-size", type=int, help="EMBEDDING_BATCH_SIZE for emu (default: the environment's, else 64)")
    p.add_argument("--quantize", choices=["none", "int8"], help="EMBEDDING_QUANTIZE for emu and the queries")
    p.add_argument("--limit-docs", type=int, help="load only the first N documents (smoke runs; scores then mean little)")
    p.add_argument("--limit-queries", type=int, help="run only the first N judged queries (smoke runs)")
    p.add_argument("--sync-timeout", type=float, default=3600.0, help="seconds to wait for the index to hold every row")
    return p.parse_args(argv)


def main(argv=None) -> int:  # noqa: C901 (one branch per option and per failed gate)
    """Runs the evaluation (see the module docstring); returns 1 when a score is below its
    --min-ndcg / --min-hybrid-ndcg, else 0."""
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
    tuning_data = None
    if args.tune:
        if args.tune_split == args.split:
            raise SystemExit(f"--tune-split must differ from the evaluated split ({args.split})")
        tuning_data = beir.load(args.dataset, args.tune_split)
        if args.limit_queries:
            keep = list(tuning_data.qrels)[: args.limit_queries]
            tuning_data.qrels = {q: tuning_data.qrels[q] for q in keep}
            tuning_data.queries = {q: tuning_data.queries[q] for q in keep}

    alpha, normalisation = search_module.HYBRID_ALPHA, search_module.SPARSE_NORMALISATION
    tuning = None
    pipeline = Pipeline.running(args.use_running_stack) if args.use_running_stack else Pipeline.own(say)
    index_api = pipeline.env.get("PINECONE_INDEX_API", "vectors")
    if index_api == "documents" and args.tune:
        pipeline.close()
        raise SystemExit("--tune sweeps the legacy index's one-query weighting; a document index's fusion is "
                         "tuned by python -m benchmarks.document_index")
    # On a document index hybrid is two searches fused in the client, weighted by
    # productsearch.fusion (tuned by benchmarks.document_index), not by alpha here.
    hybrid_method = (f"score fusion, alpha {DOCUMENT_HYBRID_ALPHA}" if index_api == "documents"
                     else None)
    with pipeline:
        timings["stack_start_s"] = time.monotonic() - started
        own = pipeline.is_own
        category = "" if own else f"beir-{key}"[:100]
        sku_prefix = "" if own else f"beir-{key}:"
        rows = [{"name": d.title, "sku": f"{sku_prefix}{d.id}", "description": d.text, "price": 0, "category": category}
                for d in data.corpus]

        # Load, then fit the keyword statistics on the whole table before anything is
        # shipped, so every job carries the fitted average length. On our own stack the
        # triggers capture each insert and the apps start after the refit (pelican then
        # ships the captured changes as a burst, like a bulk import); on a running stack
        # the rows go in uncaptured and are captured after the refit, as a backfill does.
        t = time.monotonic()
        product_ids = pipeline.insert_products(rows, capture=own)
        timings["load_s"] = time.monotonic() - t
        doc_of = {pid: d.id for pid, d in zip(product_ids, data.corpus, strict=True)}
        t = time.monotonic()
        say(pipeline.refit_lexical())
        timings["refit_s"] = time.monotonic() - t
        say(f"loaded {len(product_ids)} products into Postgres in {timings['load_s']:.1f}s; syncing through the pipeline ...")

        t = time.monotonic()
        if own:
            pipeline.start_app("pelican", app_env)
            pipeline.start_app("emu", app_env)
            progress = lambda n: say(f"  indexed {n}/{len(product_ids)} ({time.monotonic() - t:.0f}s)")  # noqa: E731
            pipeline.wait_count(len(product_ids), args.sync_timeout, interval=1.0, progress=progress)
        else:
            pipeline.capture(product_ids)
        pipeline.wait_ids(product_ids, args.sync_timeout,
                          progress=lambda n: say(f"  indexed {n}/{len(product_ids)} ({time.monotonic() - t:.0f}s)"))
        timings["sync_s"] = time.monotonic() - t
        say(f"every row is in the index after {timings['sync_s']:.1f}s "
            f"({len(product_ids) / max(timings['sync_s'], 1e-9):.1f} docs/s through the pipeline)")

        # The frontend's search path: emu's settings, with the frontend's own query
        # embedding defaults beneath them (ONNX Runtime on a CPU, one thread).
        embedder = Embedder(EmbeddingSettings.for_queries(pipeline.app_env(app_env)))
        filters = SearchFilters(category=category) if category else None
        with ConnectionPool(pipeline.env["DATABASE_URL"], min_size=1, max_size=2, open=True,
                            kwargs={"row_factory": dict_row, "autocommit": True}) as pool:
            if tuning_data is not None:
                t = time.monotonic()
                tuning = tune(CachedEmbedder(embedder), pipeline.index, pool, tuning_data, args.tune_split, doc_of,
                              args.top_k, filters)
                timings["tune_s"] = time.monotonic() - t
                alpha, normalisation = tuning["chosen"]["alpha"], tuning["chosen"]["normalisation"]
            search = ProductSearch(embedder, pipeline.index, pool, alpha=alpha, normalisation=normalisation)
            runs: dict[str, dict[str, list[str]]] = {}
            refused: dict[str, str] = {}
            foreign = 0
            for mode in MODES:
                t = time.monotonic()
                runs[mode], mode_refused, mode_foreign = run_queries(search, data.queries, doc_of, args.top_k, filters, mode)
                timings[f"search_{mode}_s"] = time.monotonic() - t
                refused.update(mode_refused)
                foreign += mode_foreign
        if not own and not args.keep_rows:
            pipeline.conn.execute("DELETE FROM products WHERE id = ANY(%s)", (product_ids,))
            say(f"deleted the {len(product_ids)} dataset rows again (the pipeline removes their vectors)")
        device = str(embedder.device)
        model = embedder.description

    scores = {mode: evaluate(runs[mode], data.qrels, ndcg_k=10, recall_k=100) for mode in MODES}
    timings["total_s"] = time.monotonic() - started
    info = machine.describe(device)
    # The top-level figures are semantic search's: the ones the published reference is for.
    ndcg, recall = scores["semantic"]["ndcg@10"], scores["semantic"]["recall@100"]
    hybrid = scores["hybrid"]["ndcg@10"]
    result = {
        "dataset": data.name,
        "split": args.split,
        "documents": len(data.corpus),
        "queries": scores["semantic"]["queries"],
        "ndcg@10": round(ndcg, 5),
        "recall@100": round(recall, 5),
        "reference_ndcg@10": reference,
        "delta_vs_reference": round(ndcg - reference, 5) if reference is not None else None,
        "within_tolerance": (abs(ndcg - reference) <= TOLERANCE) if reference is not None else None,
        "min_ndcg": args.min_ndcg,
        "min_hybrid_ndcg": args.min_hybrid_ndcg,
        "modes": {mode: {"ndcg@10": round(scores[mode]["ndcg@10"], 5), "recall@100": round(scores[mode]["recall@100"], 5)}
                  for mode in MODES},
        "index_api": index_api,
        "hybrid_weighting": {"alpha": alpha, "sparse_normalisation": normalisation,
                             "chosen_on": f"{args.tune_split} split, this run" if tuning else "productsearch.search constants",
                             "matches_the_constants": (alpha, normalisation) == (search_module.HYBRID_ALPHA,
                                                                                search_module.SPARSE_NORMALISATION)},
        "refused_queries": refused,
        "results_outside_dataset": foreign,
        "model": model,
        "search_path": "productsearch.search.ProductSearch.search (top_k=%d%s, modes %s)" % (
            args.top_k, f", category={category}" if category else "", ", ".join(MODES)),
        "stack": "own (temporary)" if own else str(args.use_running_stack),
        "subset": subset,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "machine": info,
        "measured_at": cli.now_utc(),
        "per_query": scores["semantic"]["per_query"],
        "per_query_by_mode": {mode: scores[mode]["per_query"] for mode in ("hybrid", "keyword")},
    }
    cli.finish(result, args.output or cli.RESULTS / f"eval-{key}.json")
    if tuning is not None:
        cli.finish({**tuning, "dataset": data.name, "documents": len(data.corpus), "subset": subset, "model": model,
                    "machine": info, "measured_at": result["measured_at"]},
                   args.tuning_output or cli.RESULTS / "hybrid-tuning.json")

    say("")
    say(f"machine: {machine.one_line(info)}")
    say(f"model:   {model}")
    say(f"{data.name} ({args.split}): {len(data.corpus)} docs, {scores['semantic']['queries']} queries")
    if tuning is not None:
        say(f"hybrid weighting chosen on the {args.tune_split} split ({tuning['queries']} queries): "
            f"alpha {alpha}, sparse normalisation {normalisation} (train nDCG@10 {tuning['chosen']['ndcg@10']:.5f})")
        if not result["hybrid_weighting"]["matches_the_constants"]:
            say(f"  NOTE: productsearch.search has HYBRID_ALPHA {search_module.HYBRID_ALPHA}, SPARSE_NORMALISATION "
                f"{search_module.SPARSE_NORMALISATION!r}; set them to these values")
    ref_text = f"   published {reference:.5f}   delta {ndcg - reference:+.5f}" if reference is not None else (
        "   (a subset: not comparable with the published score)" if subset else "")
    say(f"  nDCG@10 hybrid   {hybrid:.5f}   ({hybrid_method or f'alpha {alpha}, {normalisation}'}; {index_api} API)")
    say(f"  nDCG@10 semantic {ndcg:.5f}{ref_text}")
    say(f"  nDCG@10 keyword  {scores['keyword']['ndcg@10']:.5f}")
    say(f"  recall@100       hybrid {scores['hybrid']['recall@100']:.5f}, semantic {recall:.5f}, "
        f"keyword {scores['keyword']['recall@100']:.5f}")
    if refused:
        say(f"  {len(refused)} queries refused by the search (scored 0)")
    say(f"  time: stack {timings['stack_start_s']:.0f}s, load {timings['load_s']:.0f}s, sync {timings['sync_s']:.0f}s, "
        + ", ".join(f"search {m} {timings[f'search_{m}_s']:.0f}s" for m in MODES)
        + (f", tuning {timings['tune_s']:.0f}s" if "tune_s" in timings else "") + f", total {timings['total_s']:.0f}s")
    failed = False
    if args.min_ndcg is not None and ndcg < args.min_ndcg:
        say(f"FAIL: semantic nDCG@10 {ndcg:.5f} is below the required {args.min_ndcg:.5f}")
        failed = True
    if args.min_hybrid_ndcg is not None and hybrid < args.min_hybrid_ndcg:
        say(f"FAIL: hybrid nDCG@10 {hybrid:.5f} is below the required {args.min_hybrid_ndcg:.5f}")
        failed = True
    return 1 if failed else 0


class CachedEmbedder:
    """The embedder, remembering each query's vector: the sweep asks for the same
    queries once per weighting, and the vector does not depend on it."""

    def __init__(self, embedder):
        self.embedder, self.cache = embedder, {}

    def embed(self, texts):
        missing = [t for t in texts if t not in self.cache]
        if missing:
            for text, vector in zip(missing, self.embedder.embed(missing), strict=True):
                self.cache[text] = vector
        return np.stack([self.cache[t] for t in texts])


def run_queries(search, queries: dict[str, str], doc_of: dict[int, str], top_k: int, filters, mode: str):
    """Every query through ProductSearch.search in `mode`: (runs, refused, foreign)."""
    runs: dict[str, list[str]] = {}
    refused: dict[str, str] = {}
    foreign = 0
    for qid, text in queries.items():
        try:
            results = search.search(text, top_k=top_k, filters=filters, mode=mode)
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
    return runs, refused, foreign


def tune(embedder, index, pool, data, split: str, doc_of, top_k: int, filters) -> dict:
    """Sweeps the hybrid weighting (alpha x sparse normalisation) on `data`'s queries
    (the train split) through ProductSearch.search and picks the best nDCG@10 (ties:
    the first in NORMALISATIONS, then TUNING_ALPHAS order)."""
    sweep = []
    for mode, alphas in (("semantic", [1.0]), ("keyword", [0.0])):
        search = ProductSearch(embedder, index, pool)
        runs, _, _ = run_queries(search, data.queries, doc_of, top_k, filters, mode)
        score = evaluate(runs, data.qrels, ndcg_k=10, recall_k=100)
        sweep.append({"mode": mode, "alpha": alphas[0], "normalisation": None, "ndcg@10": round(score["ndcg@10"], 5),
                      "recall@100": round(score["recall@100"], 5)})
        say(f"  tuning ({data.name} {len(data.queries)} queries): {mode:8} nDCG@10 {score['ndcg@10']:.5f}")
    for normalisation in NORMALISATIONS:
        for alpha in TUNING_ALPHAS[normalisation]:
            search = ProductSearch(embedder, index, pool, alpha=alpha, normalisation=normalisation)
            runs, _, _ = run_queries(search, data.queries, doc_of, top_k, filters, "hybrid")
            score = evaluate(runs, data.qrels, ndcg_k=10, recall_k=100)
            sweep.append({"mode": "hybrid", "alpha": alpha, "normalisation": normalisation,
                          "ndcg@10": round(score["ndcg@10"], 5), "recall@100": round(score["recall@100"], 5)})
            say(f"  tuning: hybrid alpha {alpha:<5} {normalisation:5} nDCG@10 {score['ndcg@10']:.5f}")
    hybrid = [row for row in sweep if row["mode"] == "hybrid"]
    best = max(hybrid, key=lambda row: row["ndcg@10"])  # max keeps the first of equals
    return {"split": split, "queries": len(data.queries), "sweep": sweep,
            "chosen": best, "criterion": "highest hybrid nDCG@10 on the tuning split"}


if __name__ == "__main__":
    sys.exit(main())
