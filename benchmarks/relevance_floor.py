"""The relevance floor of the search page, per search mode: the score below which the
page says there is no close match.

    .venv/bin/python -m benchmarks.relevance_floor ../shared/data/beir-scifact

Each mode scores a product as the index does for productsearch.search.ProductSearch:
semantic is the dot product of unit vectors (the model and settings emu uses), keyword
the query's BM25 vector scaled to unit L1 norm dotted with the product's
(productsearch.lexical, statistics fitted on the corpus as `pelican refit-lexical`
fits them), hybrid HYBRID_ALPHA * semantic + (1 - HYBRID_ALPHA) * keyword. The scores
are computed here rather than through the pipeline and the index server, which compute
the same dot products: embedding the corpus is the whole cost, and the vectors are
cached under .local/cache/ for the next run.

The floor is a cut-off on a query's top score, chosen where Youden's J (true-positive
rate minus false-positive rate) is highest, at the midpoint between two neighbouring
observed scores. Two labellings are measured:

- catalog (the floors the page uses): the sample catalog's products, with queries
  that have a close match by construction (a product's name, its category word, two
  neighbouring words of its description, its SKU; a fixed sample) against queries
  that have none: the BEIR dataset's train-split queries (biomedical claims, which no
  product of the catalog answers). Never the test split.
- within the dataset: its own corpus and train queries, "close match" meaning the
  top result is judged relevant. Recorded for comparison: scores on long abstracts
  run higher than on short product texts, so these floors do not transfer.
"""

from __future__ import annotations

import csv
import hashlib
import random
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse as sp

from benchmarks import beir, cli, machine
from benchmarks.cli import say
from benchmarks.pipeline import REPO
from productsearch import lexical
from productsearch.documents import SparseVector, indexed_text, lexical_text
from productsearch.embedding import Embedder
from productsearch.search import HYBRID_ALPHA, MODES, SPARSE_NORMALISATION
from productsearch.settings import EmbeddingSettings

CACHE = REPO / ".local" / "cache" / "relevance-floor"
TEMPLATE = "{name} {description}"  # benchmarks.evaluate's products: (title + " " + text).strip()


def parse_args(argv=None):
    p = cli.parser(__doc__, "relevance-floor.json")
    p.add_argument("dataset", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    p.add_argument("--split", default="train", help="the split the floor is chosen on (default train; never test)")
    p.add_argument("--catalog", type=Path, default=REPO / "apps" / "pelican" / "catalog" / "products.csv",
                   help="the product catalog CSV (name, sku, description, ...; default the sample catalog)")
    p.add_argument("--sample", type=int, default=300, help="products the catalog's close-match queries come from")
    return p.parse_args(argv)


def embed_corpus(embedder: Embedder, texts: list[str], key: str) -> np.ndarray:
    """The corpus's dense vectors, from the cache when the same model, settings and texts
    were embedded before."""
    digest = hashlib.sha256("\n".join([embedder.description, *texts]).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    path = CACHE / f"{key}-{digest}.npy"
    if path.is_file():
        say(f"dense vectors from the cache ({path.relative_to(REPO)})")
        return np.load(path)
    started = time.monotonic()
    vectors = embedder.embed(texts)
    say(f"embedded {len(texts)} documents in {time.monotonic() - started:.0f}s")
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def sparse_matrix(vectors: list[SparseVector], columns: dict[int, int]) -> sp.csr_matrix:
    """Rows of sparse vectors over the term ids in `columns` (term id -> column); ids not
    in `columns` are left out (they meet no other side's term)."""
    data, indices, indptr = [], [], [0]
    for vector in vectors:
        for term, value in zip(vector.indices, vector.values):
            column = columns.get(term)
            if column is not None:
                indices.append(column)
                data.append(value)
        indptr.append(len(indices))
    return sp.csr_matrix((data, indices, indptr), shape=(len(vectors), len(columns)), dtype=np.float64)


def mode_scores(data, embedder: Embedder) -> tuple[dict[str, np.ndarray], list[str]]:
    """{mode: (queries, documents) scores as the index computes them} and the query ids."""
    rows = [{"name": d.title, "description": d.text, "sku": d.id, "price": 0, "category": ""} for d in data.corpus]
    qids = list(data.queries)
    texts = [data.queries[q].strip() for q in qids]

    dense_docs = embed_corpus(embedder, [indexed_text(r, TEMPLATE) for r in rows], cli_key(data.name))
    dense = embedder.embed(texts) @ dense_docs.T

    documents, average, frequencies = lexical.document_frequencies(lexical_text(r, TEMPLATE) for r in rows)
    stats = lexical.CorpusStats(documents, average)
    doc_vectors = lexical.encode_documents([lexical_text(r, TEMPLATE) for r in rows], [stats] * len(rows))
    query_vectors = [lexical.encode_query(t, frequencies, documents) for t in texts]
    # productsearch.search.weighted_query's "l1": the query scaled to unit L1 norm.
    assert SPARSE_NORMALISATION == "l1", "this script scores the l1 normalisation only"
    query_vectors = [v.scaled(1.0 / sum(v.values)) if v else v for v in query_vectors]
    columns = {term: i for i, term in enumerate(sorted({t for v in query_vectors for t in v.indices}))}
    keyword = (sparse_matrix(query_vectors, columns) @ sparse_matrix(doc_vectors, columns).T).toarray()

    scores = {"semantic": dense, "keyword": keyword, "hybrid": HYBRID_ALPHA * dense + (1 - HYBRID_ALPHA) * keyword}
    assert set(scores) == set(MODES)
    return scores, qids


def cli_key(name: str) -> str:
    return name.lower().removeprefix("beir-").removeprefix("beir_")


def choose_floor(top_scores: np.ndarray, close: np.ndarray) -> dict:
    """The cut-off with the highest Youden's J, tried at the midpoints between
    neighbouring observed top scores (ties: the lowest), with its rates, and the ROC
    AUC. `close`: bool per query, whether it has a close match."""
    positives, negatives = int(close.sum()), int((~close).sum())
    values = np.unique(top_scores)
    cuts = (values[:-1] + values[1:]) / 2 if len(values) > 1 else values
    best = None
    for floor in cuts:
        kept = top_scores >= floor
        tpr = (kept & close).sum() / max(positives, 1)
        fpr = (kept & ~close).sum() / max(negatives, 1)
        j = tpr - fpr
        if best is None or j > best["youden_j"] + 1e-12:
            best = {"floor": float(floor), "youden_j": float(j), "true_positive_rate": float(tpr),
                    "false_positive_rate": float(fpr), "no_close_match_share": float((~kept).mean())}
    # AUC: the chance a query with a close match outscores one without (ties count half).
    pos, neg = top_scores[close], top_scores[~close]
    auc = float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                / max(len(pos) * len(neg), 1))
    return {**best, "roc_auc": auc, "queries_with": positives, "queries_without": negatives}


def catalog_queries(rows: list[dict], sample: int, seed: int = 0) -> list[str]:
    """Queries with a close match in `rows` by construction, from `sample` products
    drawn with a fixed seed: each one's name, category word (the last word of the
    sample catalog's names), two neighbouring words of its description, its SKU."""
    rng = random.Random(seed)
    queries: list[str] = []
    for row in rng.sample(rows, min(sample, len(rows))):
        words = [w.strip(".,") for w in row["description"].split()]
        start = rng.randrange(max(len(words) - 1, 1))
        queries += [row["name"], row["name"].split()[-1].lower(), " ".join(words[start:start + 2]), row["sku"]]
    return list(dict.fromkeys(q for q in queries if q.strip()))


def floor_of(top_scores: np.ndarray, close: np.ndarray) -> dict:
    """choose_floor, with the quartiles of the top scores."""
    return {**choose_floor(top_scores, close),
            "top_score_quartiles": [round(float(x), 4) for x in np.percentile(top_scores, [25, 50, 75])]}


def report(title: str, floors: dict, queries: int) -> None:
    say(title)
    for mode, f in floors.items():
        say(f"  {mode:8} floor {f['floor']:.4f}  J {f['youden_j']:.3f}  AUC {f['roc_auc']:.3f}  "
            f"no close match for {f['no_close_match_share']:.0%} of {queries} queries")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.split == "test":
        raise SystemExit("the floor is chosen on a split the evaluation does not report: not test")
    started = time.monotonic()
    data = beir.load(args.dataset, args.split)
    say(f"dataset {data.name}: {len(data.corpus)} documents, {len(data.queries)} judged {args.split} queries")
    embedder = Embedder(EmbeddingSettings.from_env({}))

    scores, qids = mode_scores(data, embedder)
    doc_ids = [d.id for d in data.corpus]
    within = {}
    for mode in MODES:
        top = scores[mode].argmax(axis=1)
        relevant = np.array([data.qrels[q].get(doc_ids[t], 0) > 0 for q, t in zip(qids, top, strict=True)])
        within[mode] = floor_of(scores[mode].max(axis=1), relevant)
    report(f"within {data.name} (top result judged relevant):", within, len(qids))

    with args.catalog.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    positives = catalog_queries(rows, args.sample)
    negatives = [data.queries[q] for q in qids]
    catalog = beir.Dataset(name="catalog", corpus=[beir.Document(id=r["sku"], title=r["name"], text=r["description"])
                                                   for r in rows],
                           queries={str(i): q for i, q in enumerate(positives + negatives)}, qrels={})
    catalog_scores, _ = mode_scores(catalog, embedder)
    close = np.array([True] * len(positives) + [False] * len(negatives))
    chosen = {mode: floor_of(catalog_scores[mode].max(axis=1), close) for mode in MODES}
    report(f"catalog ({len(rows)} products; {len(positives)} queries with a close match, "
           f"{len(negatives)} {data.name} {args.split} queries without):", chosen, len(close))

    result = {
        "floors": {m: round(chosen[m]["floor"], 4) for m in MODES},
        "split": args.split,
        "chosen_on": {"catalog": str(args.catalog.relative_to(REPO)) if args.catalog.is_relative_to(REPO)
                      else str(args.catalog), "products": len(rows), "queries_with_a_close_match": len(positives),
                      "queries_without": len(negatives), "queries_without_from": f"{data.name} {args.split}",
                      "sample": args.sample, "examples_with": positives[:8], "examples_without": negatives[:3]},
        "catalog": chosen,
        "within_dataset": {"dataset": data.name, "documents": len(data.corpus), "queries": len(qids),
                           "floors": {m: round(within[m]["floor"], 4) for m in MODES}, "by_mode": within,
                           "note": "not used: long abstracts score higher than short product texts"},
        "criterion": "highest Youden's J of 'top score >= floor' against 'the query has a close match', "
                     "at the midpoint between neighbouring observed top scores",
        "scoring": f"as the index scores productsearch.search queries: hybrid alpha {HYBRID_ALPHA}, "
                   f"sparse normalisation {SPARSE_NORMALISATION}",
        "model": embedder.description,
        "machine": machine.describe(str(embedder.device)),
        "took_s": round(time.monotonic() - started, 1),
        "measured_at": cli.now_utc(),
    }
    cli.finish(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
