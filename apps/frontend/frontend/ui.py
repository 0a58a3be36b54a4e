"""The Gradio page: search with filters and pages, product editing, sync status.

Every handler is stateless: what a later click needs (the query that was run, its
filters and search mode, the page, an edit's version) travels in hidden components
with the browser, so any replica can answer any click."""

from __future__ import annotations

import html
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import gradio as gr
from gradio.components import Component

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
#results .edit-result { font-size: 0.8rem; padding: 2px 10px; border-radius: 6px; cursor: pointer;
  border: 1px solid var(--border-color-primary); background: var(--button-secondary-background-fill); }
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


_C = TypeVar("_C", bound=Component)


def unchecked(component: _C) -> _C:
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


# -- editing ------------------------------------------------------------------------
def _bound(raw: Any) -> tuple[int, int] | None:
    """The (id, version) of the product a form loaded, from its hidden state (JSON the
    browser sends back: any text); None when nothing valid was loaded."""
    try:
        state = json.loads(raw) if isinstance(raw, str) and raw else None
        if not isinstance(state, dict):
            return None
        return editing.validate_product_id(state.get("id")), editing.validate_version(state.get("version"))
    except (ValueError, RecursionError):  # InvalidEdit is a ValueError
        return None


def _current_state_text(row: dict[str, Any]) -> str:
    shown = editing.product_json(row)
    price = "no valid price" if shown["price"] is None else f"${shown['price']:,.2f}"
    description = shown["description"] if len(shown["description"]) <= 200 else shown["description"][:200] + "…"
    return f"**{html.escape(shown['name'])}**, {price}: {html.escape(description)}"


class EditHandlers:
    """The edit form's handlers, shared by the Edit product tab and the editor opened
    from a result row. Each edit is bound to the product the form loaded and the
    version it was loaded at (hidden state `loaded`, JSON {"id", "version"}): a save
    writes that product only while it still holds that version (editing.apply_edit),
    whatever the id box says now. Every handler answers bad input with a message in
    its outputs, never an exception: Gradio answers an exception with a 500."""

    def __init__(self, services):
        self.services = services
        self.settings = services.settings

    def load(self, raw_id: Any):
        """Outputs: name, description, price, message, loaded state, reload button."""
        keep = (gr.skip(), gr.skip(), gr.skip())
        try:
            pid = editing.validate_product_id(raw_id)
            row = editing.get_product(self.services.pool, pid)
        except (editing.InvalidEdit, editing.NotFound) as exc:
            return (*keep, f"⚠️ {exc}", gr.skip(), gr.skip())
        except Exception:
            log.exception("load product failed")
            return (*keep, "❌ The database did not answer. Try again shortly.", gr.skip(), gr.skip())
        loaded = json.dumps({"id": pid, "version": row["version"]})
        return (row["name"], row["description"], str(row["price"]),
                f"Loaded product #{pid} ({html.escape(row['sku'])}). Edit and save with the editor credentials.",
                loaded, gr.Button(visible=False))

    def reload(self, loaded_json: Any):
        """Loads the bound product again, at its current version (after a conflict)."""
        bound = _bound(loaded_json)
        if bound is None:
            return (gr.skip(), gr.skip(), gr.skip(), "⚠️ Load a product first.", gr.skip(), gr.skip())
        return self.load(bound[0])

    def save(self, raw_id: Any, loaded_json: Any, name: Any, description: Any, price: Any, username: Any,
             password: Any, request: gr.Request):
        """The Edit tab's save: the product in the id box must be the one loaded."""
        bound = _bound(loaded_json)
        if bound is not None and isinstance(raw_id, str) and raw_id.strip() and raw_id.strip() != str(bound[0]):
            return self._refused(f"⚠️ The form holds product #{bound[0]}, but the id box says {raw_id.strip()[:40]!r}. "
                                 f"Load that product first to edit it. Nothing was saved.")
        return self.save_bound(loaded_json, name, description, price, username, password, request)

    def save_bound(self, loaded_json: Any, name: Any, description: Any, price: Any, username: Any, password: Any,
                   request: gr.Request):
        """Outputs: message, sync message, edit state (what the poll waits for), poll
        timer, loaded state, reload button."""
        client = request.client.host if request is not None and request.client else None
        try:
            editor = editing.authenticate(self.settings.editor, username, password, client=client,
                                          throttle=self.services.login_throttle, source="ui")
        except editing.EditingDisabled as exc:
            return self._refused(f"⛔ {exc}. Nothing was saved.")
        except editing.Throttled as exc:
            return self._refused(f"⛔ {str(exc).capitalize()}. Nothing was saved.")
        except editing.Unauthorized:
            return self._refused("⛔ Wrong username or password. Nothing was saved.")
        bound = _bound(loaded_json)
        if bound is None:
            return self._refused("⚠️ Load a product first: an edit applies to the product and version it was "
                                 "loaded at. Nothing was saved.")
        pid, version = bound
        try:
            # The form always sends all three fields; each must be filled in.
            for field, value in (("name", name), ("description", description), ("price", price)):
                if not isinstance(value, str) or not value.strip():
                    raise editing.InvalidEdit(f"{field} is empty")
            changes = editing.validate_changes({"name": name, "description": description, "price": price.strip()})
            result = editing.apply_edit(self.services.pool, pid, changes, editor, self.settings.embedding.text_template,
                                        expected_version=version)
        except editing.Conflict as exc:
            return self._refused(
                f"⚠️ Product #{pid} was changed by someone else since you loaded it (version {version}, now "
                f"{exc.current['version']}). Nothing was saved. It now reads: {_current_state_text(exc.current)}. "
                "Press Reload to edit the current state; your changes stay in the form until you do.",
                reload=True)
        except (editing.InvalidEdit, editing.NotFound, UnindexableProduct) as exc:
            return self._refused(f"⚠️ {exc}. Nothing was saved.")
        except Exception:
            log.exception("edit failed")
            return self._refused("❌ The database did not answer. Nothing was saved; try again shortly.")
        loaded = json.dumps({"id": pid, "version": result.current_version})
        if result.version is None:
            return (f"Product #{pid} already has these values; nothing to save.", "", "", gr.Timer(active=False),
                    loaded, gr.Button(visible=False))
        state = json.dumps({"id": pid, "version": result.version, "saved_at": time.time()})
        return (f"✅ Saved product #{pid} ({', '.join(result.changed)}).",
                "⏳ Waiting for the change to reach the index…", state, gr.Timer(active=True), loaded,
                gr.Button(visible=False))

    @staticmethod
    def _refused(message: str, reload: bool = False):
        return (message, "", "", gr.Timer(active=False), gr.skip(), gr.Button(visible=True) if reload else gr.skip())

    def poll(self, state_json: Any):
        """Outputs: sync message, edit state, poll timer."""
        try:
            state = json.loads(state_json)
            pid = editing.validate_product_id(state["id"])
            version = editing.validate_version(state["version"])
            saved_at = float(state["saved_at"])
            if not math.isfinite(saved_at):
                raise ValueError("saved_at is not finite")
        except (ValueError, TypeError, KeyError, RecursionError):
            return "", "", gr.Timer(active=False)
        waited = max(0.0, time.time() - saved_at)
        try:
            sync = editing.sync_state(self.services.index, self.services.pool, pid,
                                      self.settings.embedding.text_template, version)
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

    def open_result(self, raw_id: Any):
        """Opens the editor under the results for the product of a result row.
        Outputs: the editor group, its heading, then load's outputs."""
        name, description, price, message, loaded, reload_btn = self.load(raw_id)
        if not isinstance(loaded, str):
            return (gr.Group(visible=True), "", name, description, price, message, loaded, reload_btn)
        pid = json.loads(loaded)["id"]
        return (gr.Group(visible=True), f"### Edit product #{pid}", name, description, price, message, loaded,
                reload_btn)


# Adds an Edit button to each result row (the rows' data-id attribute is the hook, so
# the results' markup stays the search's own) and opens the editor for that row.
OPEN_EDITOR_JS = """
() => {
  const addButtons = () => {
    for (const row of document.querySelectorAll('#results [data-id]')) {
      if (row.querySelector('.edit-result')) continue;
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'edit-result';
      button.textContent = 'Edit';
      button.setAttribute('aria-label', 'Edit product #' + row.dataset.id);
      if (row.tagName === 'TR') { const cell = document.createElement('td'); cell.appendChild(button); row.appendChild(cell); }
      else { row.appendChild(button); }
    }
  };
  // The button carries no data-id of its own, so adding it never matches the selector again.
  new MutationObserver(addButtons).observe(document.body, {childList: true, subtree: true});
  document.addEventListener('click', (event) => {
    const button = event.target.closest && event.target.closest('#results .edit-result');
    if (!button) return;
    window.productsearchEditId = button.closest('[data-id]').dataset.id;
    document.querySelector('#open-editor-btn').click();
  });
}
"""


@dataclass
class EditForm:
    """The components of one edit form (edit_form); `prefix` names their elem_ids."""

    name: gr.Textbox
    description: gr.Textbox
    price: gr.Textbox
    username: gr.Textbox
    password: gr.Textbox
    save: gr.Button
    reload: gr.Button
    message: gr.Markdown
    sync_message: gr.Markdown
    edit_state: gr.Textbox  # the saved edit the poll waits for
    loaded: gr.Textbox  # the product and version the form holds: {"id", "version"}
    timer: gr.Timer

    @property
    def load_outputs(self) -> list:
        return [self.name, self.description, self.price, self.message, self.loaded, self.reload]

    @property
    def save_inputs(self) -> list:
        return [self.loaded, self.name, self.description, self.price, self.username, self.password]

    @property
    def save_outputs(self) -> list:
        return [self.message, self.sync_message, self.edit_state, self.timer, self.loaded, self.reload]


def edit_form(prefix: str, enabled: bool) -> EditForm:
    """The fields, credentials, buttons and messages of an edit form, laid out where
    it is called (inside a gr.Blocks context)."""
    name = gr.Textbox(label="Name", max_lines=1, elem_id=f"{prefix}-name")
    description = gr.Textbox(label="Description", lines=4, elem_id=f"{prefix}-description")
    price = gr.Textbox(label="Price", max_lines=1, elem_id=f"{prefix}-price")
    with gr.Row():
        username = gr.Textbox(label="Editor username", max_lines=1, elem_id=f"{prefix}-username")
        password = gr.Textbox(label="Editor password", type="password", max_lines=1, elem_id=f"{prefix}-password")
    with gr.Row():
        save = gr.Button("Save", variant="primary", interactive=enabled, elem_id=f"{prefix}-save" if prefix != "edit" else "save-btn")
        reload = gr.Button("Reload", visible=False, elem_id=f"{prefix}-reload")
    message = gr.Markdown(elem_id=f"{prefix}-message")
    sync_message = gr.Markdown(elem_id=f"{prefix}-sync-message" if prefix != "edit" else "sync-message")
    edit_state = gr.Textbox(visible=False)
    loaded = gr.Textbox(visible=False)
    timer = gr.Timer(1.0, active=False)
    return EditForm(name, description, price, username, password, save, reload, message, sync_message, edit_state,
                    loaded, timer)


def wire_edit_form(edit: EditHandlers, form: EditForm, opts: dict[str, Any], api_prefix: str) -> None:
    """The events every edit form shares: Reload (after a conflict) and the poll that
    says when the saved edit is searchable."""
    form.reload.click(edit.reload, [form.loaded], form.load_outputs, api_name=f"{api_prefix}_reload", **opts)
    form.timer.tick(edit.poll, [form.edit_state], [form.sync_message, form.edit_state, form.timer],
                    api_name="ui_poll_edit" if api_prefix == "ui" else f"{api_prefix}_poll", queue=False,
                    show_progress="hidden")


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


def close_editor():
    """The result editor's Close button: hides the editor."""
    return gr.Group(visible=False)


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
            result = search_page(search, text, filters, page, self.page_size, mode=mode, depth=MAX_TOP_K)
            took_ms = (time.perf_counter() - started) * 1000
            if explain is True and result.results:
                result = replace(result, results=search.explain(text, result.results, mode))
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
        view = overview(result.candidates, mode)
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


def build_ui(services) -> gr.Blocks:
    """The page: its layout, and each event wired to its handler (SearchHandlers,
    EditHandlers)."""
    settings = services.settings
    search = SearchHandlers(services)
    edit = EditHandlers(services)

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
            result_parts = None
            if settings.editing_enabled:
                with gr.Group(visible=False, elem_id="result-editor") as result_editor:
                    result_heading = gr.Markdown(elem_id="result-edit-heading")
                    result_form = edit_form("result-edit", True)
                    close_btn = gr.Button("Close the editor", size="sm", elem_id="result-edit-close")
                # Clicked by OPEN_EDITOR_JS from a result row's Edit button; the row's id
                # reaches the handler through the event's js, never through a visible box.
                open_id = gr.Textbox(visible=False)
                open_btn = gr.Button("Open", visible="hidden", elem_id="open-editor-btn")
                result_parts = (result_editor, result_heading, result_form, close_btn, open_id, open_btn)

        with gr.Tab("Edit product", id="edit-tab"):
            if settings.editing_enabled:
                gr.Markdown("Edit a product by its id (shown as #id under each result, whose Edit button opens it "
                            "on the search page too). Saving needs the editor credentials and applies to the product "
                            "as it was loaded: if someone else saved it since, nothing is saved and the page offers "
                            "to reload. The change then flows through the sync pipeline, and this page says when the "
                            "new text is searchable.")
            else:
                gr.Markdown("**Editing is disabled**: no editor credentials are configured "
                            "(EDITOR_USERNAME and EDITOR_PASSWORD). Search works as usual.", elem_id="editing-disabled")
            with gr.Row(equal_height=True):
                product_id = gr.Textbox(label="Product id", max_lines=1, elem_id="edit-id", scale=3)
                load_btn = gr.Button("Load", elem_id="load-btn", scale=0, min_width=140)
            tab_form = edit_form("edit", settings.editing_enabled)

        with gr.Tab("Sync status", id="status-tab"):
            gr.Markdown("How far the index is behind the table. Edits show up in the change log, then the queue, "
                        "then the index.")
            status_md = gr.Markdown(elem_id="status")
            refresh_btn = gr.Button("Refresh", size="sm", elem_id="refresh-status")
            status_timer = gr.Timer(10.0)

        # Named events: plain HTTP posts to /gradio_api/run/<name>, answerable by any replica.
        outputs = [message, results, page_label, prev_btn, next_btn, search_state, facets, category, price_range]
        opts: dict[str, Any] = dict(queue=False, show_progress="minimal")
        form = [query, price_min, price_max, category, mode, explain]
        search_btn.click(search.new_search, form, outputs, api_name="ui_search", **opts)
        query.submit(search.new_search, form, outputs, api_name=False, **opts)
        # .input, not .change: only a user's pick re-runs the search, never a value set by code.
        mode.input(search.switch_mode, form, outputs, api_name=False, **opts)
        explain.input(search.switch_mode, form, outputs, api_name=False, **opts)
        price_range.input(search.pick_price_range, [price_range, query, category, mode, explain],
                          [price_min, price_max, *outputs], api_name=False, **opts)
        prev_btn.click(search.previous_page, [search_state, explain], outputs, api_name="ui_previous_page", **opts)
        next_btn.click(search.next_page, [search_state, explain], outputs, api_name="ui_next_page", **opts)
        wire_edit_form(edit, tab_form, opts, "ui")
        load_btn.click(edit.load, [product_id], tab_form.load_outputs, api_name="ui_load", **opts)
        tab_form.save.click(edit.save, [product_id, *tab_form.save_inputs], tab_form.save_outputs, api_name="ui_save",
                            **opts)
        if result_parts is not None:
            result_editor, result_heading, result_form, close_btn, open_id, open_btn = result_parts
            wire_edit_form(edit, result_form, opts, "ui_result")
            result_form.save.click(edit.save_bound, result_form.save_inputs, result_form.save_outputs,
                                   api_name="ui_result_save", **opts)
            open_btn.click(edit.open_result, [open_id], [result_editor, result_heading, *result_form.load_outputs],
                           api_name="ui_open_result", js="(given) => window.productsearchEditId ?? given", **opts)
            close_btn.click(close_editor, None, [result_editor], api_name=False, **opts)
            demo.load(None, None, None, js=OPEN_EDITOR_JS, api_name=False)
        refresh_btn.click(search.status, None, [status_md], api_name="ui_status", **opts)
        status_timer.tick(search.status, None, [status_md], api_name=False, queue=False, show_progress="hidden")
        demo.load(search.categories, None, [category], api_name=False, queue=False)
        demo.load(search.status, None, [status_md], api_name=False, queue=False)
    # A direct call to an event (/gradio_api/run/<name>) may send fewer values than the
    # event has inputs; Gradio answers that with a 500 and a traceback in the log. The
    # missing values are read as absent instead, and each handler's own validation
    # answers with a message, as for any other bad value.
    demo.validate_inputs = _absent_as_none  # type: ignore[method-assign]
    return demo


def _absent_as_none(block_fn, inputs: list[Any]) -> None:
    missing = len(block_fn.inputs) - len(inputs)
    if missing > 0:
        inputs.extend([None] * missing)
