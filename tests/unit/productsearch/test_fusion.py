"""Hybrid search on a document index: the client-side fusion and the full-text query."""

import pytest

from productsearch.fusion import score_fusion
from productsearch.index_apis import Hit, full_text_query


def hits(*pairs):
    return [Hit(id=i, score=s, metadata={}) for i, s in pairs]


def test_one_search_alone_keeps_its_order_and_raw_scores():
    dense, keyword = hits(("a", 0.9), ("b", 0.5)), hits(("b", 7.0), ("c", 3.0))
    assert [(m.id, m.score, m.dense, m.keyword) for m in score_fusion(dense, keyword, 1.0)] == [
        ("a", 0.9, 0.9, None), ("b", 0.5, 0.5, 7.0)]
    assert [(m.id, m.score) for m in score_fusion(dense, keyword, 0.0)] == [("b", 7.0), ("c", 3.0)]


def test_fusion_min_max_normalises_each_search_and_weights_them():
    dense, keyword = hits(("a", 0.9), ("b", 0.7), ("c", 0.5)), hits(("c", 12.0), ("b", 4.0))
    fused = {m.id: m.score for m in score_fusion(dense, keyword, 0.45)}
    assert fused["a"] == pytest.approx(0.45)  # top dense, no keyword match
    assert fused["b"] == pytest.approx(0.45 * 0.5)  # mid dense, lowest keyword
    assert fused["c"] == pytest.approx(0.55)  # lowest dense, top keyword
    assert [m.id for m in score_fusion(dense, keyword, 0.45)] == ["c", "a", "b"]
    assert [m.id for m in score_fusion(hits(("x", 1.0)), [], 0.45)] == ["x"]


def test_alpha_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        score_fusion([], [], 1.5)


@pytest.mark.parametrize(("text", "query"), [
    ("SKU-qHUp-446", "sku qhup 446"),
    ('AND ("red', "and red"),
    ("title:lantern OR lamp*", "title lantern or lamp"),
    ("ＡＢＣ－１２", "abc 12"),  # full-width forms read as their ASCII letters and digits
    ("+-&|!(){}[]^\"~*?:\\/", ""),
])
def test_full_text_query_is_plain_words(text, query):
    assert full_text_query(text) == query
