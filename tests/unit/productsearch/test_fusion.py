"""Hybrid search on a document index: the client-side fusion and the full-text query."""

import pytest

from productsearch.fusion import score_fusion
from productsearch.index import ProductIndex
from productsearch.index_apis import Hit, full_text_query
from productsearch.search import ProductSearch
from productsearch.settings import IndexSettings


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


def test_normalising_lets_the_weight_decide_between_unlike_scales():
    # raw BM25 scores dwarf cosine similarities; normalised, the weight decides
    dense, keyword = hits(("a", 0.9), ("b", 0.5), ("c", 0.1)), hits(("c", 40.0), ("b", 30.0), ("a", 0.0))
    assert score_fusion(dense, keyword, 1.0)[0].id == "a"
    assert score_fusion(dense, keyword, 0.0)[0].id == "c"
    # b: 0.5 * 0.5 + 0.5 * 0.75 = 0.625 beats a (0.5) and c (0.5)
    assert score_fusion(dense, keyword, 0.5)[0].id == "b"


def test_a_missing_id_gets_nothing_and_a_lone_result_full_weight():
    assert [m.id for m in score_fusion(hits(("a", 0.3)), hits(("b", 7.0), ("a", 1.0)), 0.5)] == ["a", "b"]
    assert [m.id for m in score_fusion([], hits(("b", 7.0)), 0.5)] == ["b"]


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


@pytest.mark.parametrize(("api", "in_search"), [("documents", True), ("vectors", False)])
def test_only_a_document_index_explains_in_its_search(api, in_search):
    settings = IndexSettings.from_env({"PINECONE_HOST": "idx.svc.pinecone.io", "PINECONE_API_KEY": "k",
                                       "PINECONE_INDEX_API": api})
    assert ProductSearch(None, ProductIndex(settings), None).explains_in_search is in_search
