"""Browser tests: headless Debian Chromium driven by Playwright against the frontend
started on the real local stack (Postgres, moto, index server, pelican, emu)."""

from __future__ import annotations

import json
import re

import pytest

from frontend.ui import MODE_LABELS
from productsearch.search import MODES
from tests.e2e import frontend_stack
from tests.e2e.browser import MARKS, field, settle
from tests.e2e.frontend_stack import EDITOR

pytestmark = MARKS
QUERY = "wireless controller for gaming"


@pytest.fixture(scope="module")
def front(stack):
    with frontend_stack.running(stack, rows=200) as f:
        yield f


# -- helpers -------------------------------------------------------------------------------
def shown(page) -> list[dict]:
    """The results table as the user sees it: rank, id, score, category, price."""
    rows = page.locator("#results tr.result")
    out = []
    for i in range(rows.count()):
        row = rows.nth(i)
        out.append({
            "rank": int(row.get_attribute("data-rank")),
            "id": int(row.get_attribute("data-id")),
            "score": float(row.locator("td.score").inner_text()),
            "category": row.locator("td.category").inner_text().strip(),
            "price": float(row.locator("td.price").inner_text().strip().lstrip("$").replace(",", "")),
        })
    return out


def message(page) -> str:
    return page.locator("#search-message").inner_text()


def _event(inputs: int, marker: str = ""):
    """Matches the answer to one of the page's events by its number of inputs (the
    status panel's timer also posts to the same endpoint)."""
    def match(response) -> bool:
        if "/gradio_api/run/" not in response.url:
            return False
        try:
            data = json.loads(response.request.post_data or "{}").get("data") or []
        except ValueError:
            return False
        return len(data) == inputs and marker in json.dumps(data)
    return match


def search(page, query: str, price_min: str = "", price_max: str = "", category: str | None = None,
           mode: str | None = None) -> str:
    if mode is not None:
        choose_mode(page, mode)
    field(page, "query").fill(query)
    field(page, "price-min").fill(price_min)
    field(page, "price-max").fill(price_max)
    if category is not None:
        choose_category(page, category)
    with page.expect_response(_event(6)):  # the form: query, prices, category, mode, explain
        page.locator("#search-btn").click()
    settle(page)
    return message(page)


def selected_mode(page) -> str:
    checked = [m for m in MODES if page.locator("#mode").get_by_label(MODE_LABELS[m], exact=True).is_checked()]
    assert len(checked) == 1, checked
    return checked[0]


def choose_mode(page, mode: str) -> None:
    """Picks a mode as a user does and waits for the page's answer: with a query in
    the box, the search re-run in that mode; without one, an answer that changes
    nothing (waited for all the same, so a later search's wait cannot catch it)."""
    if selected_mode(page) == mode:
        return
    with page.expect_response(_event(6, f'"{mode}"')):
        page.locator("#mode").get_by_label(MODE_LABELS[mode], exact=True).check()
    settle(page)
    assert selected_mode(page) == mode


def rows_and_scores(rows: list[dict]) -> list[tuple[int, float]]:
    return [(r["id"], round(r["score"], 4)) for r in rows]


def choose_category(page, label: str) -> None:
    page.locator("#category input").click()
    # After a search each label carries the category's hits: "controller (12)".
    page.locator(f'#category li[role="option"][aria-label="{label}"], '
                 f'#category li[role="option"][aria-label^="{label} ("]').first.click()


def turn(page, button: str, expect_first_rank: int) -> None:
    with page.expect_response(_event(2, "page")):  # the search's state and the explain toggle
        page.locator(f"#{button}").click()
    settle(page)
    assert shown(page)[0]["rank"] == expect_first_rank


# -- tests ---------------------------------------------------------------------------------
def test_search_shows_ranked_results_with_scores(page, front):
    text = search(page, QUERY)
    assert "Results 1–10" in text
    rows = shown(page)
    assert [r["rank"] for r in rows] == list(range(1, 11))
    assert all(a["score"] >= b["score"] for a, b in zip(rows, rows[1:]))
    api = front.search(QUERY, top_k=10)
    assert [r["id"] for r in rows] == [r["id"] for r in api]
    assert [r["score"] for r in rows] == pytest.approx([r["score"] for r in api], abs=1e-4)


def test_a_filter_narrows_the_results(page, front):
    query = "innovative plug-and-play technologies"
    search(page, query)
    everything = shown(page)
    assert any(r["category"] != "device" for r in everything)

    search(page, query, category="device")
    devices = shown(page)
    assert devices and all(r["category"] == "device" for r in devices)
    assert [r["id"] for r in devices] == [r["id"] for r in front.search(query, 10, {"category": "device"})]

    text = search(page, query, price_min="100", price_max="300", category="device")
    cheap = shown(page)
    assert cheap and all(r["category"] == "device" and 100 <= r["price"] <= 300 for r in cheap)
    assert "price ≥ 100" in text and "price ≤ 300" in text


def test_paging_walks_the_ranking_and_knows_where_it_ends(page, front):
    search(page, QUERY)
    first = [r["id"] for r in shown(page)]
    assert page.locator("#prev-btn").is_disabled() and page.locator("#next-btn").is_enabled()
    turn(page, "next-btn", 11)
    second = shown(page)
    assert [r["rank"] for r in second] == list(range(11, 21))
    assert first + [r["id"] for r in second] == [r["id"] for r in front.search(QUERY, top_k=20)]
    assert "Page 2" in page.locator("#page-label").inner_text()
    turn(page, "prev-btn", 1)
    assert [r["id"] for r in shown(page)] == first

    # A narrow price range holds 12 rows: two pages, and the second says it is the last.
    prices = sorted(float(r["price"]) for r in front.parts.conn.execute("SELECT price FROM products").fetchall())
    search(page, QUERY, price_min=f"{prices[100]}", price_max=f"{prices[111]}", category="Any category")
    assert len(shown(page)) == 10 and page.locator("#next-btn").is_enabled()
    turn(page, "next-btn", 11)
    assert len(shown(page)) == 2
    assert "last page" in message(page)
    assert page.locator("#next-btn").is_disabled()

    # A new query starts at page one.
    search(page, "quiet kitchen appliance")
    assert shown(page)[0]["rank"] == 1


def test_empty_result_and_bad_input_say_so(page, front):
    text = search(page, QUERY, price_min="999999")
    assert "No products match" in text and shown(page) == []
    assert "query is empty" in search(page, "   ")
    assert shown(page) == []
    assert "non-negative" in search(page, QUERY, price_min="-5")
    assert "greater than price_max" in search(page, QUERY, price_min="500", price_max="100")
    assert "limit is 1000" in search(page, "x" * 10_000)
    assert "must be a number" in search(page, QUERY, price_min="cheap")
    # Markup in a query is text, not HTML.
    search(page, "<img src=x onerror=alert(1)> controller")
    assert page.locator("#results img").count() == 0 and len(shown(page)) == 10


def test_a_sku_is_found_first_and_switching_the_mode_changes_the_ranking(page, front):
    product = front.parts.conn.execute("SELECT id, sku FROM products ORDER BY id OFFSET 123 LIMIT 1").fetchone()
    assert selected_mode(page) == "hybrid"  # the default
    ranked = {}
    for mode in ("hybrid", "keyword"):
        text = search(page, product["sku"], mode=mode)
        assert "Results 1–" in text and f"({mode})" in text, text
        assert selected_mode(page) == mode
        rows = shown(page)
        assert rows[0]["id"] == product["id"] and rows[0]["rank"] == 1
        ranked[mode] = rows_and_scores(rows)

    # Picking another mode re-runs the same query, ranked by meaning alone.
    choose_mode(page, "semantic")
    assert message(page).startswith("Results 1–10 (semantic)"), message(page)
    semantic = shown(page)
    api = front.search(product["sku"], top_k=10, mode="semantic")
    assert [r["id"] for r in semantic] == [r["id"] for r in api]
    assert [r["score"] for r in semantic] == pytest.approx([r["score"] for r in api], abs=1e-4)
    assert rows_and_scores(semantic) != ranked["keyword"] and rows_and_scores(semantic) != ranked["hybrid"]


def test_keyword_search_finds_only_exact_words(page, front):
    text = search(page, "zyxqwv", mode="keyword")  # a word no product has
    assert "No products match this query (keyword)" in text and shown(page) == [], (text, shown(page)[:3])
    assert "Hybrid or Semantic" in text
    choose_mode(page, "semantic")
    assert "(semantic)" in message(page) and len(shown(page)) == 10


def test_a_mode_switch_starts_at_page_one_and_paging_keeps_the_mode(page, front):
    query = "controller for gaming"  # 22 of the 200 rows are controllers: two pages by keyword
    search(page, query, mode="hybrid")
    turn(page, "next-btn", 11)

    choose_mode(page, "keyword")
    first = shown(page)
    assert first[0]["rank"] == 1 and message(page).startswith("Results 1–10 (keyword)")
    assert page.locator("#prev-btn").is_disabled() and page.locator("#next-btn").is_enabled()
    turn(page, "next-btn", 11)
    second = shown(page)
    assert message(page).startswith("Results 11–20 (keyword)"), message(page)
    assert selected_mode(page) == "keyword"
    # Scores, not ids: products sharing a word and a length tie under BM25.
    api = front.search(query, top_k=20, mode="keyword")
    assert [r["score"] for r in first + second] == pytest.approx([r["score"] for r in api], abs=1e-4)
    assert len({r["id"] for r in first + second}) == 20
    turn(page, "prev-btn", 1)
    assert message(page).startswith("Results 1–10 (keyword)")


@pytest.mark.parametrize("mode", MODES)
def test_filters_apply_in_every_mode(page, front, mode):
    query = "plug-and-play device"
    text = search(page, query, category="device", mode=mode)
    rows = shown(page)
    assert f"({mode}) with category device" in text, text
    assert rows and all(r["category"] == "device" for r in rows)
    api = front.search(query, 10, {"category": "device"}, mode=mode)
    assert [r["score"] for r in rows] == pytest.approx([r["score"] for r in api], abs=1e-4)

    search(page, query, price_min="100", price_max="400", category="device")
    rows = shown(page)
    assert rows and all(r["category"] == "device" and 100 <= r["price"] <= 400 for r in rows)
    assert selected_mode(page) == mode


def open_edit(page, pid: int) -> None:
    page.get_by_role("tab", name="Edit product").click()
    field(page, "edit-id").fill(str(pid))
    page.locator("#load-btn").click()
    page.wait_for_function("(pid) => (document.querySelector('#edit-message')?.innerText || '').includes('#' + pid)", arg=pid)


def save(page, username: str, password: str) -> str:
    field(page, "edit-username").fill(username)
    field(page, "edit-password").fill(password)
    with page.expect_response(_event(7)):
        page.locator("#save-btn").click()
    settle(page)
    return page.locator("#edit-message").inner_text()


def test_unauthenticated_edit_is_refused(page, front):
    pid = front.product_ids[20]
    before = front.parts.conn.execute("SELECT description, updated_at FROM products WHERE id = %s", (pid,)).fetchone()
    open_edit(page, pid)
    field(page, "edit-description").fill("Defaced by someone without the password")
    assert "Wrong username or password" in save(page, EDITOR[0], "not-the-password")
    assert "Nothing was saved" in page.locator("#edit-message").inner_text()
    assert "Wrong username or password" in save(page, "", "")
    after = front.parts.conn.execute("SELECT description, updated_at FROM products WHERE id = %s", (pid,)).fetchone()
    assert after == before


def test_bad_edits_are_refused_in_the_ui(page, front):
    pid = front.product_ids[21]
    open_edit(page, pid)
    field(page, "edit-description").fill("")
    assert "description is empty" in save(page, *EDITOR)
    field(page, "edit-description").fill("x" * 10_001)
    assert "the limit is 10,000" in save(page, *EDITOR)
    field(page, "edit-description").fill("fine")
    field(page, "edit-price").fill("-3")
    assert "must not be negative" in save(page, *EDITOR)
    assert front.parts.conn.execute("SELECT count(*) AS n FROM product_changes WHERE product_id = %s",
                                    (pid,)).fetchone()["n"] == 0


def test_authenticated_edit_becomes_searchable(page, front):
    pid = front.product_ids[30]
    new_text = "A waterproof canvas tent for four people with a vestibule"
    open_edit(page, pid)
    field(page, "edit-description").fill(new_text)
    saved = save(page, *EDITOR)
    assert f"Saved product #{pid}" in saved, saved
    page.wait_for_function("() => /Searchable now/.test(document.querySelector('#sync-message')?.innerText || '')",
                           timeout=120_000)

    page.get_by_role("tab", name="Search").click()
    search(page, "waterproof tent for four people")
    top = shown(page)[0]
    assert top["id"] == pid and top["rank"] == 1
    assert new_text in page.locator("#results tr.result").first.inner_text()


def test_status_tab_shows_the_pipeline(page, front):
    page.get_by_role("tab", name="Sync status").click()
    page.locator("#refresh-status").click()
    page.wait_for_function("() => /Vectors in the index/.test(document.querySelector('#status')?.innerText || '')")
    text = page.locator("#status").inner_text()
    assert re.search(r"Rows in the table\s+200", text), text
    assert "dead-letter queue" in text and "oldest unsynced change" in text
