"""Three index setups compared on a BEIR dataset (SciFact): the legacy dotproduct index
and two document indexes, each in semantic, keyword and hybrid mode.

Starts the local index server (devstack/index_server, a legacy index of the embedding's
dimension with the dotproduct metric) and, through the official SDK, writes the corpus
three ways:

- ``legacy``: the Vectors API, as the pipeline writes (a dense vector and our BM25
  sparse vector in one record); semantic, keyword and hybrid are one query each, hybrid
  the convex combination the apps send (productsearch.search.weighted_query, alpha
  HYBRID_ALPHA, chosen on the train split by benchmarks.evaluate --tune);
- ``documents_sparse``: a document index with an ``embedding`` dense field and our
  sparse vectors in a ``sparse`` field;
- ``documents_fulltext``: a document index with an ``embedding`` dense field and
  full-text search on ``text`` (title and abstract; English, stemming, stop words) and
  ``sku`` (the document id, unstemmed, as the pipeline's SKU).

A document index cannot rank by a dense and a keyword clause in one search (a vector
clause stands alone in ``score_by``), so hybrid there is Pinecone's documented pattern
(docs: "Reciprocal rank fusion"): the keyword and the dense search run separately and
their rankings are fused in the client. The fusion is tuned on the tuning split
(--tune-split, default train; never the reported split): reciprocal rank fusion's k,
a weight per ranking, and, as a contrast the docs do not recommend, a convex
combination of min-max-normalised scores. The reported split (--split, default test)
gets the setting that scored best on the tuning split.

Per setup it reports nDCG@10 and recall@100 per mode, requests and read units per query
(the server's cost model, devstack/index_server/costs.py) and write bytes and units per
record. Dense vectors of the corpus are cached under .local/cache/ (as
benchmarks.relevance_floor caches them).

    python -m benchmarks.document_index ../shared/data/beir-scifact
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import httpx

from benchmarks import beir, cli, machine
from benchmarks.cli import say
from benchmarks.metrics import evaluate
from benchmarks.pipeline import REPO
from devstack.waiting import wait_until
from productsearch.fusion import Scored, score_fusion

NAMESPACE = "corpus"
INDEXES = {"documents_sparse": "beir-documents-sparse", "documents_fulltext": "beir-documents-fulltext"}
SETUPS = ("legacy", "documents_sparse", "documents_fulltext")
# Reciprocal rank fusion's constant in the original paper, the one Pinecone's
# "Reciprocal rank fusion" page cites (k=60): the untuned baseline.
RRF_K = 60
# The tuning grids. k: from near-pure rank order (1) to flatter than the paper's 60;
# weights and alphas in steps of 0.05 over 0..1 (0 and 1 are one search alone).
RRF_KS = (1, 2, 5, 10, 20, 30, 45, 60, 80, 100, 150, 200, 300)
WEIGHTS = tuple(round(0.05 * i, 2) for i in range(1, 20))
ALPHAS = tuple(round(0.05 * i, 2) for i in range(21))
TOP_K = 100  # recall@100 needs the first 100, and fusion reads both searches' first 100
UPSERT_BATCH = 100  # 384 floats and a SciFact abstract each: far under 2 MB a request
# The project's bm25s keyword figure on SciFact test through the pipeline
# (docs/benchmarks.md, "Search quality"), the one this measurement is compared with.
BM25S_KEYWORD_NDCG10 = 0.6856


def parse_args(argv=None):
    p = cli.parser(__doc__, "document-index.json")
    p.add_argument("dataset", type=Path, nargs="?", default=REPO.parent / "shared" / "data" / "beir-scifact",
                   help="a BEIR folder (default ../shared/data/beir-scifact)")
    p.add_argument("--split", default="test", help="the judged split reported (default test)")
    p.add_argument("--tune-split", default="train", help="the judged split the fusion is tuned on (default train)")
    p.add_argument("--api-key", default="local", help="the local server's API key (default local)")
    p.add_argument("--limit-docs", type=int, default=0, help="index only the first N documents (a smoke run)")
    p.add_argument("--limit-queries", type=int, default=0, help="run only the first N judged queries of each split")
    args = p.parse_args(argv)
    if args.split == args.tune_split:
        p.error("--tune-split must differ from --split: the fusion is never tuned on the reported split")
    return args


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """The local index server in a subprocess on a free loopback port, with a
    throwaway data directory and a legacy index of *dimension* and *metric*; stopped
    on exit."""

    def __init__(self, api_key: str, dimension: int, metric: str = "dotproduct") -> None:
        self.api_key, self.dimension, self.metric = api_key, dimension, metric
        self.tmp = tempfile.TemporaryDirectory(prefix="docindex-bench-")
        self.url = ""
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(Path(self.tmp.name) / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devstack.index_server", "--port", str(port), "--data-dir",
             str(Path(self.tmp.name) / "data"), "--api-key", self.api_key, "--log-level", "warning",
             "--dimension", str(self.dimension), "--metric", self.metric],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ))
        log.close()
        wait_until(lambda: self._healthy(), timeout=60, what="the local index server")
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the index server exited: {(Path(self.tmp.name) / 'server.log').read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.tmp.cleanup()


def schema(setup: str, dimension: int) -> dict:
    """The document index's schema for *setup* (``documents_sparse`` or
    ``documents_fulltext``): an ``embedding`` dense field (dotproduct, the apps' unit
    vectors of *dimension*) and the setup's keyword fields. Raises ValueError for
    another setup."""
    fields: dict = {"embedding": {"type": "dense_vector", "dimension": dimension, "metric": "dotproduct"}}
    if setup == "documents_sparse":
        fields["sparse"] = {"type": "sparse_vector"}
    elif setup == "documents_fulltext":
        fields["text"] = {"type": "string",
                          "full_text_search": {"language": "en", "stemming": True, "stop_words": True}}
        fields["sku"] = {"type": "string", "full_text_search": {}}
    else:
        raise ValueError(f"no document schema for setup {setup!r}")
    return {"fields": fields}


Ranking = Sequence[Scored]  # a search's matches, best first


def rrf(rankings: Sequence[Sequence[str]], k: float = RRF_K, weights: Sequence[float] | None = None) -> list[str]:
    """Reciprocal rank fusion: each id scores the sum of weight / (k + rank) over the
    rankings it is in (rank from 1; weight 1 each unless *weights*, one per ranking),
    best first; ties keep first-seen order. Raises ValueError when k is not positive or
    the weights do not match the rankings."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + weight / (k + rank)
    return sorted(scores, key=lambda d: -scores[d])


def fusions() -> dict[str, list[tuple[dict, Callable[[Ranking, Ranking], list[str]]]]]:
    """{method: [(its parameters, fuse(dense, keyword) -> ids best first)]}: RRF over the
    k grid, RRF with a weight w on the dense ranking and 1 - w on the keyword one over
    the k and weight grids, and the apps' score fusion (productsearch.fusion) over the
    alpha grid."""
    ids = lambda ranking: [m.id for m in ranking]
    return {
        "rrf": [({"k": k}, lambda d, kw, k=k: rrf([ids(kw), ids(d)], k)) for k in RRF_KS],
        "weighted_rrf": [({"k": k, "dense_weight": w},
                          lambda d, kw, k=k, w=w: rrf([ids(kw), ids(d)], k, [1.0 - w, w]))
                         for k in RRF_KS for w in WEIGHTS],
        "score_fusion": [({"alpha": a}, lambda d, kw, a=a: ids(score_fusion(d, kw, a))) for a in ALPHAS],
    }


def tune(dense: dict[str, Ranking], keyword: dict[str, Ranking], qrels: dict) -> dict[str, dict]:
    """{method: {"params", "ndcg@10"}}: per fusion method, the parameters with the
    highest mean nDCG@10 over *qrels*' queries (the first in grid order on a tie)."""
    best: dict[str, dict] = {}
    for method, candidates in fusions().items():
        for params, fuse in candidates:
            score = evaluate({q: fuse(dense.get(q, []), keyword.get(q, [])) for q in qrels}, qrels)["ndcg@10"]
            if method not in best or score > best[method]["ndcg@10"]:
                best[method] = {"params": params, "ndcg@10": round(score, 5)}
    return best


def fuse_with(method: str, params: dict, dense: Ranking, keyword: Ranking) -> list[str]:
    """The ranking of *method* (a key of :func:`fusions`) with *params* (one of its
    grid points). Raises KeyError for an unknown method or parameters off the grid."""
    for candidate, fuse in fusions()[method]:
        if candidate == params:
            return fuse(dense, keyword)
    raise KeyError(f"{method} has no grid point {params}")


def _stats(url: str, operation: str) -> dict:
    return httpx.get(f"{url}/_stats", timeout=30).json()["operations"].get(operation, {})


def _reset(url: str) -> None:
    httpx.delete(f"{url}/_stats", timeout=30).raise_for_status()


def _mode(runs: dict, qrels: dict, ops: dict, queries: int) -> dict:
    scores = evaluate(runs, qrels)
    return {
        "ndcg@10": round(scores["ndcg@10"], 5),
        "recall@100": round(scores["recall@100"], 5),
        "requests_per_query": round(ops.get("requests", 0) / queries, 3) if queries else 0,
        "read_units_per_query": round(ops.get("read_units", 0) / queries, 4) if queries else 0,
    }


def _writes(ops: dict) -> dict:
    records = ops.get("records", 0)
    return {"records": records,
            "write_bytes_per_record": round(ops.get("record_bytes", 0) / records, 1) if records else 0,
            "write_units_per_record": round(ops.get("write_units", 0) / records, 3) if records else 0}


def main(argv=None) -> int:
    """Runs the measurement (see the module docstring) and writes the results JSON."""
    args = parse_args(argv)
    from pinecone import Pinecone
    from productsearch import lexical
    from productsearch.documents import indexed_text, lexical_text
    from productsearch.embedding import Embedder
    from productsearch.search import HYBRID_ALPHA, SPARSE_NORMALISATION, weighted_query
    from productsearch.settings import EmbeddingSettings

    from benchmarks.relevance_floor import TEMPLATE, cli_key, embed_corpus

    splits = {name: beir.load(args.dataset, name) for name in (args.tune_split, args.split)}
    corpus = splits[args.split].corpus[: args.limit_docs or None]
    for data in splits.values():
        if args.limit_queries:
            keep = list(data.qrels)[: args.limit_queries]
            data.qrels = {q: data.qrels[q] for q in keep}
            data.queries = {q: data.queries[q] for q in keep}
        say(f"{data.name}: {len(corpus)} documents; {len(data.queries)} judged queries to use")
    # The pipeline's texts for a product: benchmarks.evaluate's rows, the dense text by
    # the indexed-text template, the sparse vector's text with the SKU.
    rows = [{"name": d.title, "description": d.text, "sku": d.id, "price": 0, "category": ""} for d in corpus]
    full_texts = [f"{d.title} {d.text}".strip() for d in corpus]
    embedder = Embedder(EmbeddingSettings.from_env(dict(os.environ)))
    dense_docs = embed_corpus(embedder, [indexed_text(r, TEMPLATE) for r in rows], cli_key(splits[args.split].name))
    lexical_texts = [lexical_text(r, TEMPLATE) for r in rows]
    n, average, frequencies = lexical.document_frequencies(lexical_texts)
    sparse_docs = lexical.encode_documents(lexical_texts, [lexical.CorpusStats(documents=n, average_length=average)]
                                           * len(rows))
    queries = {split: {"ids": list(data.queries), "dense": embedder.embed([data.queries[q].strip() for q in data.queries]),
                       "sparse": [lexical.encode_query(data.queries[q].strip(), frequencies, n) for q in data.queries],
                       "text": [data.queries[q] for q in data.queries]}
               for split, data in splits.items()}
    dimension = embedder.settings.dimension
    qrels = {split: data.qrels for split, data in splits.items()}
    test_queries = len(queries[args.split]["ids"])
    result: dict = {
        "dataset": splits[args.split].name, "split": args.split, "tune_split": args.tune_split,
        "documents": len(corpus), "queries": test_queries, "tune_queries": len(queries[args.tune_split]["ids"]),
        "engine": "the local index server (devstack/index_server; full text on tantivy) through the pinecone SDK, "
                  "not through emu",
        "model": embedder.description, "bm25s_keyword_ndcg@10_pipeline": BM25S_KEYWORD_NDCG10, "setups": {},
    }
    with LocalServer(args.api_key, dimension) as server:
        url = server.url
        pc = Pinecone(api_key=args.api_key, host=url)

        # legacy: one record per document, dense and sparse, upserted as the pipeline does
        legacy = pc.Index(host=url)
        _reset(url)
        for start in range(0, len(corpus), UPSERT_BATCH):
            vectors = []
            for i in range(start, min(start + UPSERT_BATCH, len(corpus))):
                item = {"id": corpus[i].id, "values": dense_docs[i].tolist()}
                if sparse_docs[i]:
                    item["sparse_values"] = sparse_docs[i].to_pinecone()
                vectors.append(item)
            legacy.upsert(vectors=vectors, namespace=NAMESPACE)
        setup: dict = {"api": "Vectors API (legacy), dotproduct", **_writes(_stats(url, "upsert")),
                       "hybrid_method": f"convex combination in one query, alpha {HYBRID_ALPHA} "
                                        f"({SPARSE_NORMALISATION}), chosen on train by benchmarks.evaluate --tune"}
        q = queries[args.split]
        alphas = {"semantic": 1.0, "keyword": 0.0, "hybrid": HYBRID_ALPHA}
        for mode, alpha in alphas.items():
            _reset(url)
            runs = {}
            for qid, dense, sparse in zip(q["ids"], q["dense"], q["sparse"], strict=True):
                values, scaled = weighted_query(None if mode == "keyword" else dense,
                                                lexical.SparseVector((), ()) if mode == "semantic" else sparse,
                                                alpha, SPARSE_NORMALISATION, dimension)
                if mode == "keyword" and not scaled:
                    runs[qid] = []  # no known term: the apps send no query either
                    continue
                found = legacy.query(vector=values.tolist(), sparse_vector=scaled.to_pinecone() if scaled else None,
                                     top_k=TOP_K, namespace=NAMESPACE)
                runs[qid] = [m.id for m in found.matches]
            setup[mode] = _mode(runs, qrels[args.split], _stats(url, "query"), test_queries)
        result["setups"]["legacy"] = setup
        say(f"legacy: hybrid nDCG@10 {setup['hybrid']['ndcg@10']}")

        for name, index_name in INDEXES.items():
            index = pc.index(host=pc.indexes.create(name=index_name, schema=schema(name, dimension)).host)
            _reset(url)
            for start in range(0, len(corpus), UPSERT_BATCH):
                docs = []
                for i in range(start, min(start + UPSERT_BATCH, len(corpus))):
                    doc = {"_id": corpus[i].id, "embedding": dense_docs[i].tolist()}
                    if name == "documents_sparse":
                        if sparse_docs[i]:
                            doc["sparse"] = sparse_docs[i].to_pinecone()
                    else:
                        doc["text"], doc["sku"] = full_texts[i], corpus[i].id
                    docs.append(doc)
                index.documents.upsert(namespace=NAMESPACE, documents=docs)
            setup = {"api": "Documents API (public preview)", **_writes(_stats(url, "documents_upsert"))}
            searched: dict[str, dict[str, dict]] = {}
            for split, q in queries.items():
                searched[split] = {"dense": {}, "keyword": {}}
                ops = {}
                for mode in ("dense", "keyword"):
                    _reset(url)
                    for i, qid in enumerate(q["ids"]):
                        if mode == "dense":
                            clause = {"type": "dense_vector", "field": "embedding", "values": q["dense"][i].tolist()}
                        elif name == "documents_sparse":
                            if not q["sparse"][i]:
                                searched[split][mode][qid] = []
                                continue
                            clause = {"type": "sparse_vector", "field": "sparse",
                                      "sparse_values": q["sparse"][i].to_pinecone()}
                        else:
                            clause = {"type": "text", "fields": ["text", "sku"], "query": q["text"][i]}
                        found = index.documents.search(namespace=NAMESPACE, top_k=TOP_K, score_by=[clause])
                        searched[split][mode][qid] = list(found.matches)
                    ops[mode] = _stats(url, "documents_search")
                if split != args.split:
                    continue
                ids = lambda runs: {k: [m.id for m in v] for k, v in runs.items()}
                setup["semantic"] = _mode(ids(searched[split]["dense"]), qrels[split], ops["dense"], test_queries)
                setup["keyword"] = _mode(ids(searched[split]["keyword"]), qrels[split], ops["keyword"], test_queries)
                both = {k: ops["dense"].get(k, 0) + ops["keyword"].get(k, 0) for k in ("requests", "read_units")}
            tuned = tune(searched[args.tune_split]["dense"], searched[args.tune_split]["keyword"], qrels[args.tune_split])
            test_dense, test_keyword = searched[args.split]["dense"], searched[args.split]["keyword"]
            reported = {}
            for method, best in tuned.items():
                runs = {qid: fuse_with(method, best["params"], test_dense.get(qid, []), test_keyword.get(qid, []))
                        for qid in qrels[args.split]}
                reported[method] = {"params": best["params"], f"{args.tune_split}_ndcg@10": best["ndcg@10"],
                                    **_mode(runs, qrels[args.split], both, test_queries)}
            untuned = {qid: rrf([[m.id for m in test_keyword.get(qid, [])], [m.id for m in test_dense.get(qid, [])]])
                       for qid in qrels[args.split]}
            reported["rrf_k60"] = {"params": {"k": RRF_K}, **_mode(untuned, qrels[args.split], both, test_queries)}
            chosen = max(tuned, key=lambda m: tuned[m]["ndcg@10"])
            setup["hybrid"] = {"fusion": chosen, **reported[chosen]}
            setup["fusions"] = reported
            result["setups"][name] = setup
            say(f"{name}: hybrid ({chosen}) nDCG@10 {setup['hybrid']['ndcg@10']}")
    result["machine"] = machine.describe(str(embedder.device))
    cli.finish(result, args.output, report)
    return 0


def report(result: dict) -> None:
    say(f"{result['dataset']} {result['split']} (fusion tuned on {result['tune_split']}): "
        f"{result['documents']} documents, {result['queries']} queries")
    for name, setup in result["setups"].items():
        say(f"  {name}: {setup['write_bytes_per_record']} bytes and {setup['write_units_per_record']} WU per record")
        for mode in ("semantic", "keyword", "hybrid"):
            m = setup[mode]
            say(f"    {mode:8s} nDCG@10 {m['ndcg@10']:.4f}  recall@100 {m['recall@100']:.4f}  "
                f"{m['requests_per_query']} requests and {m['read_units_per_query']} RU per query"
                + (f"  ({m['fusion']} {m['params']})" if "fusion" in m else ""))


if __name__ == "__main__":
    raise SystemExit(main())
