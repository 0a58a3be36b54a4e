"""The search page's HTML and control updates for one search: the results table with
its highlighted words, the facet counts, and the category and price-range pickers
labelled with their hits. Pure functions of a search's result: no Gradio events."""

from __future__ import annotations

import html

import gradio as gr

from productsearch.documents import normalise_category
from productsearch.lexical import matching_spans
from productsearch.search import SearchFilters

from frontend.searching import PRICE_RANGES, Overview, Page, price_range_label

ANY_CATEGORY = ""


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

