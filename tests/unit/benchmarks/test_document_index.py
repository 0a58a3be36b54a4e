"""The client-side fusion of benchmarks/document_index.py: reciprocal rank fusion (plain
and weighted) and tuning on one split (the apps' score fusion: tests/unit/productsearch/test_fusion.py)."""

from __future__ import annotations

import pytest

from benchmarks import document_index as di
from benchmarks.metrics import evaluate
from productsearch.index_apis import Hit


def hits(*pairs):
    return [Hit(id=i, score=s, metadata={}) for i, s in pairs]


def test_rrf_sums_reciprocal_ranks():
    # c: 1/63 + 1/61 beats b: 1/62 + 1/62, by a hair; a, in one ranking only, comes last
    assert di.rrf([["a", "b", "c"], ["c", "b"]]) == ["c", "b", "a"]


def test_rrf_k_changes_the_order():
    # a is first in one ranking only; b is second in both. A small k rewards the top rank:
    # k=1: a 1/2 + 1/5 = 0.7 against b 1/3 + 1/3 = 0.67; k=60: b wins
    rankings = [["a", "b"], ["c", "b", "d", "a"]]
    assert di.rrf(rankings, k=1)[0] == "a"
    assert di.rrf(rankings, k=60)[0] == "b"


def test_weighted_rrf_lets_one_ranking_dominate():
    assert di.rrf([["a"], ["b"]], weights=[1.0, 2.0]) == ["b", "a"]
    assert di.rrf([["a"], ["b"]], weights=[2.0, 1.0]) == ["a", "b"]


@pytest.mark.parametrize("kwargs, message", [({"k": 0}, "k must be positive"),
                                             ({"weights": [1.0]}, "1 weights for 2 rankings")])
def test_rrf_refuses_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        di.rrf([["a"], ["b"]], **kwargs)


def test_tune_picks_the_best_grid_point_per_method():
    # q1's relevant d1 is first by keyword and last by dense; q2's d2 is first by dense
    # and fourth by keyword. Only fusions that lean on keyword's top rank get q1 right
    # while keeping d2 near the top for q2.
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    dense = {"q1": hits(("x", 0.9), ("y", 0.8), ("z", 0.7), ("d1", 0.1)),
             "q2": hits(("d2", 0.9), ("x", 0.5), ("y", 0.4))}
    keyword = {"q1": hits(("d1", 9.0), ("x", 1.0)),
               "q2": hits(("x", 9.0), ("y", 8.0), ("z", 7.0), ("d2", 6.0))}
    best = di.tune(dense, keyword, qrels)
    assert set(best) == {"rrf", "weighted_rrf", "score_fusion"}
    for method, found in best.items():
        runs = {q: di.fuse_with(method, found["params"], dense[q], keyword[q]) for q in qrels}
        assert found["ndcg@10"] == pytest.approx(evaluate(runs, qrels)["ndcg@10"], abs=1e-5)
        # no other grid point of the method does better
        for params, fuse in di.fusions()[method]:
            other = evaluate({q: fuse(dense[q], keyword[q]) for q in qrels}, qrels)["ndcg@10"]
            assert other <= found["ndcg@10"] + 1e-5, (method, params)


def test_fuse_with_refuses_a_point_off_the_grid():
    with pytest.raises(KeyError, match="no grid point"):
        di.fuse_with("rrf", {"k": 7}, [], [])


def test_schema_per_setup():
    sparse = di.schema("documents_sparse", 384)["fields"]
    assert sparse["embedding"] == {"type": "dense_vector", "dimension": 384, "metric": "dotproduct"}
    assert sparse["sparse"] == {"type": "sparse_vector"} and "text" not in sparse
    fulltext = di.schema("documents_fulltext", 384)["fields"]
    assert fulltext["text"]["full_text_search"]["stemming"] is True
    assert fulltext["sku"] == {"type": "string", "full_text_search": {}} and "sparse" not in fulltext
    with pytest.raises(ValueError, match="no document schema"):
        di.schema("legacy", 384)


def test_the_reported_split_is_never_the_tuning_split():
    with pytest.raises(SystemExit):
        di.parse_args(["--split", "train", "--tune-split", "train"])
