"""The search page's events: a search from the form, a mode or price range picked,
a page turned, the category choices on load, and the Sync status tab's text.

Every handler is stateless: what a later click needs (the query that was run, its
filters and search mode, the page) travels in a hidden component with the browser,
so any replica can answer any click."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import gradio as gr

from productsearch.search import DEFAULT_MODE, MAX_TOP_K, InvalidSearch, SearchFilters, validate_mode, validate_query

from frontend.searching import overview, price_range_bounds, relevance_floors, search_page
from frontend.services import NotReady
from frontend.status import status_markdown
from frontend.ui_results import category_update, facets_html, price_update, results_html

log = logging.getLogger("frontend.ui")


def _filters_text(filters: SearchFilters) -> str:
    parts = []
    if filters.price_min is not None:
        parts.append(f"price ≥ {filters.price_min:g}")
    if filters.price_max is not None:
        parts.append(f"price ≤ {filters.price_max:g}")
    if filters.category:
        parts.append(f"category {filters.category}")
    return ", ".join(parts)


def form_filters(price_min, price_max, category) -> dict[str, Any]:
    """The search form's filter boxes as SearchFilters.parse takes them: blank boxes left out."""
    raw = {"price_min": (price_min or "").strip() or None, "price_max": (price_max or "").strip() or None,
           "category": category or None}
    return {k: v for k, v in raw.items() if v is not None}


def nothing_skipped():
    """The outputs of a search event that leave the page as it is."""
    return tuple(gr.skip() for _ in range(9))


def search_refused(text: str):
    """The outputs of a search event that shows `text` instead of results."""
    return (text, "", "", gr.Button(interactive=False), gr.Button(interactive=False), "", "",
            gr.Dropdown(), gr.Radio())


class SearchHandlers:
    """The search page's handlers, one method per event, and the status tab's. Each
    answers bad input or a failed part with a message in its outputs, never an
    exception (Gradio answers an exception with a 500). Every search event has the
    outputs run() describes."""

    def __init__(self, services):
        self.services = services
        self.page_size = services.settings.page_size

    def known_categories(self) -> list[str]:
        try:
            return self.services.categories()
        except Exception:
            log.warning("categories unavailable", exc_info=True)
            return []

    def run(self, query: str, raw_filters: dict[str, Any], page: int, mode: Any, explain: Any = False):
        """Returns the outputs of every search event: message, results, page label,
        previous and next buttons, the hidden state of the search shown (query,
        filters, mode and page: JSON the browser sends back to turn the page), the
        facets, the category dropdown and the price-range picker."""
        search = self.services.search
        try:
            text = validate_query(query)
            filters = SearchFilters.parse(raw_filters)
            mode = validate_mode(mode)
            started = time.perf_counter()
            result = search_page(search, text, filters, page, self.page_size, mode=mode, depth=MAX_TOP_K,
                                 explain=explain is True)
            took_ms = (time.perf_counter() - started) * 1000
        except InvalidSearch as exc:
            return search_refused(f"⚠️ {exc}")
        except NotReady as exc:
            return search_refused(f"⏳ Search is not ready yet: {exc}. Try again in a few seconds.")
        except Exception as exc:
            log.exception("search failed")
            part = "database" if type(exc).__module__.startswith("psycopg") else "index"
            return search_refused(f"❌ Search is unavailable: the {part} did not answer. Try again shortly.")
        state = json.dumps({"query": text, "filters": raw_filters, "mode": mode, "page": page})
        return self._shown(result, text, filters, mode, page, state, took_ms, explain is True)

    def _shown(self, result, text: str, filters: SearchFilters, mode: str, page: int, state: str, took_ms: float,
               explain: bool):
        """run()'s outputs for a search that answered."""
        where = f" with {_filters_text(filters)}" if _filters_text(filters) else ""
        view = overview(result.candidates, mode, relevance_floors(self.services.index))
        found = self.known_categories()
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
        return (message, results_html(result, text, view, explain), f"Page {page}",
                gr.Button(interactive=page > 1), gr.Button(interactive=result.has_more), state, *extras)

    def new_search(self, query, price_min, price_max, category, mode, explain=False):
        """The Search button and Enter in the query box: page one of the form's search."""
        return self.run(query, form_filters(price_min, price_max, category), 1, mode, explain)

    def switch_mode(self, query, price_min, price_max, category, mode, explain=False):
        """A mode or explain setting picked by the user re-runs the form's
        search from page one; with no query typed there is nothing to re-run and the
        page stays as it is."""
        if not isinstance(query, str) or not query.strip():
            return nothing_skipped()
        return self.new_search(query, price_min, price_max, category, mode, explain)

    def pick_price_range(self, choice, query, category, mode, explain=False):
        """A price range picked from the facets: fills the min and max boxes with its
        bounds and re-runs the search; "" clears both."""
        try:
            low, high = ("", "") if choice in ("", None) else price_range_bounds(int(choice))
        except (ValueError, TypeError, IndexError, OverflowError):  # any JSON value, infinity included
            return (gr.skip(), gr.skip(), *nothing_skipped())
        if not isinstance(query, str) or not query.strip():
            return (low, high, *nothing_skipped())
        return (low, high, *self.new_search(query, low, high, category, mode, explain))

    def turn(self, state_json: str, delta: int, explain: Any = False):
        """The search shown (its hidden state), `delta` pages on."""
        try:
            state = json.loads(state_json) if state_json else None
        except (ValueError, RecursionError):  # the page's state comes from the browser: any text
            state = None
        if not isinstance(state, dict) or not isinstance(state.get("page"), int):
            return search_refused("⚠️ Run a search first.")
        # A state without a mode comes from a page served before modes existed.
        return self.run(state.get("query", ""), state.get("filters") or {}, max(1, state["page"] + delta),
                        state.get("mode", DEFAULT_MODE), explain)

    def previous_page(self, state_json: str, explain: Any = False):
        """The Previous button."""
        return self.turn(state_json, -1, explain)

    def next_page(self, state_json: str, explain: Any = False):
        """The Next button."""
        return self.turn(state_json, +1, explain)

    def categories(self):
        """The category dropdown's choices when the page loads."""
        return category_update(self.known_categories(), None, None)

    def status(self):
        """The Sync status tab's text."""
        try:
            return status_markdown(self.services.status.read())
        except Exception:
            log.exception("status reading failed")
            return "❌ The status could not be read. Try again shortly."

