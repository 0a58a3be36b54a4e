"""Retrieval metrics with the trec_eval definitions (as pytrec_eval computes them,
which is what BEIR and MTEB report).

- nDCG@k: gain = the graded relevance from the qrels, discount 1/log2(rank + 1) with
  ranks from 1; the ideal DCG sorts every judged document of the query by its grade
  (documents judged 0 or below add nothing). A query whose qrels hold no relevant
  document scores 0.
- recall@k: relevant documents (grade >= 1) among the first k, divided by the number of
  relevant documents in the qrels.

A run is a ranked list of document ids, best first; duplicates count once (the first
occurrence). The mean is taken over the queries in the qrels: a query with no
ranking (e.g. one the search refused) scores 0 instead of being left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def _dedup(ranking: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for doc in ranking:
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
    return out


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain of `gains` in rank order (rank 1 first)."""
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def ndcg_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """nDCG@k of one ranking against one query's qrels (see the module docstring)."""
    ideal = dcg(sorted((g for g in judged.values() if g > 0), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    got = dcg([max(judged.get(doc, 0), 0) for doc in _dedup(ranking)[:k]])
    return got / ideal


def recall_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """recall@k of one ranking against one query's qrels (see the module docstring)."""
    relevant = {doc for doc, g in judged.items() if g >= 1}
    if not relevant:
        return 0.0
    return len(relevant.intersection(_dedup(ranking)[:k])) / len(relevant)


def evaluate(runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]],
             ndcg_k: int = 10, recall_k: int = 100) -> dict:
    """Mean nDCG@ndcg_k and recall@recall_k over every query in qrels, plus per-query values."""
    per_query = {}
    for qid, judged in qrels.items():
        ranking = runs.get(qid, [])
        per_query[qid] = {f"ndcg@{ndcg_k}": ndcg_at_k(ranking, judged, ndcg_k),
                          f"recall@{recall_k}": recall_at_k(ranking, judged, recall_k)}
    n = len(per_query)
    mean = lambda key: sum(v[key] for v in per_query.values()) / n if n else 0.0  # noqa: E731
    return {f"ndcg@{ndcg_k}": mean(f"ndcg@{ndcg_k}"), f"recall@{recall_k}": mean(f"recall@{recall_k}"),
            "queries": n, "per_query": per_query}
