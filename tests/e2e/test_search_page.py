"""The search page as a shopper and an engineer read it, in headless Debian Chromium
against the frontend on the real local stack: highlighted words, hits and the
server's time, scores only on request, an honest "no close match", facet counts, a
layout that fits a phone, emoji that render, and the README's screenshot."""

from __future__ import annotations

import os
import re

import pytest

from frontend.searching import PRICE_RANGES, RELEVANCE_FLOORS, price_range_label
from productsearch.lexical import terms
from productsearch.search import HYBRID_ALPHA
from tests.conftest import REPO
from tests.e2e import frontend_stack
from tests.e2e.browser import MARKS, answered, field, open_page, settle
from tests.e2e.take_screenshot import take_with

pytestmark = MARKS
SCREENSHOT = REPO / "docs" / "images" / "search.png"
# How much of the committed screenshot may differ from a fresh one before it counts as
# out of date: the server's time in the message and font anti-aliasing change a few
# hundred pixels; a changed layout, control or result changes far more.
SCREENSHOT_MAX_CHANGED = 0.01
FORM_INPUTS = 6  # query, min and max price, category, mode, explain


@pytest.fixture(scope="module")
def front(stack):
    with frontend_stack.running(stack, rows=200) as f:
        yield f


def search(page, query: str, mode: str = "hybrid", price_min: str = "", price_max: str = "") -> str:
    if mode != "hybrid":
        with page.expect_response(answered(FORM_INPUTS)):
            page.locator("#mode").get_by_label({"semantic": "Semantic (meaning)", "keyword": "Keyword (exact words)"}[mode],
                                                exact=True).check()
    field(page, "query").fill(query)
    field(page, "price-min").fill(price_min)
    field(page, "price-max").fill(price_max)
    with page.expect_response(answered(FORM_INPUTS)):
        page.locator("#search-btn").click()
    settle(page)
    return page.locator("#search-message").inner_text()


def rows(page):
    return page.locator("#results tr.result")


# -- results a shopper reads at a glance ------------------------------------------------
def test_matched_words_are_highlighted_with_stemming(page, front):
    search(page, "controllers")  # the catalog's names say "Controller"
    marks = [m.lower() for m in page.locator("#results tr.result .name mark").all_inner_texts()]
    assert marks and set(marks) == {"controller"}, marks
    # Only whole matched words are marked: the rest of the name stays plain text.
    first = rows(page).first.locator(".name")
    assert first.inner_text() != first.locator("mark").first.inner_text()


def test_description_and_sku_are_highlighted_by_the_keyword_sides_terms(page, front):
    query = "optimizing platform"  # the catalog's descriptions say "optimize" and "platforms"
    search(page, query, mode="keyword")
    marks = page.locator("#results tr.result td.desc mark").all_inner_texts()
    assert marks and {t for m in marks for t in terms(m)} <= set(terms(query)), marks
    assert {m.lower() for m in marks} - {"optimizing", "platform"}, marks  # found by stem, not by spelling

    sku = front.parts.conn.execute("SELECT sku FROM products ORDER BY id OFFSET 42 LIMIT 1").fetchone()["sku"]
    search(page, sku.lower())
    assert rows(page).first.locator(".sku mark").all_inner_texts() == [sku]  # whole, as written


def test_the_page_says_how_many_hits_and_the_servers_time(page, front):
    text = search(page, "wireless controller")
    assert re.search(r"\d+\+? close match(es)? · \d+ ms on the server", text), text
    hits = int(re.search(r"(\d+)\+? close match", text).group(1))
    facet_total = sum(int(n) for n in page.locator("#facet-categories .count").all_inner_texts())
    assert facet_total == hits  # the category facet counts the same hits


def test_scores_are_hidden_until_an_engineer_asks_for_the_explanation(page, front):
    search(page, "wireless controller")
    assert rows(page).count() == 10
    assert not rows(page).first.locator("td.score").is_visible()
    assert page.locator("#results td.dense").count() == 0

    with page.expect_response(answered(FORM_INPUTS)):
        page.locator("#explain input").check()
    settle(page)
    first = rows(page).first
    assert first.locator("td.score").is_visible() and first.locator("td.dense").is_visible()
    for i in range(rows(page).count()):
        row = rows(page).nth(i)
        fused, dense, keyword = (float(row.locator(f"td.{c}").inner_text()) for c in ("score", "dense", "keyword"))
        # The index's hybrid score is the convex combination of the two parts.
        assert fused == pytest.approx(HYBRID_ALPHA * dense + (1 - HYBRID_ALPHA) * keyword, abs=2e-4), (fused, dense, keyword)


def test_the_api_explains_only_when_asked(front):
    plain = front.api("/api/search", "POST", {"query": "wireless controller", "top_k": 3})
    assert plain.status == 200 and all(set(r) == {"id", "name", "sku", "description", "price", "category", "score"}
                                       for r in plain.body["results"])
    asked = front.api("/api/search", "POST", {"query": "wireless controller", "top_k": 3, "mode": "semantic",
                                              "explain": True})
    assert asked.status == 200
    for r in asked.body["results"]:
        parts = r["explain"]
        assert parts["fused"] == r["score"] and parts["dense"] == pytest.approx(r["score"], abs=1e-4)
        assert parts["keyword"] > 0  # the query's words appear in these products, though semantic ignores them
    keyword = front.api("/api/search", "POST", {"query": "wireless controller", "top_k": 3, "mode": "keyword",
                                                "explain": True})
    assert keyword.status == 200 and keyword.body["results"]
    for r in keyword.body["results"]:
        assert r["explain"]["keyword"] == pytest.approx(r["score"], abs=1e-4) and r["explain"]["alpha"] == 0.0
        assert -1.0 <= r["explain"]["dense"] <= 1.0  # embedded for the explanation, though keyword ranks without it
    bad = front.api("/api/search", "POST", {"query": "x", "explain": "yes"})
    assert bad.status == 400 and bad.body == {"error": "explain must be true or false"}


# -- honest empty states ---------------------------------------------------------------------
def test_a_query_with_no_close_match_says_so_above_the_nearest_results(page, front):
    text = search(page, "rainfall statistics of the Jurassic period", mode="semantic")
    assert "No close match ·" in text, text
    heading = page.locator("#results .no-close-match")
    assert heading.is_visible() and "No close match" in heading.inner_text()
    assert rows(page).count() == 10  # the nearest results, under that heading
    box = heading.bounding_box()
    assert box["y"] < rows(page).first.bounding_box()["y"]
    assert all(float(s) < RELEVANCE_FLOORS["semantic"] for s in
               [rows(page).nth(i).get_attribute("data-score") for i in range(rows(page).count())])


def test_a_close_match_has_no_such_heading(page, front):
    search(page, "wireless controller", mode="semantic")
    assert page.locator("#results .no-close-match").count() == 0
    assert float(rows(page).first.get_attribute("data-score")) >= RELEVANCE_FLOORS["semantic"]


def test_a_divider_marks_where_the_close_matches_end(page, front):
    text = search(page, "wireless controller")
    hits = int(re.search(r"(\d+) close match", text).group(1))
    assert 10 < hits < 100 and hits % 10, f"the query needs a page holding both kinds of result: {text}"
    for _ in range(hits // 10):
        with page.expect_response(answered(2)):  # the search's state and the explain toggle
            page.locator("#next-btn").click()
        settle(page)
    assert page.locator("#results .no-close-match").count() == 0
    body = page.locator("#results tbody > tr")
    kinds = [body.nth(i).get_attribute("class") for i in range(body.count())]
    at = kinds.index("floor-divider")
    assert kinds.count("floor-divider") == 1 and "below the relevance floor" in body.nth(at).inner_text()
    ranks = [int(body.nth(i).get_attribute("data-rank")) for i in range(body.count()) if i != at]
    scores = [float(body.nth(i).get_attribute("data-score")) for i in range(body.count()) if i != at]
    floor = RELEVANCE_FLOORS["hybrid"]
    assert ranks[at - 1] == hits and all(s >= floor for s in scores[:at]) and all(s < floor for s in scores[at:])


# -- facets ----------------------------------------------------------------------------------
def test_category_and_price_facets_count_the_hits_and_a_price_range_filters(page, front):
    search(page, "controller", mode="keyword")
    counts = {item.get_attribute("data-category"): int(item.locator(".count").inner_text())
              for item in page.locator("#facet-categories .facet-item").all()}
    assert counts.get("controller", 0) > 0, counts
    page.locator("#category input").click()
    options = page.locator('#category li[role="option"]').all_inner_texts()
    assert f"controller ({counts['controller']})" in [o.strip() for o in options], options
    page.keyboard.press("Escape")

    prices = [int(n) for n in page.locator("#facet-prices .count").all_inner_texts()]
    assert len(prices) == len(PRICE_RANGES) and sum(prices) == sum(counts.values())
    pick = next(i for i, n in enumerate(prices) if n)
    with page.expect_response(lambda r: "/gradio_api/run/" in r.url):
        option = page.locator(f'#price-range label:has(input[value="{pick}"])')
        assert option.inner_text().strip() == f"{price_range_label(pick)} ({prices[pick]})"
        option.locator("input").check()
    settle(page)
    low, high = PRICE_RANGES[pick]
    assert field(page, "price-min").input_value() == ("" if low is None else f"{low:g}")
    shown = [float(p.strip().lstrip("$").replace(",", "")) for p in page.locator("#results td.price").all_inner_texts()]
    assert shown and all((low is None or p >= low) and (high is None or p < high) for p in shown), shown


# -- layout on a phone and a desktop ---------------------------------------------------------
@pytest.mark.parametrize("width", [390, 1280])
def test_results_fit_the_width_and_skus_stay_on_one_line(browser, front, width):
    context, pg = open_page(browser, front.url, width, 844 if width == 390 else 900)
    try:
        search(pg, "wireless controller")
        assert rows(pg).count() == 10
        overflow = pg.evaluate("""() => ({
            page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
            results: (() => { const r = document.querySelector('#results'); return r.scrollWidth - r.clientWidth; })(),
        })""")
        assert overflow == {"page": 0, "results": 0}, overflow
        lines = pg.evaluate("""() => [...document.querySelectorAll('#results .sku')].map(e =>
            Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)))""")
        assert lines and max(lines) == 1, lines
        # Every result's price and name are on screen, not cut off to the right.
        right = pg.evaluate("() => Math.max(...[...document.querySelectorAll('#results tr.result td.price, "
                            "#results tr.result .name')].map(e => e.getBoundingClientRect().right))")
        assert right <= width, right
    finally:
        context.close()


def test_explained_scores_are_labelled_on_a_phone(browser, front):
    context, pg = open_page(browser, front.url, 390, 844)
    try:
        search(pg, "wireless controller")
        with pg.expect_response(answered(FORM_INPUTS)):
            pg.locator("#explain input").check()
        settle(pg)
        labels = pg.evaluate("""() => ['score', 'dense', 'keyword'].map(c => getComputedStyle(
            document.querySelector('#results tr.result td.' + c), '::before').content)""")
        assert labels == ['"Fused "', '"Dense "', '"Keyword "'], labels
        assert pg.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth") == 0
    finally:
        context.close()


# -- fonts -------------------------------------------------------------------------------------
def test_emoji_render_in_colour_not_as_empty_boxes(page, front):
    coloured = page.evaluate("""() => {
        const c = document.createElement('canvas'); c.width = 64; c.height = 64;
        const g = c.getContext('2d'); g.font = '48px sans-serif'; g.fillStyle = '#000'; g.textBaseline = 'top';
        g.fillText('\u2705', 4, 4);
        const d = g.getImageData(0, 0, 64, 64).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (Math.abs(d[i] - d[i + 1]) > 40 || Math.abs(d[i + 1] - d[i + 2]) > 40)) n++;
        return n; }""")
    assert coloured > 100, "no colour emoji font: scripts/install-system-deps.sh installs fonts-noto-color-emoji"


# -- the README's screenshot -------------------------------------------------------------------
def test_the_readme_screenshot_is_the_page_as_it_is(browser, front, tmp_path):
    """Retakes docs/images/search.png from the running page and fails when the committed
    one differs materially. UPDATE_SCREENSHOT=1 writes the fresh one over it instead."""
    from PIL import Image, ImageChops

    fresh = tmp_path / "search.png"
    take_with(browser, front.url, str(fresh))
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.write_bytes(fresh.read_bytes())
        return
    new, old = Image.open(fresh).convert("RGB"), Image.open(SCREENSHOT).convert("RGB")
    assert new.size == old.size, (f"{SCREENSHOT.relative_to(REPO)} is out of date ({old.size} px, the page is "
                                  f"{new.size}): rerun this test with UPDATE_SCREENSHOT=1 and commit the image")
    diff = ImageChops.difference(new, old).convert("L").point(lambda v: 255 if v > 48 else 0)
    changed = diff.histogram()[255] / (new.size[0] * new.size[1])
    assert changed <= SCREENSHOT_MAX_CHANGED, (
        f"{SCREENSHOT.relative_to(REPO)} is out of date: {changed:.1%} of its pixels differ from the page now; "
        "rerun this test with UPDATE_SCREENSHOT=1 and commit the image")
