"""Pages over the one search path. A page asks the index for one match more than
it shows, so it knows whether another page exists; a new query starts at page one.
Whether another page exists is decided from the index's matches before any is
dropped (a deleted row whose deletion has not reached the index yet), so a dropped
row never makes a page say it is the last."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from productsearch.documents import normalise_category
from productsearch.search import DEFAULT_MODE, MAX_TOP_K, InvalidSearch, Ranked, SearchFilters, SearchResult

log = logging.getLogger("frontend.search")


@dataclass(frozen=True)
class Page:
    results: list[SearchResult]
    page: int  # 1-based
    page_size: int
    has_more: bool
    capped: bool  # more matches exist past the deepest result the index is asked for
    # Every result the index returned for the page, best first (at least the page's
    # rows; all MAX_TOP_K when asked for with depth): what hits and facets count.
    candidates: list[SearchResult] = field(default_factory=list)

    @property
    def first_rank(self) -> int:
        return (self.page - 1) * self.page_size + 1


def timed_search(search, query: str, top_k: int, filters: SearchFilters, source: str,
                 mode: str = DEFAULT_MODE, *, explain: bool = False) -> list[SearchResult]:
    """search.search in `mode` (productsearch.search.MODES), logged with its duration;
    explain: each result carries its score's parts (ProductSearch.search)."""
    return timed_ranked(search, query, top_k, filters, source, mode, explain=explain).results


def timed_ranked(search, query: str, top_k: int, filters: SearchFilters, source: str,
                 mode: str = DEFAULT_MODE, *, explain: bool = False) -> Ranked:
    """search.search_ranked in `mode`, logged with its duration; explain as timed_search."""
    started = time.perf_counter()
    ranked = search.search_ranked(query, top_k=top_k, filters=filters, mode=mode, explain=explain)
    results = ranked.results
    # The query's length, not its text: queries can carry personal data.
    log.info("search", extra={"source": source, "mode": mode, "query_chars": len(query), "top_k": top_k,
                              "filters": filters.to_index_filter(), "results": len(results),
                              "ms": round((time.perf_counter() - started) * 1000, 1)})
    return ranked


def search_page(search, query: str, filters: SearchFilters, page: int, page_size: int, source: str = "ui",
                mode: str = DEFAULT_MODE, depth: int = 0, explain: bool = False) -> Page:
    """The `page`-th page of `page_size` results. depth: ask the index for at least this
    many matches (capped at MAX_TOP_K), so Page.candidates can be counted (hits,
    facets); a query costs the same read units whatever its top_k. explain: the page's
    results carry their score's parts (ScoreParts). On a document index they are the
    two searches' own scores, which the search returns anyway; on a legacy index they
    are recomputed from the page's records only (ProductSearch.explain: one fetch),
    not from every candidate."""
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise InvalidSearch(f"page must be a positive integer, got {page!r}")
    offset = (page - 1) * page_size
    if offset >= MAX_TOP_K:
        raise InvalidSearch(f"only the top {MAX_TOP_K} results can be paged through")
    wanted = offset + page_size + 1
    top_k = min(max(wanted, depth), MAX_TOP_K)
    # Explained by the search where that is free; otherwise only the shown page's
    # records are fetched to explain them.
    in_search = explain and search.explains_in_search
    ranked = timed_ranked(search, query, top_k, filters, source, mode, explain=in_search)
    results = ranked.results
    shown = results[offset : offset + page_size]
    if explain and not in_search and shown:
        shown = search.explain(query, shown, mode)
    # From the index's matches, not the results: a dropped row must not end the paging.
    has_more = ranked.matched > offset + page_size
    capped = top_k < wanted and ranked.matched >= top_k
    return Page(results=shown, page=page, page_size=page_size, has_more=has_more, capped=capped,
                candidates=results)



# -- relevance floor, hits and facets ---------------------------------------------------
# The score below which a result is no close match, per mode (scores compare within one
# mode only). Chosen on the sample catalog by `python -m benchmarks.relevance_floor`
# (results/relevance-floor.json): the top-score cut-off with the best Youden's J between
# queries built from its products and SciFact's train queries, which no product answers;
# docs/frontend.md, "Relevance floor".
RELEVANCE_FLOORS = {"hybrid": 0.3406, "semantic": 0.2684, "keyword": 0.5332}
# On a document index the semantic score is the same cosine similarity, so its floor
# holds. Its keyword score is Pinecone's BM25, unbounded and returned only for products
# sharing a word, and its hybrid score is min-max normalised per query (productsearch.
# fusion), so the best candidate always scores near 1: neither has a floor that means
# "close" across queries, and every candidate those modes return counts as a hit.
DOCUMENT_RELEVANCE_FLOORS = {"hybrid": 0.0, "semantic": RELEVANCE_FLOORS["semantic"], "keyword": 0.0}


def relevance_floors(index) -> dict[str, float]:
    """The floors for the index serving now: RELEVANCE_FLOORS, or DOCUMENT_RELEVANCE_FLOORS
    for a document index (one whose records need no sparse vectors)."""
    return RELEVANCE_FLOORS if index.needs_sparse else DOCUMENT_RELEVANCE_FLOORS
# Price facet ranges in the catalog's currency, [low, high) with None for no bound: the
# common online-shop steps, spread over the sample catalog's prices ($10 to $1,000).
PRICE_RANGES: tuple[tuple[float | None, float | None], ...] = (
    (None, 100.0), (100.0, 250.0), (250.0, 500.0), (500.0, 750.0), (750.0, None))
# The highest price below a range's upper bound: prices have at most two decimals
# (editing.EditRequest), so an inclusive filter bound of high - 0.01 is exact.
CENT = 0.01


@dataclass(frozen=True)
class Overview:
    """What the page says about a search's candidates (Page.candidates, up to
    MAX_TOP_K, best first): `hits`, those scoring at or above the mode's relevance
    floor; `close` whether there is any; facet counts over the hits: `categories`
    {category as first written: hits} in descending count, `prices` one count per
    PRICE_RANGES entry (a result without a price counts in none)."""

    hits: int
    close: bool
    floor: float
    categories: dict[str, int]
    prices: tuple[int, ...]


def overview(candidates: list[SearchResult], mode: str, floors: dict[str, float] = RELEVANCE_FLOORS) -> Overview:
    """Hits and facets of one search's candidates in `mode` (a MODES value). Counted
    from what the index returned, not from Postgres: a hit is a ranked match above the
    floor, which only the index's scores tell; so counts cover the top MAX_TOP_K."""
    floor = floors[mode]
    hits = [r for r in candidates if r.score >= floor]
    categories: dict[str, int] = {}
    keys: dict[str, str] = {}
    for r in hits:
        shown = keys.setdefault(normalise_category(r.category), r.category)
        categories[shown] = categories.get(shown, 0) + 1
    prices = tuple(sum(1 for r in hits if r.price is not None and (low is None or r.price >= low)
                       and (high is None or r.price < high)) for low, high in PRICE_RANGES)
    ordered = dict(sorted(categories.items(), key=lambda item: (-item[1], item[0])))
    return Overview(hits=len(hits), close=bool(hits), floor=floor, categories=ordered, prices=prices)


def price_range_bounds(index: int) -> tuple[str, str]:
    """The min and max price boxes' text for PRICE_RANGES[index] ("" for no bound).
    Raises IndexError for an index outside PRICE_RANGES."""
    low, high = PRICE_RANGES[index]
    return ("" if low is None else f"{low:g}", "" if high is None else f"{high - CENT:.2f}")


def price_range_label(index: int) -> str:
    low, high = PRICE_RANGES[index]
    if low is None:
        return f"Under ${high:,.0f}"
    if high is None:
        return f"${low:,.0f} and up"
    return f"${low:,.0f}–{high:,.0f}"
