"""nDCG@k and recall@k (benchmarks/metrics.py) against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from benchmarks.metrics import evaluate, ndcg_at_k, recall_at_k

LOG2_3 = math.log2(3)  # discount of rank 2


def test_binary_gains_with_a_miss_in_between():
    # DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3)
    assert ndcg_at_k(["a", "x", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(1.5 / (1 + 1 / LOG2_3))
    assert ndcg_at_k(["a", "x", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(0.919721, abs=1e-6)


def test_graded_gains_are_the_grades_not_exponentials():
    # trec_eval: gain = grade. DCG = 1 + 2/log2(3); ideal = 2 + 1/log2(3)
    value = ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, 10)
    assert value == pytest.approx((1 + 2 / LOG2_3) / (2 + 1 / LOG2_3))
    assert value == pytest.approx(0.859719, abs=1e-6)


def test_perfect_ranking_scores_one_and_reverse_less():
    judged = {"a": 3, "b": 2, "c": 1}
    assert ndcg_at_k(["a", "b", "c", "z"], judged, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["c", "b", "a"], judged, 10) < 1.0


def test_ideal_comes_from_the_qrels_not_the_retrieved_list():
    # Only one of three relevant documents retrieved, at rank 1: DCG 1, ideal 1 + 1/log2(3) + 1/2
    assert ndcg_at_k(["a"], {"a": 1, "b": 1, "c": 1}, 10) == pytest.approx(1 / (1 + 1 / LOG2_3 + 0.5))


def test_cutoff_at_k():
    ranking = [f"x{i}" for i in range(10)] + ["a"]
    assert ndcg_at_k(ranking, {"a": 1}, 10) == 0.0
    assert ndcg_at_k(ranking, {"a": 1}, 11) == pytest.approx(1 / math.log2(12))
    # The ideal DCG is cut at k too: 12 relevant documents, all retrieved first, score 1 at k=10.
    judged = {f"r{i}": 1 for i in range(12)}
    assert ndcg_at_k([f"r{i}" for i in range(12)], judged, 10) == pytest.approx(1.0)


def test_zero_and_negative_grades_add_nothing():
    assert ndcg_at_k(["n", "a"], {"a": 1, "n": 0}, 10) == pytest.approx(1 / LOG2_3)
    assert ndcg_at_k(["n"], {"n": -1}, 10) == 0.0
    assert recall_at_k(["n"], {"n": 0, "a": 1}, 100) == 0.0


def test_duplicates_count_once():
    assert ndcg_at_k(["a", "a", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(1.0)
    assert recall_at_k(["a", "a"], {"a": 1, "b": 1}, 100) == 0.5


def test_recall_at_k():
    judged = {"a": 1, "b": 2, "c": 1, "d": 1}
    assert recall_at_k(["a", "x", "c"], judged, 100) == 0.5
    assert recall_at_k(["x", "a", "c"], judged, 2) == 0.25
    assert recall_at_k([], judged, 100) == 0.0
    assert recall_at_k(["a"], {}, 100) == 0.0


def test_evaluate_averages_over_every_judged_query_including_unanswered_ones():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}}
    runs = {"q1": ["a"], "q2": ["x", "b"]}  # q3 has no ranking (e.g. the search refused it)
    scores = evaluate(runs, qrels, ndcg_k=10, recall_k=100)
    assert scores["queries"] == 3
    assert scores["ndcg@10"] == pytest.approx((1 + 1 / LOG2_3 + 0) / 3)
    assert scores["recall@100"] == pytest.approx(2 / 3)
    assert scores["per_query"]["q3"] == {"ndcg@10": 0.0, "recall@100": 0.0}


def test_runs_for_unjudged_queries_are_ignored():
    scores = evaluate({"q1": ["a"], "other": ["z"]}, {"q1": {"a": 1}})
    assert scores["queries"] == 1 and scores["ndcg@10"] == 1.0
