"""The search page on a document index (PINECONE_INDEX_API=documents), in headless
Debian Chromium: the explanation shows the scores the dense and full-text searches
returned, and only semantic mode has a relevance floor. The same index server serves
the session's legacy index; this module points the stack at a document index beside it."""

from __future__ import annotations

import re

import pytest

from frontend.searching import DOCUMENT_RELEVANCE_FLOORS
from productsearch.fusion import DOCUMENT_HYBRID_ALPHA
from tests.e2e import frontend_stack
from tests.e2e.browser import MARKS, answered, field, settle

pytestmark = MARKS
FORM_INPUTS = 6  # query, min and max price, category, mode, explain
OFF_TOPIC = "rainfall statistics of the Jurassic period"


@pytest.fixture(scope="module")
def front(stack):
    with frontend_stack.on_document_index(stack) as f:
        yield f


def search(page, query: str, mode: str) -> str:
    labels = {"hybrid": "Hybrid (words and meaning)", "semantic": "Semantic (meaning)",
              "keyword": "Keyword (exact words)"}
    choice = page.locator("#mode").get_by_label(labels[mode], exact=True)
    if not choice.is_checked():
        field(page, "query").fill("")  # nothing to re-run: the pick answers without a search
        with page.expect_response(answered(FORM_INPUTS)):
            choice.check()
    field(page, "query").fill(query)
    with page.expect_response(answered(FORM_INPUTS)):
        page.locator("#search-btn").click()
    settle(page)
    return page.locator("#search-message").inner_text()


def part(text: str) -> float | None:
    return None if text.strip() == "—" else float(text)


def test_the_explanation_shows_each_searchs_own_score(page, front):
    search(page, "wireless controller", "hybrid")
    with page.expect_response(answered(FORM_INPUTS)):
        page.locator("#explain input").check()
    settle(page)
    rows = page.locator("#results tr.result")
    assert rows.count() == 10
    seen = []
    for i in range(rows.count()):
        row = rows.nth(i)
        fused, dense, keyword = (part(row.locator(f"td.{c}").inner_text()) for c in ("score", "dense", "keyword"))
        assert fused is not None and 0.0 <= fused <= 1.0  # min-max normalised parts, weighted
        seen.append((fused, dense, keyword))
    # Pinecone's BM25 is unbounded: raw, not a 0..1 dot product as on a legacy index.
    assert any(k is not None and k > 1.0 for _, _, k in seen), seen
    assert all(d is None or -1.0 <= d <= 1.0 for _, d, _ in seen), seen
    # The best full-text match, alone at the top of its list, gets at least the keyword weight.
    assert seen[0][0] >= 1.0 - DOCUMENT_HYBRID_ALPHA - 1e-4


def test_only_semantic_mode_says_no_close_match(page, front):
    assert DOCUMENT_RELEVANCE_FLOORS["hybrid"] == 0.0
    text = search(page, OFF_TOPIC, "semantic")
    assert "No close match ·" in text and page.locator("#results .no-close-match").is_visible(), text
    text = search(page, OFF_TOPIC, "hybrid")
    assert re.search(r"\d+\+? close match", text) and page.locator("#results .no-close-match").count() == 0, text
