"""Hybrid search on a document index: a dense and a full-text search fused in the client.

A document index cannot rank by a dense and a text clause in one search, so hybrid is
the pattern Pinecone documents for it (docs: "Hybrid search", "Reciprocal rank
fusion": "you run each search separately, then apply RRF to their results in your
client"). Here the fusion is a convex combination of the two searches' scores, each
min-max normalised over its own candidates: on SciFact's train split it beat
reciprocal rank fusion at every k, weighted or not (benchmarks.document_index,
results/document-index.json), and it was then reported once on the test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# The dense part's weight; the full-text part gets 1 - DOCUMENT_HYBRID_ALPHA. Chosen on
# SciFact's train split by `python -m benchmarks.document_index` (never the test split).
DOCUMENT_HYBRID_ALPHA = 0.45
# How many candidates each search of a hybrid query returns: the depth the weighting
# was tuned at (a min-max normalisation depends on how deep a list goes).
FUSION_DEPTH = 100


class Scored(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def score(self) -> float: ...


@dataclass(frozen=True)
class FusedMatch:
    """A fused result: its id, the score it ranks by, and each search's own score
    (None when that search did not return it, or did not run)."""

    id: str
    score: float
    dense: float | None
    keyword: float | None


def score_fusion(dense: Sequence[Scored], keyword: Sequence[Scored], alpha: float) -> list[FusedMatch]:
    """The two searches' results (each best first) as one ranking, best first.

    alpha 1.0 or 0.0 is one search alone, ranked and scored as that search returned it.
    Otherwise each score is min-max normalised over its own search's results to 0..1
    (one result, or all equal: 1) and an id scores alpha * dense + (1 - alpha) * keyword,
    taking 0 from a search that did not return it; ties keep first-seen order, dense
    first. Raises ValueError when alpha is outside 0..1."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within 0..1, got {alpha}")
    raw_dense = {m.id: float(m.score) for m in dense}
    raw_keyword = {m.id: float(m.score) for m in keyword}
    if alpha in (0.0, 1.0):
        alone = dense if alpha == 1.0 else keyword
        return [FusedMatch(m.id, float(m.score), raw_dense.get(m.id), raw_keyword.get(m.id)) for m in alone]
    fused: dict[str, float] = {}
    for scores, weight in ((raw_dense, alpha), (raw_keyword, 1.0 - alpha)):
        if not scores:
            continue
        low, span = min(scores.values()), max(scores.values()) - min(scores.values())
        for doc_id, value in scores.items():
            fused[doc_id] = fused.get(doc_id, 0.0) + weight * ((value - low) / span if span else 1.0)
    order = sorted(fused, key=lambda d: -fused[d])
    return [FusedMatch(d, fused[d], raw_dense.get(d), raw_keyword.get(d)) for d in order]
