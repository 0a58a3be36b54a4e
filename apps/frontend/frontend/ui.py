"""The Gradio page: search with filters and pages, product editing, sync status.

Every handler is stateless: what a later click needs (the query that was run, its
filters and search mode, the page, an edit's version) travels in hidden components
with the browser, so any replica can answer any click."""

from __future__ import annotations

import html
import json
import logging
import time
from dataclasses import replace
from typing import Any

import gradio as gr

from productsearch.documents import UnindexableProduct, normalise_category
from productsearch.lexical import matching_spans
from productsearch.search import (DEFAULT_MODE, MAX_TOP_K, MODES, InvalidSearch, SearchFilters, validate_mode,
                                  validate_query)

from frontend import editing
from frontend.searching import (PRICE_RANGES, Overview, Page, overview, price_range_bounds, price_range_label,
                                search_page)
from frontend.services import NotReady
from frontend.status import status_markdown

log = logging.getLogger("frontend.ui")

SEARCHABLE_WAIT_S = 180.0
ANY_CATEGORY = ""
# The mode control's labels, for a shopper rather than an engineer; the values are
# productsearch.search.MODES.
MODE_LABELS = {
    "hybrid": "Hybrid (words and meaning)",
    "semantic": "Semantic (meaning)",
    "keyword": "Keyword (exact words)",
}
assert set(MODE_LABELS) == set(MODES), "every search mode needs a label"

# The page's styles. Under 640 px (a phone held upright) each result row becomes a
# card: the table's columns would overflow a 390 px screen.
CSS = """
#results table { width: 100%; border-collapse: collapse; font-size: 0.92rem; border: none !important; }
#results th, #results td { text-align: left; padding: 6px 8px; vertical-align: top;
  border: none !important; border-bottom: 1px solid var(--border-color-primary) !important; }
#results th { border-bottom: 2px solid var(--border-color-primary) !important; }
#results td.num, #results th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
#results td.desc { color: var(--body-text-color); opacity: 0.8; overflow-wrap: anywhere; }
#results .name { font-weight: 600; overflow-wrap: anywhere; }
#results .sku { font-family: var(--font-mono); font-size: 0.8rem; color: var(--body-text-color-subdued);
  white-space: nowrap; }
#results mark { background: #fde68a; color: inherit; padding: 0 1px; border-radius: 2px; }
#results table:not(.explain) .score, #results table:not(.explain) .explain-only { display: none; }
#results tr.floor-divider td { font-size: 0.85rem; color: var(--body-text-color-subdued); padding-top: 14px; }
#results .no-close-match { font-weight: 600; margin: 4px 0 8px; }
#facets { font-size: 0.88rem; }
#facets .facet { margin: 2px 0; }
#facets .count { font-variant-numeric: tabular-nums; color: var(--body-text-color-subdued); }
#page-label { text-align: center; }
@media (max-width: 640px) {
  #results thead { display: none; }
  #results table, #results tbody, #results tr, #results td { display: block; width: auto; }
  #results tr.result { position: relative; padding: 8px 0; border-bottom: 1px solid var(--border-color-primary); }
  #results tr.result td { border: none !important; padding: 2px 4px; text-align: left; }
  #results tr.result td.rank { position: absolute; left: 0; top: 10px; width: 2em; }
  #results tr.result td:not(.rank) { margin-left: 2.2em; }
  #results td.num { text-align: left; }
  #results td.category::before { content: "Category: "; opacity: 0.7; }
  #results td.score::before { content: "Fused "; opacity: 0.7; }
  #results td.dense::before { content: "Dense "; opacity: 0.7; }
  #results td.keyword::before { content: "Keyword "; opacity: 0.7; }
}
"""


def highlighted(text: str, query: str) -> str:
    """`text` as HTML, escaped, with the words it shares with `query` (by the keyword
    side's tokenising: productsearch.lexical.matching_spans) in <mark>."""
    out, at = [], 0
    for start, end in matching_spans(text, query):
        out.append(html.escape(text[at:start]))
        out.append(f"<mark>{html.escape(text[start:end])}</mark>")
        at = end
    out.append(html.escape(text[at:]))
    return "".join(out)


def _part(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def results_html(page: Page, query: str = "", view: Overview | None = None, explain: bool = False) -> str:
    """The results of one page as an HTML table: one `tr.result` per product with its
    `data-id`, `data-rank` and `data-score` (the fused score, shown only with
    `explain`, beside the dense and keyword parts when the results carry them). With
    `view`: a heading when no result reaches the relevance floor, else a divider
    before the first result below it."""
    rows = []
    divided = False
    for offset, r in enumerate(page.results):
        rank = page.first_rank + offset
        if view is not None and view.close and not divided and r.score < view.floor:
            rows.append('<tr class="floor-divider"><td colspan="8">Weaker matches: below the relevance floor</td></tr>')
            divided = True
        description = r.description if len(r.description) <= 400 else r.description[:400] + "…"
        price = "—" if r.price is None else f"${r.price:,.2f}"
        parts = ""
        if explain:
            dense = keyword = None
            if r.parts is not None:
                dense, keyword = r.parts.dense, r.parts.keyword
            parts = f'<td class="num explain-only dense">{_part(dense)}</td><td class="num explain-only keyword">{_part(keyword)}</td>'
        rows.append(
            f'<tr class="result" data-id="{r.id}" data-rank="{rank}" data-score="{r.score:.6f}">'
            f'<td class="num rank">{rank}</td>'
            f'<td class="num score">{r.score:.4f}</td>{parts}'
            f'<td class="product"><div class="name">{highlighted(r.name, query)}</div>'
            f'<div class="sku">{highlighted(r.sku, query)} · #{r.id}</div></td>'
            f'<td class="category">{html.escape(r.category or "—")}</td>'
            f'<td class="num price">{price}</td>'
            f'<td class="desc">{highlighted(description, query)}</td>'
            "</tr>"
        )
    explain_head = '<th class="num explain-only">Dense</th><th class="num explain-only">Keyword</th>' if explain else ""
    head = (f'<tr><th class="num">#</th><th class="num score">{"Fused" if explain else "Score"}</th>{explain_head}'
            '<th>Product</th><th>Category</th><th class="num">Price</th><th>Description</th></tr>')
    heading = ""
    if view is not None and not view.close:
        heading = ('<div class="no-close-match" role="status">No close match for this query. '
                   'The nearest results:</div>')
    table_class = "results explain" if explain else "results"
    return f'{heading}<table class="{table_class}"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def facets_html(view: Overview, mode: str, filters: SearchFilters) -> str:
    """The facet counts of one search: hits per category and per price range (ranges
    with no hit are listed with 0 only when no price filter is set)."""
    if not view.close:
        return ""
    cats = " · ".join(f'<span class="facet-item" data-category="{html.escape(c)}">{html.escape(c or "no category")} '
                      f'<span class="count">{n}</span></span>' for c, n in view.categories.items())
    prices = " · ".join(f'<span class="facet-item" data-range="{i}">{html.escape(price_range_label(i))} '
                        f'<span class="count">{n}</span></span>'
                        for i, n in enumerate(view.prices) if n or (filters.price_min is None and filters.price_max is None))
    return (f'<div class="facet" id="facet-categories"><b>Categories</b>: {cats}</div>'
            f'<div class="facet" id="facet-prices"><b>Price</b>: {prices}</div>')


def category_choices(found: list[str]) -> list[tuple[str, str]]:
    """The dropdown's (label, value) pairs: one per category key, shown as first
    written, since the filter ignores case and `Outdoor` and `outdoor` are one."""
    seen: dict[str, str] = {}
    for category in found:
        seen.setdefault(normalise_category(category), category)
    return [("Any category", ANY_CATEGORY)] + [(c, c) for key, c in seen.items() if key]


def unchecked(component: gr.components.Component) -> gr.components.Component:
    """The component, made to hand its value to the handler unchecked. Gradio's Radio
    refuses a value outside its choices with an error that /gradio_api/run answers as
    500; a direct call to a named event may send anything, so the handler validates
    the value itself (validate_mode) and answers with a message. An instance attribute
    rather than a subclass: Gradio writes a .pyi file beside the module of every
    component subclass it sees defined, which a read-only container filesystem refuses."""
    component.preprocess = lambda payload: payload  # type: ignore[method-assign]
    return component


def _filters_text(filters: SearchFilters) -> str:
    parts = []
    if filters.price_min is not None:
        parts.append(f"price ≥ {filters.price_min:g}")
    if filters.price_max is not None:
        parts.append(f"price ≤ {filters.price_max:g}")
    if filters.category:
        parts.append(f"category {filters.category}")
    return ", ".join(parts)


def build_ui(services) -> gr.Blocks:
    settings = services.settings
    page_size = settings.page_size

    # -- search -----------------------------------------------------------------------
    def category_update(found: list[str], view: Overview | None, filters: SearchFilters | None):
        """The category dropdown, its labels carrying each category's hits for the
        search shown (no count while another category narrows the search)."""
        choices = category_choices(found)
        if view is None:
            return gr.Dropdown(choices=choices)
        counts = {normalise_category(c): n for c, n in view.categories.items()}
        labelled = [("Any category", ANY_CATEGORY)]
        for label, value in choices[1:]:
            n = counts.get(normalise_category(value), 0)
            labelled.append((f"{label} ({n})" if n or not filters.category else label, value))
        return gr.Dropdown(choices=labelled)

    def price_update(view: Overview | None, filters: SearchFilters | None):
        """The price-range picker, each range labelled with its hits for the search shown."""
        bounded = filters is not None and (filters.price_min is not None or filters.price_max is not None)
        choices = [("Any price", "")]
        for i in range(len(PRICE_RANGES)):
            label = price_range_label(i)
            if view is not None and (view.prices[i] or not bounded):
                label += f" ({view.prices[i]})"
            choices.append((label, str(i)))
        return gr.Radio(choices=choices)

    def known_categories() -> list[str]:
        try:
            return services.categories()
        except Exception:
            log.warning("categories unavailable", exc_info=True)
            return []

    def run(query: str, raw_filters: dict[str, Any], page: int, mode: Any, explain: Any = False):
        """Returns the outputs of every search event: message, results, page label,
        previous and next buttons, the hidden state of the search shown (query,
        filters, mode and page: JSON the browser sends back to turn the page), the
        facets, the category dropdown and the price-range picker."""
        def nothing(text: str):
            return (text, "", "", gr.Button(interactive=False), gr.Button(interactive=False), "", "",
                    gr.Dropdown(), gr.Radio())
        try:
            text = validate_query(query)
            filters = SearchFilters.parse(raw_filters)
            mode = validate_mode(mode)
            started = time.perf_counter()
            result = search_page(services.search, text, filters, page, page_size, mode=mode, depth=MAX_TOP_K)
            took_ms = (time.perf_counter() - started) * 1000
            if explain is True and result.results:
                result = replace(result, results=services.search.explain(text, result.results, mode))
        except InvalidSearch as exc:
            return nothing(f"⚠️ {exc}")
        except NotReady as exc:
            return nothing(f"⏳ Search is not ready yet: {exc}. Try again in a few seconds.")
        except Exception as exc:
            log.exception("search failed")
            part = "database" if type(exc).__module__.startswith("psycopg") else "index"
            return nothing(f"❌ Search is unavailable: the {part} did not answer. Try again shortly.")
        state = json.dumps({"query": text, "filters": raw_filters, "mode": mode, "page": page})
        where = f" with {_filters_text(filters)}" if _filters_text(filters) else ""
        view = overview(result.candidates, mode)
        found = known_categories()
        extras = (facets_html(view, mode, filters), category_update(found, view, filters), price_update(view, filters))
        if not result.results:
            if page == 1:
                message = f"No products match this query ({mode}){where}."
                if mode == "keyword":
                    message += " Keyword search finds only the query's exact words; Hybrid or Semantic also find related products."
            else:
                message = f"No more results ({mode}){where}."
            return (message, "", f"Page {page}", gr.Button(interactive=page > 1), gr.Button(interactive=False), state,
                    *extras)
        first, last = result.first_rank, result.first_rank + len(result.results) - 1
        message = f"Results {first}–{last} ({mode}){where}, best match first."
        if not result.has_more:
            message += " That is the last page." if not result.capped else f" Only the top {MAX_TOP_K} can be paged through; refine the query to see others."
        # The hits are counted among the candidates the index returned (MAX_TOP_K at most).
        more = "+" if view.hits >= MAX_TOP_K else ""
        hits = f"{view.hits}{more} close match{'es' if view.hits != 1 else ''}" if view.close else "No close match"
        message += f" {hits} · {took_ms:.0f} ms on the server"
        return (message, results_html(result, text, view, explain is True), f"Page {page}",
                gr.Button(interactive=page > 1), gr.Button(interactive=result.has_more), state, *extras)

    def form_filters(price_min, price_max, category) -> dict[str, Any]:
        raw = {"price_min": (price_min or "").strip() or None, "price_max": (price_max or "").strip() or None,
               "category": category or None}
        return {k: v for k, v in raw.items() if v is not None}

    def new_search(query, price_min, price_max, category, mode, explain=False):
        return run(query, form_filters(price_min, price_max, category), 1, mode, explain)

    def switch_mode(query, price_min, price_max, category, mode, explain=False):
        """A mode or explain setting picked by the user re-runs the form's
        search from page one; with no query typed there is nothing to re-run and the
        page stays as it is."""
        if not isinstance(query, str) or not query.strip():
            return tuple(gr.skip() for _ in range(9))
        return new_search(query, price_min, price_max, category, mode, explain)

    def pick_price_range(choice, query, category, mode, explain=False):
        """A price range picked from the facets: fills the min and max boxes with its
        bounds and re-runs the search; "" clears both."""
        try:
            low, high = ("", "") if choice in ("", None) else price_range_bounds(int(choice))
        except (ValueError, TypeError, IndexError):
            return (gr.skip(), gr.skip(), *nothing_skipped())
        if not isinstance(query, str) or not query.strip():
            return (low, high, *nothing_skipped())
        return (low, high, *new_search(query, low, high, category, mode, explain))

    def nothing_skipped():
        return tuple(gr.skip() for _ in range(9))

    def turn(state_json: str, delta: int, explain: Any = False):
        try:
            state = json.loads(state_json) if state_json else None
        except (ValueError, RecursionError):  # the page's state comes from the browser: any text
            state = None
        if not isinstance(state, dict) or not isinstance(state.get("page"), int):
            return ("⚠️ Run a search first.", "", "", gr.Button(interactive=False), gr.Button(interactive=False), "",
                    "", gr.Dropdown(), gr.Radio())
        # A state without a mode comes from a page served before modes existed.
        return run(state.get("query", ""), state.get("filters") or {}, max(1, state["page"] + delta),
                   state.get("mode", DEFAULT_MODE), explain)

    def categories():
        return category_update(known_categories(), None, None)

    # -- editing ------------------------------------------------------------------------
    def load_product(raw_id):
        try:
            pid = editing.validate_product_id(raw_id)
            row = editing.get_product(services.pool, pid)
        except (editing.InvalidEdit, editing.NotFound) as exc:
            return gr.Textbox(), gr.Textbox(), gr.Textbox(), f"⚠️ {exc}"
        except Exception:
            log.exception("load product failed")
            return gr.Textbox(), gr.Textbox(), gr.Textbox(), "❌ The database did not answer. Try again shortly."
        return (row["name"], row["description"], str(row["price"]),
                f"Loaded product #{pid} ({html.escape(row['sku'])}). Edit and save with the editor credentials.")

    def save(raw_id, name, description, price, username, password, request: gr.Request):
        idle = ("", gr.Timer(active=False))
        client = request.client.host if request is not None and request.client else None
        try:
            editor = editing.authenticate(settings.editor, username, password, client=client,
                                          throttle=services.login_throttle, source="ui")
        except editing.EditingDisabled as exc:
            return (f"⛔ {exc}. Nothing was saved.", "", *idle)
        except editing.Throttled as exc:
            return (f"⛔ {str(exc).capitalize()}. Nothing was saved.", "", *idle)
        except editing.Unauthorized:
            return ("⛔ Wrong username or password. Nothing was saved.", "", *idle)
        try:
            pid = editing.validate_product_id(raw_id)
            # The form always sends all three fields; each must be filled in.
            for field, value in (("name", name), ("description", description), ("price", price)):
                if not isinstance(value, str) or not value.strip():
                    raise editing.InvalidEdit(f"{field} is empty")
            changes = editing.validate_changes({"name": name, "description": description, "price": price.strip()})
            result = editing.apply_edit(services.pool, pid, changes, editor, settings.embedding.text_template)
        except (editing.InvalidEdit, editing.NotFound, UnindexableProduct) as exc:
            return (f"⚠️ {exc}. Nothing was saved.", "", *idle)
        except Exception:
            log.exception("edit failed")
            return ("❌ The database did not answer. Nothing was saved; try again shortly.", "", *idle)
        if result.version is None:
            return (f"Product #{pid} already has these values; nothing to save.", "", *idle)
        state = json.dumps({"id": pid, "version": result.version, "saved_at": time.time()})
        return (f"✅ Saved product #{pid} ({', '.join(result.changed)}).",
                "⏳ Waiting for the change to reach the index…", state, gr.Timer(active=True))

    def poll(state_json: str):
        try:
            state = json.loads(state_json)
            pid, version, saved_at = int(state["id"]), int(state["version"]), float(state["saved_at"])
        except (ValueError, TypeError, KeyError, RecursionError):
            return "", "", gr.Timer(active=False)
        waited = max(0.0, time.time() - saved_at)
        try:
            sync = editing.sync_state(services.index, services.pool, pid, settings.embedding.text_template, version)
        except Exception as exc:
            log.warning("sync check failed", extra={"product_id": pid, "error_type": type(exc).__name__})
            sync = None
        if sync is not None and sync.searchable:
            return (f"🔎 Searchable now: product #{pid} is in the index at version {sync.indexed_version} "
                    f"({waited:.0f} s after saving).", "", gr.Timer(active=False))
        if waited > SEARCHABLE_WAIT_S:
            return (f"⚠️ Not searchable after {waited:.0f} s. The change is saved; see the Sync status tab.",
                    "", gr.Timer(active=False))
        return f"⏳ Waiting for the change to reach the index… ({waited:.0f} s)", state_json, gr.Timer(active=True)

    # -- status --------------------------------------------------------------------------
    def status():
        return status_markdown(services.status.read())

    # -- layout ----------------------------------------------------------------------------
    # Gradio's cache (files it serves) is emptied hourly of anything over an hour old.
    with gr.Blocks(title="Product search", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Product search\nBy default a product ranks by both the words it shares with the query "
                    "(highlighted; a SKU or model number is found) and its meaning, best match first. Pick "
                    "*Semantic* or *Keyword* to rank by one alone.")
        with gr.Tab("Search", id="search-tab"):
            with gr.Row(equal_height=True):
                query = gr.Textbox(label="Search", placeholder="e.g. wireless controller for gaming, or a SKU",
                                   elem_id="query", scale=5, max_lines=1, autofocus=True)
                search_btn = gr.Button("Search", variant="primary", elem_id="search-btn", scale=0, min_width=140)
            mode = unchecked(gr.Radio(label="Search mode", choices=[(MODE_LABELS[m], m) for m in MODES],
                                      value=DEFAULT_MODE, elem_id="mode"))
            with gr.Row(equal_height=True):
                # Text, not gr.Number: an empty box means "no bound", where a Number would send 0.
                price_min = gr.Textbox(label="Min price", placeholder="no minimum", max_lines=1, elem_id="price-min")
                price_max = gr.Textbox(label="Max price", placeholder="no maximum", max_lines=1, elem_id="price-max")
                # allow_custom_value: Gradio checks a value against the choices this process
                # built the page with, and the real choices arrive per browser on load, so a
                # click answered by another replica (or a direct API call) would be refused.
                # SearchFilters.parse validates the category instead.
                category = gr.Dropdown(label="Category", choices=[("Any category", ANY_CATEGORY)],
                                       value=ANY_CATEGORY, elem_id="category", allow_custom_value=True)
            # Its values are indexes into PRICE_RANGES; pick_price_range checks them.
            price_range = unchecked(gr.Radio(label="Price range", choices=[("Any price", "")], value="",
                                             elem_id="price-range"))
            explain = gr.Checkbox(label="Explain scores (dense, keyword, fused; for engineers)", value=False,
                                  elem_id="explain", container=False)
            message = gr.Markdown(elem_id="search-message")
            facets = gr.HTML(elem_id="facets")
            results = gr.HTML(elem_id="results")
            with gr.Row():
                prev_btn = gr.Button("← Previous", interactive=False, elem_id="prev-btn", size="sm")
                page_label = gr.Markdown(elem_id="page-label")
                next_btn = gr.Button("Next →", interactive=False, elem_id="next-btn", size="sm")
            search_state = gr.Textbox(visible=False, elem_id="search-state")

        with gr.Tab("Edit product", id="edit-tab"):
            if settings.editing_enabled:
                gr.Markdown("Edit a product by its id (shown as #id under each result). Saving needs the editor "
                            "credentials; the change then flows through the sync pipeline, and this page says when "
                            "the new text is searchable.")
            else:
                gr.Markdown("**Editing is disabled**: no editor credentials are configured "
                            "(EDITOR_USERNAME and EDITOR_PASSWORD). Search works as usual.", elem_id="editing-disabled")
            with gr.Row(equal_height=True):
                product_id = gr.Textbox(label="Product id", max_lines=1, elem_id="edit-id", scale=3)
                load_btn = gr.Button("Load", elem_id="load-btn", scale=0, min_width=140)
            name = gr.Textbox(label="Name", max_lines=1, elem_id="edit-name")
            description = gr.Textbox(label="Description", lines=4, elem_id="edit-description")
            price = gr.Textbox(label="Price", max_lines=1, elem_id="edit-price")
            with gr.Row():
                username = gr.Textbox(label="Editor username", max_lines=1, elem_id="edit-username")
                password = gr.Textbox(label="Editor password", type="password", max_lines=1, elem_id="edit-password")
            save_btn = gr.Button("Save", variant="primary", interactive=settings.editing_enabled, elem_id="save-btn")
            edit_message = gr.Markdown(elem_id="edit-message")
            sync_message = gr.Markdown(elem_id="sync-message")
            edit_state = gr.Textbox(visible=False, elem_id="edit-state")
            poll_timer = gr.Timer(1.0, active=False)

        with gr.Tab("Sync status", id="status-tab"):
            gr.Markdown("How far the index is behind the table. Edits show up in the change log, then the queue, "
                        "then the index.")
            status_md = gr.Markdown(elem_id="status")
            refresh_btn = gr.Button("Refresh", size="sm", elem_id="refresh-status")
            status_timer = gr.Timer(10.0)

        # Named events: plain HTTP posts to /gradio_api/run/<name>, answerable by any replica.
        outputs = [message, results, page_label, prev_btn, next_btn, search_state, facets, category, price_range]
        opts = dict(queue=False, show_progress="minimal")
        form = [query, price_min, price_max, category, mode, explain]
        search_btn.click(new_search, form, outputs, api_name="ui_search", **opts)
        query.submit(new_search, form, outputs, api_name=False, **opts)
        # .input, not .change: only a user's pick re-runs the search, never a value set by code.
        mode.input(switch_mode, form, outputs, api_name=False, **opts)
        explain.input(switch_mode, form, outputs, api_name=False, **opts)
        price_range.input(pick_price_range, [price_range, query, category, mode, explain],
                          [price_min, price_max, *outputs], api_name=False, **opts)
        prev_btn.click(lambda s, e=False: turn(s, -1, e), [search_state, explain], outputs, api_name="ui_previous_page", **opts)
        next_btn.click(lambda s, e=False: turn(s, +1, e), [search_state, explain], outputs, api_name="ui_next_page", **opts)
        load_btn.click(load_product, [product_id], [name, description, price, edit_message], api_name="ui_load", **opts)
        save_btn.click(save, [product_id, name, description, price, username, password],
                       [edit_message, sync_message, edit_state, poll_timer], api_name="ui_save", **opts)
        poll_timer.tick(poll, [edit_state], [sync_message, edit_state, poll_timer], api_name="ui_poll_edit",
                        queue=False, show_progress="hidden")
        refresh_btn.click(status, None, [status_md], api_name="ui_status", **opts)
        status_timer.tick(status, None, [status_md], api_name=False, queue=False, show_progress="hidden")
        demo.load(categories, None, [category], api_name=False, queue=False)
        demo.load(status, None, [status_md], api_name=False, queue=False)
    return demo
