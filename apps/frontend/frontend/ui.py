"""The Gradio page: its layout (search with filters and pages, product editing, sync
status) and each event wired to one handler. The handlers live in ui_search
(SearchHandlers) and ui_edit (EditHandlers); the results' HTML in ui_results; the
page's styles and the result rows' Edit buttons in static/page.css and
static/open_editor.js.

Every handler is stateless: what a later click needs travels in hidden components with
the browser, so any replica can answer any click."""

from __future__ import annotations

from importlib import resources
from typing import Any, TypeVar

import gradio as gr
from gradio.components import Component

from productsearch.search import DEFAULT_MODE, MODES

from frontend.ui_edit import EditHandlers, close_editor, edit_form, wire_edit_form
from frontend.ui_results import ANY_CATEGORY
from frontend.ui_search import SearchHandlers

# The mode control's labels, for a shopper rather than an engineer; the values are
# productsearch.search.MODES.
MODE_LABELS = {
    "hybrid": "Hybrid (words and meaning)",
    "semantic": "Semantic (meaning)",
    "keyword": "Keyword (exact words)",
}
assert set(MODE_LABELS) == set(MODES), "every search mode needs a label"

# Package data (pyproject.toml), read once at import: the page's styles, and the script
# that adds an Edit button to each result row (the rows' data-id attribute is the hook,
# so the results' markup stays the search's own) and opens the editor for that row.
_STATIC = resources.files("frontend") / "static"
CSS = (_STATIC / "page.css").read_text(encoding="utf-8")
OPEN_EDITOR_JS = (_STATIC / "open_editor.js").read_text(encoding="utf-8")


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
