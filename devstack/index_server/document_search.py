"""Search and filters of document indexes (:mod:`~devstack.index_server.documents`).

Search ranks by ``score_by``: one ``dense_vector`` or ``sparse_vector`` clause, or any
number of ``text`` and ``query_string`` clauses whose BM25 scores add up
(:mod:`~devstack.index_server.fulltext`, on tantivy). Filters use the metadata filter
language of :mod:`~devstack.index_server.filters` on undeclared fields and the
text-match operators (``$match_phrase``, ``$match_all``, ``$match_any``) on full-text
fields. Sources: Pinecone docs, Documents API, Full-text search (and its query-syntax
and text-processing pages), Operation limits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import orjson

from devstack.index_server import costs
from devstack.index_server.document_store import DocumentIndex, Namespace
from devstack.index_server.filters import FilterError, compile_filter
from devstack.index_server.fulltext import QueryError
from devstack.index_server.limits import MAX_TOP_K
from devstack.index_server.protocol import bad_request, check_array, parse_sparse, parse_values
from devstack.index_server.sparse import SparseVector

# The SDK's documents requests allow 100 clauses per score_by.
MAX_SCORE_BY_CLAUSES = 100
TEXT_MATCH_OPS = ("$match_phrase", "$match_all", "$match_any")
TEXT_KINDS = ("text", "query_string")


def document_filter(index: DocumentIndex, ns: Namespace, raw: Any) -> Callable[[str], bool]:
    """The predicate on ``_id`` that the filter *raw* means in namespace *ns*."""
    if not isinstance(raw, dict) or not raw:
        raise bad_request("filter must be a non-empty object")
    parts: list[Callable[[str], bool]] = []
    for key, spec in raw.items():
        if key in ("$and", "$or"):
            if not isinstance(spec, list) or not spec:
                raise bad_request(f"{key} must be a non-empty array of filters")
            subs = [document_filter(index, ns, sub) for sub in spec]
            parts.append((lambda s: lambda i: all(f(i) for f in s))(subs) if key == "$and"
                         else (lambda s: lambda i: any(f(i) for f in s))(subs))
        elif key in index.fields:
            parts.append(_text_match(index, ns, key, spec))
        else:
            if isinstance(spec, dict) and set(spec) & set(TEXT_MATCH_OPS):
                raise bad_request(f"Text-match operators apply only to full_text_search fields; "
                                  f"'{key}' is metadata")
            try:
                node = compile_filter({key: spec})
            except FilterError as exc:
                raise bad_request(str(exc)) from None
            assert node is not None
            parts.append((lambda n: lambda i: n.matches(_metadata(index, ns.docs[i])))(node))
    return lambda i: all(p(i) for p in parts)


def _text_match(index: DocumentIndex, ns: Namespace, key: str, spec: Any) -> Callable[[str], bool]:
    if index.fields[key]["type"] != "string":
        raise bad_request(f"Field '{key}' is a {index.fields[key]['type']} field and cannot be filtered on")
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in TEXT_MATCH_OPS:
        raise bad_request(f"Field '{key}' is a full_text_search field: filter it with one of "
                          f"{list(TEXT_MATCH_OPS)}, not comparison operators")
    op, text = next(iter(spec.items()))
    if not isinstance(text, str) or not text.strip():
        raise bad_request(f"{op} on field '{key}' needs a non-empty string")
    if ns.text is None:  # an empty namespace: nothing matches
        return lambda _i: False
    matched = ns.text.matching(ns.text.match_query(key, op, text))
    return matched.__contains__


def search(index: DocumentIndex, ns_name: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
    """The ``top_k`` best documents of namespace *ns_name* by ``score_by``, among those
    ``filter`` keeps, as ``[{"_id", "_score", fields of include_fields}]``, with the
    read units the query costs (unrounded). Dense scores are the field's metric
    (euclidean: the squared distance, smallest first), sparse scores dot products, text
    scores BM25 summed over clauses and fields.

    Raises:
        ApiError: 400 for a bad clause, top_k, include_fields or filter.
    """
    clauses = check_array(body.get("score_by"), MAX_SCORE_BY_CLAUSES,
                          missing="'score_by' must contain at least one scoring method",
                          too_many="score_by has {count} clauses, which exceeds the limit of {limit}")
    top_k = body.get("top_k")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise bad_request(f"'top_k' must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}")
    include = include_fields(body.get("include_fields"), default_all=False)
    kinds = [c.get("type") if isinstance(c, dict) else None for c in clauses]
    if len(clauses) > 1 and any(k not in TEXT_KINDS for k in kinds):
        raise bad_request("'score_by' clauses of type 'text' and 'query_string' may be combined, but "
                          "'dense_vector', 'sparse_vector', 'embed' and 'sparse_embed' clauses must "
                          "appear alone")
    with index.lock:
        ns = index.namespace(ns_name)
        units = costs.query_read_units(sum(ns.sizes.values()) if ns else 0)
        # a namespace that does not exist yet answers no matches, after the same checks
        ns = ns or index.empty()
        keep = document_filter(index, ns, body["filter"]) if body.get("filter") is not None else None
        if kinds[0] in ("dense_vector", "sparse_vector"):
            ranked = _first(_rank_vector(index, ns, clauses[0], kinds[0]), keep, top_k)
        else:
            ranked = _rank_text(index, ns, clauses, kinds[0], top_k, keep)
        matches = [{"_id": i, "_score": s, **pick(ns.docs[i], include)} for i, s in ranked]
    return matches, units


def _first(pairs: Iterator[tuple[str, float]], keep: Callable[[str], bool] | None,
           top_k: int) -> list[tuple[str, float]]:
    """The first *top_k* of the ranked *pairs* that *keep* lets through."""
    out = []
    for doc_id, score in pairs:
        if keep is None or keep(doc_id):
            out.append((doc_id, score))
            if len(out) == top_k:
                break
    return out


def _rank_vector(index: DocumentIndex, ns: Namespace, clause: dict[str, Any],
                 kind: str) -> Iterator[tuple[str, float]]:
    """Every document carrying the clause's vector field, best first."""
    field = clause.get("field")
    spec = index.fields.get(field) if isinstance(field, str) else None
    if spec is None or spec["type"] != kind:
        raise bad_request(f"{kind} scoring needs 'field' naming a {kind} field of the schema, got {field!r}")
    assert isinstance(field, str)
    if kind == "dense_vector":
        query = parse_values([clause.get("values")], ["<query>"], spec["dimension"])[0]
        ids, matrix = ns.dense(field, spec["dimension"])
        scores = _dense_scores(matrix, query, spec["metric"])
        order = np.argsort(scores if spec["metric"] == "euclidean" else -scores, kind="stable")
        return ((ids[j], float(scores[j])) for j in order)
    query_sparse = parse_sparse(clause.get("sparse_values"), "the query")
    if query_sparse is None:
        raise bad_request("sparse_vector scoring needs non-empty 'sparse_values'")
    # only documents sharing a term with the query match, as in a sparse index
    scored = ((i, _sparse_dot(query_sparse, d[field])) for i, d in ns.docs.items() if field in d)
    return iter(sorted(((i, sc) for i, sc in scored if sc is not None), key=lambda p: -p[1]))


def _rank_text(index: DocumentIndex, ns: Namespace, clauses: list[Any], kind: Any, top_k: int,
               keep: Callable[[str], bool] | None) -> list[tuple[str, float]]:
    """The best *top_k* documents by the BM25 scores of the text and query_string
    *clauses*, summed."""
    if any(not isinstance(c, dict) for c in clauses):
        raise bad_request("Each score_by clause must be an object with a 'type'")
    if kind not in TEXT_KINDS:
        if kind in ("embed", "sparse_embed"):
            raise bad_request(f"{kind} scoring needs integrated embedding, which the local index server "
                              f"does not serve")
        raise bad_request(f"Unknown score_by type {kind!r}")
    if ns.text is None:
        raise bad_request("This index has no full_text_search field to score text against")
    import tantivy  # the engine behind ns.text; only its query combinators are needed here

    queries, seen = [], set()
    for clause in clauses:
        key = orjson.dumps(clause, option=orjson.OPT_SORT_KEYS)
        if key in seen:  # a repeated clause scores once, as Pinecone documents
            continue
        seen.add(key)
        text = clause.get("query")
        if not isinstance(text, str) or not text.strip():
            raise bad_request(f"A {clause.get('type')} clause needs a non-empty 'query' string")
        if clause["type"] == "text":
            fields = clause.get("fields")
            if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
                raise bad_request("Text scoring requires 'fields', a non-empty array of field names")
            for f in fields:
                if index.fields.get(f, {}).get("type") != "string":
                    raise bad_request(f"Text scoring field {f!r} is not a full_text_search field")
            q = ns.text.text_query(list(dict.fromkeys(fields)), text)
        else:
            try:
                q = ns.text.query_string(text)
            except QueryError as exc:
                raise bad_request(str(exc)) from None
        if q is not None:
            queries.append((tantivy.Occur.Should, q))
    if not queries:
        return []
    hits = ns.text.search(tantivy.Query.boolean_query(queries), len(ns.docs))
    return [(i, s) for i, s in hits if keep is None or keep(i)][:top_k]


def _metadata(index: DocumentIndex, doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in index.fields}


def include_fields(raw: Any, default_all: bool) -> list[str] | None:
    """The fields to return: None for every field; search's default is none, fetch's all."""
    if raw is None or raw == []:
        return None if default_all else []
    if not isinstance(raw, list) or not all(isinstance(f, str) for f in raw):
        raise bad_request("include_fields must be an array of field names")
    return None if "*" in raw else raw


def pick(doc: dict[str, Any], include: list[str] | None) -> dict[str, Any]:
    if include is None:
        return dict(doc)
    return {k: doc[k] for k in include if k in doc}


def _dense_scores(matrix: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """Cosine similarity, dot product, or squared euclidean distance (smaller is
    closer), as the legacy index scores them (:mod:`~devstack.index_server.scoring`)."""
    if len(matrix) == 0:
        return np.zeros(0, dtype=np.float32)
    if metric == "dotproduct":
        return matrix @ query
    if metric == "cosine":
        norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(query)), 1e-30)
        return (matrix @ query) / np.maximum(norms, 1e-30)
    return ((matrix - query) ** 2).sum(axis=1)


def _sparse_dot(query: SparseVector, stored: dict[str, Any]) -> float | None:
    """The dot product of *query* and a stored ``{"indices", "values"}``; None when they
    share no index (the document does not match)."""
    weights = dict(zip(stored.get("indices", ()), stored.get("values", ()), strict=True))
    shared = [(weights[int(i)], float(v)) for i, v in zip(query.indices, query.values, strict=True)
              if int(i) in weights]
    return sum(a * b for a, b in shared) if shared else None
