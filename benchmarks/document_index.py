"""Full-text keyword search on a document index, measured on a BEIR dataset (SciFact).

Starts the local index server (or uses --server-url), creates a document index
through the official SDK with a ``text`` field (full-text search: English, stemming,
stop words) holding each document's title and text, a ``sku`` field (full-text search,
no stemming) holding its id as the pipeline's SKU does, and, unless --no-dense, an
``embedding`` dense field of the project's embedding model; upserts the corpus as
documents and runs each judged query of the split as one ``text`` search over ``text``
and ``sku``. Reports nDCG@10 and recall@100, and per query the requests and read
units the server's cost model counts (devstack/index_server/costs.py). With the dense
field it also reports semantic search and hybrid search as Pinecone documents it for
document indexes: the two searches run separately and fused by reciprocal rank fusion
(k=60) in the client, i.e. two requests per hybrid query. With --sparse each document
also carries the project's BM25 sparse vector (productsearch.lexical, fitted on the
corpus) in a ``sparse`` field, and keyword search by a ``sparse_vector`` clause is
reported beside full-text search.

    python -m benchmarks.document_index ../shared/data/beir-scifact --split test
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import beir, cli
from benchmarks.cli import say
from benchmarks.metrics import evaluate
from benchmarks.pipeline import REPO
from devstack.waiting import wait_until

INDEX_NAME = "beir-documents"
NAMESPACE = "corpus"
# Reciprocal rank fusion's constant, from the RRF paper that Pinecone's "Reciprocal rank
# fusion" page follows.
RRF_K = 60
TOP_K = 100  # recall@100 needs the first 100
UPSERT_BATCH = 100  # 384 floats and a SciFact abstract each: far under 2 MB a request
# The project's bm25s keyword figure on SciFact test through the pipeline
# (docs/benchmarks.md, "Search quality"), the one this measurement is compared with.
BM25S_KEYWORD_NDCG10 = 0.6856


def parse_args(argv=None):
    p = cli.parser(__doc__, "document-index.json")
    p.add_argument("dataset", type=Path, nargs="?", default=REPO.parent / "shared" / "data" / "beir-scifact",
                   help="a BEIR folder (default ../shared/data/beir-scifact)")
    p.add_argument("--split", default="test", help="the judged split to evaluate (default test)")
    p.add_argument("--no-dense", action="store_true",
                   help="skip the dense field (no embedding model runs; keyword search only)")
    p.add_argument("--sparse", action="store_true",
                   help="also index our BM25 sparse vectors and measure keyword search by them")
    p.add_argument("--server-url", help="a running local index server (default: start one on a free port)")
    p.add_argument("--api-key", default="local", help="the server's API key (default local)")
    p.add_argument("--limit-docs", type=int, default=0, help="index only the first N documents (a smoke run)")
    p.add_argument("--limit-queries", type=int, default=0, help="run only the first N judged queries")
    return p.parse_args(argv)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """The local index server in a subprocess on a free loopback port, with a
    throwaway data directory; stopped on exit."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.tmp = tempfile.TemporaryDirectory(prefix="docindex-bench-")
        self.url = ""
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> LocalServer:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(Path(self.tmp.name) / "server.log", "wb")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devstack.index_server", "--port", str(port), "--data-dir",
             str(Path(self.tmp.name) / "data"), "--api-key", self.api_key, "--log-level", "warning"],
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


def schema(dense_dimension: int | None, sparse: bool = False) -> dict:
    """The index's schema: ``text`` and ``sku`` full-text fields, ``embedding``
    (dotproduct, the apps' unit vectors) when *dense_dimension* is given, and
    ``sparse`` when *sparse*."""
    fields: dict = {
        "text": {"type": "string", "full_text_search": {"language": "en", "stemming": True, "stop_words": True}},
        "sku": {"type": "string", "full_text_search": {}},
    }
    if sparse:
        fields["sparse"] = {"type": "sparse_vector"}
    if dense_dimension:
        fields["embedding"] = {"type": "dense_vector", "dimension": dense_dimension, "metric": "dotproduct"}
    return {"fields": fields}


def rrf(rankings: list[list[str]], k: int = RRF_K) -> list[str]:
    """Reciprocal rank fusion: each id scores the sum of 1 / (k + rank) over the
    rankings it is in (rank from 1), best first; ties keep first-seen order."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda d: -scores[d])


def _stats(url: str) -> dict:
    return httpx.get(f"{url}/_stats", timeout=30).json()["operations"]


def main(argv=None) -> int:
    """Runs the measurement (see the module docstring) and writes the results JSON."""
    args = parse_args(argv)
    from pinecone import Pinecone

    data = beir.load(args.dataset, args.split)
    if args.limit_docs:
        data.corpus = data.corpus[: args.limit_docs]
    if args.limit_queries:
        keep = list(data.qrels)[: args.limit_queries]
        data.qrels = {q: data.qrels[q] for q in keep}
        data.queries = {q: data.queries[q] for q in keep}
    say(f"dataset {data.name}: {len(data.corpus)} documents, {len(data.queries)} judged {args.split} queries")
    texts = [f"{d.title} {d.text}".strip() for d in data.corpus]
    embedder = None
    if not args.no_dense:
        from productsearch.embedding import Embedder
        from productsearch.settings import EmbeddingSettings

        # emu's settings (its runtime and batch), the same model and vectors as its writes
        embedder = Embedder(EmbeddingSettings.from_env(dict(os.environ)))
        say(f"embedding {len(texts)} documents with {embedder.description}")
    server = LocalServer(args.api_key) if not args.server_url else None
    with server if server is not None else _Running(args.server_url):
        url = server.url if server is not None else args.server_url
        pc = Pinecone(api_key=args.api_key, host=url)
        if pc.indexes.exists(INDEX_NAME):
            pc.indexes.delete(INDEX_NAME)
        dimension = embedder.settings.dimension if embedder is not None else None
        index = pc.index(host=pc.indexes.create(name=INDEX_NAME, schema=schema(dimension, args.sparse)).host)
        lexical = _Lexical([f"{t} {d.id}" for t, d in zip(texts, data.corpus, strict=True)]) if args.sparse else None
        started = time.monotonic()
        for start in range(0, len(data.corpus), UPSERT_BATCH):
            batch = data.corpus[start:start + UPSERT_BATCH]
            docs = [{"_id": d.id, "text": texts[start + i], "sku": d.id} for i, d in enumerate(batch)]
            if lexical is not None:
                for doc, vector in zip(docs, lexical.documents[start:start + len(batch)], strict=True):
                    if vector:
                        doc["sparse"] = vector.to_pinecone()
            if embedder is not None:
                for doc, vector in zip(docs, embedder.embed(texts[start:start + len(batch)]), strict=True):
                    doc["embedding"] = vector.tolist()
            index.documents.upsert(namespace=NAMESPACE, documents=docs)
        index_s = time.monotonic() - started
        say(f"indexed {len(data.corpus)} documents in {index_s:.1f} s")

        httpx.delete(f"{url}/_stats", timeout=30)
        keyword_runs, dense_runs = {}, {}
        for qid, query in data.queries.items():
            found = index.documents.search(namespace=NAMESPACE, top_k=TOP_K,
                                           score_by=[{"type": "text", "fields": ["text", "sku"], "query": query}])
            keyword_runs[qid] = [m.id for m in found.matches]
        keyword_ops = _stats(url).get("documents_search", {})
        result: dict = {
            "dataset": data.name, "split": args.split, "documents": len(data.corpus), "queries": len(data.queries),
            "engine": "local index server (tantivy BM25), Documents API through pinecone SDK",
            "index_seconds": round(index_s, 1),
            "keyword": _mode(evaluate(keyword_runs, data.qrels), keyword_ops, len(data.queries)),
            "bm25s_keyword_ndcg@10": BM25S_KEYWORD_NDCG10,
        }
        if lexical is not None:
            sparse_runs = {}
            httpx.delete(f"{url}/_stats", timeout=30)
            for qid, query in data.queries.items():
                vector = lexical.query(query)
                found = index.documents.search(namespace=NAMESPACE, top_k=TOP_K, score_by=[
                    {"type": "sparse_vector", "field": "sparse", "sparse_values": vector.to_pinecone()}]) if vector else None
                sparse_runs[qid] = [m.id for m in found.matches] if found else []
            result["keyword_sparse"] = _mode(evaluate(sparse_runs, data.qrels), _stats(url).get("documents_search", {}),
                                             len(data.queries))
        if embedder is not None:
            vectors = embedder.embed(list(data.queries.values()))
            httpx.delete(f"{url}/_stats", timeout=30)
            for (qid, _query), vector in zip(data.queries.items(), vectors, strict=True):
                found = index.documents.search(namespace=NAMESPACE, top_k=TOP_K, score_by=[
                    {"type": "dense_vector", "field": "embedding", "values": vector.tolist()}])
                dense_runs[qid] = [m.id for m in found.matches]
            dense_ops = _stats(url).get("documents_search", {})
            result["semantic"] = _mode(evaluate(dense_runs, data.qrels), dense_ops, len(data.queries))
            hybrid = {q: rrf([keyword_runs[q], dense_runs[q]]) for q in data.queries}
            both = {k: keyword_ops.get(k, 0) + dense_ops.get(k, 0) for k in ("requests", "read_units")}
            result["hybrid_rrf"] = _mode(evaluate(hybrid, data.qrels), both, len(data.queries))
    cli.finish(result, args.output, report)
    return 0


class _Lexical:
    """Our keyword side as emu and the frontend compute it (productsearch.lexical): BM25
    document vectors under statistics fitted on *texts* (each document's text and SKU,
    as lexical_text makes them), and query vectors by the same statistics."""

    def __init__(self, texts: list[str]) -> None:
        from productsearch import lexical

        self.lexical = lexical
        self.n, average, self.frequencies = lexical.document_frequencies(texts)
        stats = lexical.CorpusStats(documents=self.n, average_length=average)
        self.documents = lexical.encode_documents(texts, [stats] * len(texts))

    def query(self, text: str):
        return self.lexical.encode_query(text, self.frequencies, self.n)


class _Running:
    """A server someone else runs: nothing to start or stop."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _mode(scores: dict, ops: dict, queries: int) -> dict:
    return {
        "ndcg@10": round(scores["ndcg@10"], 5),
        "recall@100": round(scores["recall@100"], 5),
        "requests_per_query": round(ops.get("requests", 0) / queries, 3) if queries else 0,
        "read_units_per_query": round(ops.get("read_units", 0) / queries, 4) if queries else 0,
    }


def report(result: dict) -> None:
    say(f"{result['dataset']} {result['split']}: {result['documents']} documents, {result['queries']} queries")
    for mode in ("keyword", "keyword_sparse", "semantic", "hybrid_rrf"):
        if mode in result:
            m = result[mode]
            say(f"  {mode:10s} nDCG@10 {m['ndcg@10']:.4f}  recall@100 {m['recall@100']:.4f}  "
                f"{m['requests_per_query']} requests and {m['read_units_per_query']} RU per query")
    say(f"  bm25s keyword nDCG@10 through the pipeline: {result['bm25s_keyword_ndcg@10']}")


if __name__ == "__main__":
    raise SystemExit(main())
