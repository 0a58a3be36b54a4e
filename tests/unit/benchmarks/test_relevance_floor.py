"""The relevance floor's choice: Youden's J on a query's top score, at midpoints."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.relevance_floor import catalog_queries, choose_floor


def test_separable_scores_get_the_midpoint_of_the_gap():
    scores = np.array([0.9, 0.7, 0.6, 0.3, 0.2, 0.1])
    close = np.array([True, True, True, False, False, False])
    chosen = choose_floor(scores, close)
    assert chosen["floor"] == pytest.approx(0.45)
    assert (chosen["youden_j"], chosen["true_positive_rate"], chosen["false_positive_rate"]) == (1.0, 1.0, 0.0)
    assert chosen["roc_auc"] == 1.0 and chosen["no_close_match_share"] == 0.5


def test_overlapping_scores_get_the_cut_off_with_the_best_j():
    scores = np.array([0.9, 0.5, 0.4, 0.45, 0.2])
    close = np.array([True, True, False, False, True])
    chosen = choose_floor(scores, close)
    # Above 0.475 keeps 2 of 3 with a match and none without: J = 2/3, the best.
    assert chosen["floor"] == pytest.approx(0.475) and abs(chosen["youden_j"] - 2 / 3) < 1e-9


def test_catalog_queries_come_from_the_products_and_repeat_with_the_seed():
    rows = [{"name": f"{kind} Controller", "sku": f"SKU-{i}", "description": "A quiet wireless controller."}
            for i, kind in enumerate(("Pro", "Lite", "Max", "Eco", "Mini"))]
    queries = catalog_queries(rows, 3)
    assert queries == catalog_queries(rows, 3)
    assert "controller" in queries and sum(q.startswith("SKU-") for q in queries) == 3
    assert all(len(q.split()) <= 3 for q in queries)
