"""Exact (brute-force) scoring of a query against one namespace: dense cosine,
dotproduct (plus the sparse dot product: a sparse-dense hybrid score, as Pinecone
computes it) or squared euclidean distance, and the selection of the top matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from devstack.index_server.namespace import Namespace
from devstack.index_server.sparse import SparseVector


@dataclass
class Match:
    """One query result: the record's id and score, with its values, sparse values
    and metadata when the query asked for them."""

    id: str
    score: Any  # a numpy float32 scalar, serialised with its float32 repr
    values: np.ndarray | None
    metadata: dict[str, Any] | None
    sparse_values: SparseVector | None = None


def rank(
    ns: Namespace,
    metric: str,
    vector: np.ndarray,
    sparse: SparseVector | None,
    candidates: np.ndarray | None,
    top_k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The best *top_k* of *ns*'s rows for a query, best first.

    *candidates* are the row numbers a filter lets through (``None``: every row).
    Returns ``(top, scores)``: *top* indexes into *scores*, and both are relative to
    *candidates* when it is given. Scores are float32; for euclidean they are
    squared distances (smaller is closer), as Pinecone reports them.
    """
    q = np.asarray(vector, dtype=np.float32)
    if candidates is None:
        dots = ns.matrix @ q
        sqnorm = ns.sqnorm
    elif candidates.size * 5 > len(ns):
        # Scoring is memory-bound: past ~20% of rows, one pass over the whole
        # matrix is cheaper than gathering the candidate rows first.
        dots = (ns.matrix @ q)[candidates]
        sqnorm = ns.sqnorm[candidates]
    else:
        dots = ns.matrix[candidates] @ q
        sqnorm = ns.sqnorm[candidates]
    if metric == "cosine":
        denom = np.sqrt(sqnorm) * np.float32(np.sqrt(np.dot(q, q)))
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.where(denom > 0, dots / denom, np.float32(0.0))
        ranking = -scores
    elif metric == "dotproduct":
        scores = dots
        sparse_scores = None if sparse is None else ns.sparse_scores(sparse)
        if sparse_scores is not None:
            scores = dots + (
                sparse_scores if candidates is None else sparse_scores[candidates]
            )
        ranking = -scores
    else:  # euclidean: squared distance, smaller is closer
        scores = np.maximum(sqnorm + np.float32(np.dot(q, q)) - 2 * dots, 0)
        ranking = scores
    k = min(top_k, scores.shape[0])
    if k < scores.shape[0]:
        top = np.argpartition(ranking, k - 1)[:k]
        top = top[np.argsort(ranking[top], kind="stable")]
    else:
        top = np.argsort(ranking, kind="stable")
    return top, scores
