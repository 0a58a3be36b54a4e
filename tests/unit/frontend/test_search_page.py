"""The search page's pure logic: highlighting by the keyword side's tokenising, hits
and facets over a search's candidates, the relevance floor's source, and the API's
result objects with and without the score's parts."""

from __future__ import annotations

import json

import pytest

from frontend import searching
from frontend.searching import PRICE_RANGES, Page, overview, price_range_bounds, price_range_label
from frontend.ui_results import facets_html, highlighted, results_html
from productsearch.lexical import matching_spans
from productsearch.search import MODES, ScoreParts, SearchFilters, SearchResult
from tests.conftest import REPO


def result(id: int, score: float, category: str = "controller", price: float | None = 50.0, **kw) -> SearchResult:
    fields = dict(name=f"Pro Controller {id}", sku=f"SKU-ab-{id}", description="A wireless controller for gaming.")
    return SearchResult(id=id, price=price, category=category, score=score, **{**fields, **kw})


def marked(text: str, query: str) -> list[str]:
    return [text[a:b] for a, b in matching_spans(text, query)]


def test_a_stemmed_match_is_highlighted_and_stop_words_are_not():
    text = "The Controllers: controlling a wireless-gaming game"
    assert marked(text, "the controller for games") == ["Controllers", "controlling", "gaming", "game"]
    assert marked(text, "wireless gaming") == ["wireless", "gaming", "game"]
    assert marked(text, "the a of") == []


def test_an_identifier_is_highlighted_whole_and_case_insensitively():
    assert marked("SKU-qHUp-446 · spare", "sku-qhup-446") == ["SKU-qHUp-446"]
    assert marked("model WH-1000XM4.", "WH-1000XM4") == ["WH-1000XM4"]


def test_highlighting_escapes_the_text_around_and_inside_the_marks():
    out = highlighted('<script>alert("x")</script> controller & <b>controllers</b>', "controller")
    assert "<script>" not in out and "<b>" not in out
    assert out.count("<mark>") == 2 and "&lt;script&gt;" in out and "&amp;" in out
    assert highlighted("<controller>", "controller") == "&lt;<mark>controller</mark>&gt;"


def test_hits_and_facets_count_the_candidates_at_or_above_the_floor(monkeypatch):
    monkeypatch.setitem(searching.RELEVANCE_FLOORS, "hybrid", 0.5)
    candidates = [result(1, 0.9, "Controller", 20), result(2, 0.8, "device", 120), result(3, 0.5, "controller", 800),
                  result(4, 0.49, "device", 300), result(5, 0.6, "tool", None)]
    view = overview(candidates, "hybrid")
    assert (view.hits, view.close, view.floor) == (4, True, 0.5)
    assert view.categories == {"Controller": 2, "device": 1, "tool": 1}  # one key per category, as first written
    assert view.prices == (1, 1, 0, 0, 1)  # result 5 has no price: in no range

    none = overview([result(1, 0.2)], "hybrid")
    assert (none.hits, none.close, none.categories, none.prices) == (0, False, {}, (0, 0, 0, 0, 0))


def test_a_document_index_keeps_only_the_semantic_floor():
    class Index:
        def __init__(self, needs_sparse):
            self.needs_sparse = needs_sparse

    assert searching.relevance_floors(Index(True)) is searching.RELEVANCE_FLOORS
    floors = searching.relevance_floors(Index(False))
    assert floors["semantic"] == searching.RELEVANCE_FLOORS["semantic"]
    weak = [result(1, 0.01)]
    assert overview(weak, "hybrid", floors).close and not overview(weak, "hybrid").close
    assert not overview(weak, "semantic", floors).close


def test_price_ranges_cover_every_price_once_and_fill_exact_inclusive_bounds():
    for price in (0.0, 99.99, 100.0, 249.99, 250.0, 750.0, 10_000.0):
        assert sum(1 for low, high in PRICE_RANGES if (low is None or price >= low) and (high is None or price < high)) == 1
    assert price_range_bounds(0) == ("", "99.99") and price_range_bounds(1) == ("100", "249.99")
    assert price_range_bounds(len(PRICE_RANGES) - 1) == ("750", "")
    assert price_range_label(0) == "Under $100" and price_range_label(len(PRICE_RANGES) - 1) == "$750 and up"
    with pytest.raises(IndexError):
        price_range_bounds(len(PRICE_RANGES))


def test_results_keep_data_id_hide_the_score_and_say_when_nothing_is_close(monkeypatch):
    monkeypatch.setitem(searching.RELEVANCE_FLOORS, "semantic", 0.5)
    rows = [result(7, 0.9), result(8, 0.3)]
    page = Page(results=rows, page=1, page_size=10, has_more=False, capped=False, candidates=rows)
    html = results_html(page, "controller", overview(rows, "semantic"))
    assert '<tr class="result" data-id="7" data-rank="1"' in html and 'data-id="8"' in html
    assert '<table class="results">' in html  # no "explain": the score column is hidden by the CSS
    assert "floor-divider" in html and html.index("floor-divider") > html.index('data-id="7"')
    assert "No close match" not in html
    assert "<mark>Controller</mark>" in html

    weak = results_html(Page(results=rows[1:], page=1, page_size=10, has_more=False, capped=False,
                             candidates=rows[1:]), "controller", overview(rows[1:], "semantic"))
    assert weak.index("No close match") < weak.index('data-id="8"') and "floor-divider" not in weak


def test_explained_results_show_each_part():
    r = result(9, 0.61).__class__(**{**result(9, 0.61).__dict__, "parts": ScoreParts(0.7, 0.5, 0.61, 0.6)})
    html = results_html(Page(results=[r], page=1, page_size=10, has_more=False, capped=False), "x", None, True)
    assert '<table class="results explain">' in html
    assert '<td class="num explain-only dense">0.7000</td><td class="num explain-only keyword">0.5000</td>' in html


def test_facets_list_counts_and_no_facets_without_a_close_match(monkeypatch):
    monkeypatch.setitem(searching.RELEVANCE_FLOORS, "keyword", 0.1)
    view = overview([result(1, 0.9, "controller", 20), result(2, 0.8, "<b>x</b>", 120)], "keyword")
    html = facets_html(view, "keyword", SearchFilters())
    assert 'data-category="controller">controller <span class="count">1</span>' in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert 'Under $100 <span class="count">1</span>' in html and '$750 and up <span class="count">0</span>' in html
    bounded = facets_html(view, "keyword", SearchFilters(price_min=10))
    assert "$750 and up" not in bounded  # with a price filter, empty ranges say nothing
    assert facets_html(overview([result(1, 0.01)], "keyword"), "keyword", SearchFilters()) == ""


def test_the_api_result_is_unchanged_unless_explained():
    plain = result(3, 0.4)
    assert list(plain.to_json()) == ["id", "name", "sku", "description", "price", "category", "score"]
    explained = plain.__class__(**{**plain.__dict__, "parts": ScoreParts(dense=0.5, keyword=None, fused=0.4, alpha=1.0)})
    assert json.loads(json.dumps(explained.to_json()))["explain"] == {"dense": 0.5, "keyword": None, "fused": 0.4,
                                                                      "alpha": 1.0}


def test_the_floors_are_the_ones_the_tuning_chose():
    chosen = json.loads((REPO / "results" / "relevance-floor.json").read_text())
    assert chosen["split"] == "train"
    assert searching.RELEVANCE_FLOORS == chosen["floors"] and set(chosen["floors"]) == set(MODES)


def test_the_page_assets_are_package_data():
    """frontend.ui reads its CSS and script from frontend/static at import: each file
    there must match a package-data glob, or an installed wheel (the image) lacks it."""
    import fnmatch
    import tomllib

    from frontend import ui

    package = REPO / "apps" / "frontend"
    globs = tomllib.loads((package / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["frontend"]
    static = sorted(p.relative_to(package / "frontend").as_posix() for p in (package / "frontend" / "static").iterdir())
    assert {"static/open_editor.js", "static/page.css"} <= set(static)
    assert [p for p in static if not any(fnmatch.fnmatch(p, g) for g in globs)] == []
    assert "#results table" in ui.CSS and ui.OPEN_EDITOR_JS.lstrip().startswith("() =>")
