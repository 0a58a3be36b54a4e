"""Product search: the one search path used by the frontend's UI, its JSON endpoint
and the quality evaluation.

Three modes (MODES), each one index query:
- semantic: the query embedded with the same model and settings as emu (dense only);
- keyword: the query's BM25 sparse vector (productsearch.lexical) only, with the
  document frequencies of its terms read from Postgres in one indexed lookup;
- hybrid (the default): both in one query, weighted as Pinecone's convex combination,
  dense * alpha + sparse * (1 - alpha), the sparse part first scaled to unit L1 norm
  (SPARSE_NORMALISATION), with alpha = HYBRID_ALPHA.
On a document index (IndexSettings.api "documents") the keyword side is Pinecone's
full-text search of the product text and SKU, and hybrid is the pattern Pinecone
documents for document indexes: a dense and a text search, fused here
(productsearch.fusion).
Structured filters are pushed down to the index as a Pinecone metadata filter in
every mode; the matching rows are read from Postgres and returned in the index's rank
order with their scores (the weighted dot product: comparable within one mode only).

The index may lag behind the table, so the filters are applied once more to the
rows' current values: a result never breaks the request's own filter.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace
from decimal import InvalidOperation
from typing import Any

import numpy as np

from productsearch import fusion, lexical, products
from productsearch.documents import SparseVector, decimal_from_text, finite_price, normalise_category, product_id_of, vector_id

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000
MAX_TOP_K = 100

MODES = ("hybrid", "semantic", "keyword")
DEFAULT_MODE = "hybrid"
# The weight of the dense (semantic) part in a hybrid query; the sparse (BM25) part
# gets 1 - HYBRID_ALPHA. Chosen on SciFact's train split (qrels/train.tsv), never the
# test split, by `python -m benchmarks.evaluate <dataset> --tune` through this same search path; the
# sweep is recorded in results/hybrid-tuning.json and docs/benchmarks.md ("Search
# quality").
HYBRID_ALPHA = 0.6
# How the query's sparse vector is scaled before weighting: "l1" divides it by the sum
# of its idf weights, so its dot product with a document is an idf-weighted mean of
# the tf parts (0 .. k1 + 1) whatever the query's length, comparable with a cosine
# similarity; "l2" divides by its Euclidean norm; "none" leaves raw BM25. Chosen with
# HYBRID_ALPHA on the train split.
SPARSE_NORMALISATION = "l1"
NORMALISATIONS = ("l1", "l2", "none")


class InvalidSearch(ValueError):
    """The request is malformed; the message is safe to show to the user."""


@dataclass(frozen=True)
class SearchFilters:
    """Structured filters of a search. Prices are in the catalog's currency units,
    inclusive bounds; `category` is held as its normalised key
    (documents.normalise_category), so comparisons ignore case and surrounding space."""

    price_min: float | None = None
    price_max: float | None = None
    category: str | None = None

    def __post_init__(self) -> None:
        # Built directly (scripts, tests) as well as by parse: the key is normalised either way.
        if self.category is not None:
            object.__setattr__(self, "category", normalise_category(self.category) or None)

    @classmethod
    def parse(cls, raw: Any) -> SearchFilters:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise InvalidSearch("filters must be an object")
        unknown = set(raw) - {"price_min", "price_max", "category"}
        if unknown:
            raise InvalidSearch(f"unknown filter(s): {', '.join(sorted(unknown))}")
        price_min = _price(raw.get("price_min"), "price_min")
        price_max = _price(raw.get("price_max"), "price_max")
        if price_min is not None and price_max is not None and price_min > price_max:
            raise InvalidSearch(f"price_min ({price_min:g}) is greater than price_max ({price_max:g})")
        category = raw.get("category")
        if category is not None:
            if not isinstance(category, str) or len(category) > 100:
                raise InvalidSearch("category must be a string of at most 100 characters")
            if "\x00" in category or not _is_unicode_text(category):
                raise InvalidSearch("category is not valid Unicode text")
        return cls(price_min, price_max, category)

    def to_index_filter(self) -> dict[str, Any] | None:
        """The Pinecone metadata filter, or None for no filter. The category is matched
        on the `category_key` metadata field that documents.metadata writes."""
        clauses: list[dict[str, Any]] = []
        price: dict[str, float] = {}
        if self.price_min is not None:
            price["$gte"] = self.price_min
        if self.price_max is not None:
            price["$lte"] = self.price_max
        if price:
            clauses.append({"price": price})
        if self.category:
            clauses.append({"category_key": {"$eq": self.category}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def admits(self, price: Any, category: Any) -> bool:
        """Whether a row's current price (Decimal, float, str or None) and category
        satisfy these filters, with the same comparisons as to_index_filter. A price
        that is not a finite number satisfies no price bound."""
        if self.price_min is not None or self.price_max is not None:
            value = finite_price(price)
            if value is None:
                return False
            if self.price_min is not None and value < self.price_min:
                return False
            if self.price_max is not None and value > self.price_max:
                return False
        return not self.category or normalise_category(category) == self.category


def _price(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidSearch(f"{name} must be a number")
    try:
        number = float(decimal_from_text(value) if isinstance(value, str) else value)
    except (InvalidOperation, ValueError, OverflowError):  # ValueError: float() of a signalling NaN
        raise InvalidSearch(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise InvalidSearch(f"{name} must be a non-negative number, got {value!r}")
    return number


def _is_unicode_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON)
        return False
    return True


def validate_query(query: Any) -> str:
    if not isinstance(query, str):
        raise InvalidSearch("query must be a string")
    text = query.strip()
    if not text:
        raise InvalidSearch("query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidSearch(f"query is {len(text)} characters; the limit is {MAX_QUERY_CHARS}")
    if "\x00" in text:
        raise InvalidSearch("query contains a NUL character")
    if not _is_unicode_text(text):  # not text the model can read
        raise InvalidSearch("query is not valid Unicode text")
    return text


def validate_mode(mode: Any) -> str:
    """The search mode, one of MODES; InvalidSearch otherwise."""
    if not isinstance(mode, str) or mode not in MODES:
        shown = repr(mode[:40]) if isinstance(mode, str) else "null" if mode is None else f"a {type(mode).__name__}"
        raise InvalidSearch(f"mode must be one of {', '.join(MODES)}, got {shown}")
    return mode


def weighted_query(dense: np.ndarray | None, sparse: SparseVector, alpha: float, normalisation: str,
                   dimension: int) -> tuple[np.ndarray, SparseVector]:
    """The dense and sparse parts of one index query: dense * alpha and
    sparse / norm * (1 - alpha) (Pinecone's convex combination; docs: "Hybrid search",
    hybrid_score_norm). `dense` None (keyword mode) sends zeros of `dimension`: Pinecone
    needs a dense vector in every query of a dense index. An empty sparse vector stays
    empty (the query is then dense only)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within 0..1, got {alpha}")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    values = np.zeros(dimension, dtype=np.float32) if dense is None else np.asarray(dense, dtype=np.float32) * alpha
    if sparse:
        norm = {"l1": sum(sparse.values), "l2": math.sqrt(sum(v * v for v in sparse.values)), "none": 1.0}[normalisation]
        sparse = sparse.scaled((1.0 - alpha) / norm)
    return values, sparse


def validate_top_k(top_k: Any) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise InvalidSearch("top_k must be an integer")
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidSearch(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")
    return top_k


@dataclass(frozen=True)
class ScoreParts:
    """Why a result ranked where it did (search(..., explain=True)), for engineers.

    dense: the dot product of the query's and the product's unit vectors (cosine
    similarity, -1..1); keyword: the query's BM25 vector scaled by the search's sparse
    normalisation (SPARSE_NORMALISATION) dotted with the product's, 0 when they share no
    term (with "l1", an idf-weighted mean of the tf parts, 0..k1 + 1); fused: the score
    the index ranked by in the search's mode: in hybrid alpha * dense + (1 - alpha) *
    keyword, in semantic dense, in keyword the keyword part. dense and keyword are
    computed in every mode, from the product's record as the index holds it just after
    the query; None when the index no longer holds it."""

    dense: float | None
    keyword: float | None
    fused: float
    alpha: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchResult:
    """One result: the row's current values and the index's similarity score.
    `price` is None when the stored value is not a finite number (a row that predates
    the schema's check), so the result still serialises to valid JSON. `parts`: the
    score's components, only when the search was asked to explain."""

    id: int
    name: str
    sku: str
    description: str
    price: float | None
    category: str
    score: float
    parts: ScoreParts | None = None

    def to_json(self) -> dict[str, Any]:
        """The API's result object: every field but `parts`, which is added as
        "explain" only when present, so an ordinary answer is unchanged."""
        out = {"id": self.id, "name": self.name, "sku": self.sku, "description": self.description,
               "price": self.price, "category": self.category, "score": self.score}
        if self.parts is not None:
            out["explain"] = self.parts.to_json()
        return out


@dataclass(frozen=True)
class Ranked:
    """A search's results and how many matches the index ranked for it. `matched` counts
    the matches before any was dropped (a deleted row, a row now outside the filters),
    so whether a deeper page exists is read from the index's answer, not from what
    survived the drop."""

    results: list[SearchResult]
    matched: int


class ProductSearch:
    def __init__(self, embedder, index, pool, *, alpha: float = HYBRID_ALPHA,
                 normalisation: str = SPARSE_NORMALISATION):
        """pool: a psycopg_pool.ConnectionPool (or anything with .connection()).
        alpha and normalisation: the hybrid weighting (only the tuning script sets them)."""
        weighted_query(None, SparseVector((), ()), alpha, normalisation, 1)  # validates both
        self.embedder, self.index, self.pool = embedder, index, pool
        self.alpha, self.normalisation = alpha, normalisation

    @property
    def explains_in_search(self) -> bool:
        """Whether search_ranked(explain=True) takes the score parts from the search
        itself, at no extra cost: True on a document index, whose keyword score is
        Pinecone's BM25 that no record holds, so only its search can give it. False on
        a legacy index, where explaining recomputes the parts from a fetch of the
        records (explain), so a caller showing a page explains only that page's."""
        return not self.index.needs_sparse

    def query_sparse(self, text: str) -> SparseVector:
        """The query's BM25 vector, weighted by the statistics of the last fit."""
        ids = lexical.query_term_ids(text)
        if not ids:
            return SparseVector((), ())
        with self.pool.connection() as conn:
            documents, frequencies = lexical.query_statistics(conn, ids)
        return lexical.encode_query(text, frequencies, documents)

    def _query_vectors(self, text: str, mode: str) -> tuple[np.ndarray | None, SparseVector]:
        """The query's dense vector (None in keyword mode) and BM25 vector (empty in
        semantic mode). An embedder with submit() (the frontend's query batcher) embeds
        while this thread reads the keyword statistics from Postgres, so a hybrid
        search waits for the longer of the two, not their sum."""
        empty = SparseVector((), ())
        if mode == "keyword":
            return None, self.query_sparse(text)
        if mode == "semantic" or not hasattr(self.embedder, "submit"):
            dense = self.embedder.embed([text])[0]
            return dense, empty if mode == "semantic" else self.query_sparse(text)
        pending = self.embedder.submit([text])
        try:
            sparse = self.query_sparse(text)
        except BaseException:
            pending.discard()
            raise
        return pending.result()[0], sparse

    def search(self, query: str, top_k: int = 10, filters: SearchFilters | None = None,
               mode: str = DEFAULT_MODE, *, explain: bool = False) -> list[SearchResult]:
        """Up to top_k results, best first: search_ranked's results (see there)."""
        return self.search_ranked(query, top_k, filters, mode, explain=explain).results

    def search_ranked(self, query: str, top_k: int = 10, filters: SearchFilters | None = None,
                      mode: str = DEFAULT_MODE, *, explain: bool = False) -> Ranked:
        """Up to top_k results, best first, in `mode` (MODES). The index is asked for
        top_k matches under the filters; a match whose row has since been deleted, or
        whose row's current price or category no longer satisfies the filters (the
        index lags behind the table), is dropped, so fewer than top_k may come back.
        A keyword search for a text with no terms (only stop words or punctuation)
        finds nothing; a hybrid one is then semantic. In keyword mode only products
        that share a term with the query come back. explain: each result carries its
        score's components (ScoreParts); this costs a fetch of the results' records
        (Pinecone bills 1 read unit per 10) and, in keyword mode, the query's embedding.
        Raises InvalidSearch for a malformed query, top_k or mode."""
        text = validate_query(query)
        top_k = validate_top_k(top_k)
        mode = validate_mode(mode)
        filters = filters or SearchFilters()
        if not self.index.needs_sparse:
            return self._search_documents(text, top_k, filters, mode, explain)
        dense, sparse = self._query_vectors(text, mode)
        if mode == "keyword" and not sparse:
            return Ranked([], 0)
        alpha = {"semantic": 1.0, "keyword": 0.0, "hybrid": self.alpha}[mode]
        dimension = len(dense) if dense is not None else self.index.settings.dimension
        sparse_query = sparse
        vector, sparse = weighted_query(dense, sparse, alpha, self.normalisation, dimension)
        matches = self.index.query(vector, top_k=top_k, filter=filters.to_index_filter(), sparse_vector=sparse or None)
        if mode == "keyword":
            # The index fills top_k whatever the scores; with the dense part zero, a
            # product sharing no term with the query scores exactly 0 and is no match.
            matches = [m for m in matches if m.score > 0]
        results = self._rows_of(matches, filters)
        if explain:
            results = self.explain(text, results, mode, dense=dense, sparse=sparse_query if mode != "semantic" else None)
        return Ranked(results, len(matches))

    def _search_documents(self, text: str, top_k: int, filters: SearchFilters, mode: str, explain: bool) -> Ranked:
        """search_ranked on a document index: a dense search, a full-text search, or
        both fused (fusion.score_fusion over FUSION_DEPTH candidates each)."""
        index_filter = filters.to_index_filter()
        depth = top_k if mode != "hybrid" else max(top_k, fusion.FUSION_DEPTH)
        pending = self.embedder.submit([text]) if mode != "keyword" and hasattr(self.embedder, "submit") else None
        try:
            keyword = self.index.search_text(text, depth, index_filter) if mode != "semantic" else []
        except BaseException:
            if pending is not None:
                pending.discard()
            raise
        if mode == "keyword":
            dense_hits: list = []
        else:
            dense = pending.result()[0] if pending is not None else self.embedder.embed([text])[0]
            dense_hits = self.index.search_dense(np.asarray(dense, dtype=np.float32), depth, index_filter)
        alpha = {"semantic": 1.0, "keyword": 0.0, "hybrid": fusion.DOCUMENT_HYBRID_ALPHA}[mode]
        matches = fusion.score_fusion(dense_hits, keyword, alpha)[:top_k]
        results = self._rows_of(matches, filters)
        if explain:
            by_id = {m.id: m for m in matches}
            results = [replace(r, parts=ScoreParts(dense=by_id[vector_id(r.id)].dense,
                                                   keyword=by_id[vector_id(r.id)].keyword, fused=r.score, alpha=alpha))
                       for r in results]
        return Ranked(results, len(matches))

    def _rows_of(self, matches, filters: SearchFilters) -> list[SearchResult]:
        """The results of `matches` (ids and scores, best first): each row's current
        values from Postgres, in the matches' order; a match whose row is gone or now
        outside `filters` is dropped."""
        ids = [pid for pid in (product_id_of(m.id) for m in matches) if pid is not None]
        if not ids:
            return []
        with self.pool.connection() as conn:
            rows = {r["id"]: r for r in conn.execute(products.ROWS_BY_IDS, (ids,)).fetchall()}
        results = []
        for match in matches:
            pid = product_id_of(match.id)
            row = rows.get(pid) if pid is not None else None
            if row is None:  # deleted, and the deletion is still on its way to the index
                continue
            if not filters.admits(row["price"], row["category"]):
                continue
            price = finite_price(row["price"])
            if price is None:
                log.warning("product price is not a finite number; shown without a price",
                            extra={"product_id": row["id"], "price": str(row["price"])})
            results.append(SearchResult(
                id=row["id"], name=row["name"], sku=row["sku"], description=row["description"],
                price=price, category=row["category"], score=match.score,
            ))
        return results

    def explain(self, query: str, results: list[SearchResult], mode: str = DEFAULT_MODE, *,
                dense: np.ndarray | None = None, sparse: SparseVector | None = None) -> list[SearchResult]:
        """`results` of a search for `query` in `mode`, each with its ScoreParts: the
        dense and keyword parts recomputed from the records the index holds (one fetch:
        Pinecone bills 1 read unit per 10 records), the fused score as the index gave
        it. dense, sparse: the query's vectors when the caller has them (else embedded
        and looked up here). Raises InvalidSearch for a malformed query or mode."""
        text = validate_query(query)
        alpha = {"semantic": 1.0, "keyword": 0.0, "hybrid": self.alpha}[validate_mode(mode)]
        if not results:
            return []
        if dense is None:
            dense = self.embedder.embed([text])[0]
        if sparse is None:
            sparse = self.query_sparse(text)
        _, keyword_query = weighted_query(None, sparse, 0.0, self.normalisation, 1)
        records = self.index.fetch([vector_id(r.id) for r in results])
        explained = []
        for r in results:
            record = records.get(vector_id(r.id))
            dense_part = keyword_part = None
            if record is not None:
                values = np.asarray(getattr(record, "values", None) or [], dtype=np.float32)
                if len(values) == len(dense):
                    dense_part = float(np.dot(np.asarray(dense, dtype=np.float32), values))
                stored = getattr(record, "sparse_values", None)
                document = (SparseVector(tuple(stored.indices), tuple(stored.values)) if stored is not None
                            else SparseVector((), ()))
                keyword_part = keyword_query.dot(document) if keyword_query else 0.0
            explained.append(replace(r, parts=ScoreParts(dense=dense_part, keyword=keyword_part, fused=r.score,
                                                         alpha=alpha)))
        return explained
