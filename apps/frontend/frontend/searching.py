"""Pages over the one search path. A page asks the index for one match more than
it shows, so it knows whether another page exists; a new query starts at page one.
Whether another page exists is decided from the index's matches before any is
dropped (a deleted row whose deletion has not reached the index yet), so a dropped
row never makes a page say it is the last."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from productsearch.search import DEFAULT_MODE, MAX_TOP_K, InvalidSearch, Ranked, SearchFilters, SearchResult

log = logging.getLogger("frontend.search")


@dataclass(frozen=True)
class Page:
    results: list[SearchResult]
    page: int  # 1-based
    page_size: int
    has_more: bool
    capped: bool  # more matches exist past the deepest result the index is asked for

    @property
    def first_rank(self) -> int:
        return (self.page - 1) * self.page_size + 1


def timed_search(search, query: str, top_k: int, filters: SearchFilters, source: str,
                 mode: str = DEFAULT_MODE) -> list[SearchResult]:
    """search.search in `mode` (productsearch.search.MODES), logged with its duration."""
    return timed_ranked(search, query, top_k, filters, source, mode).results


def timed_ranked(search, query: str, top_k: int, filters: SearchFilters, source: str,
                 mode: str = DEFAULT_MODE) -> Ranked:
    """search.search_ranked in `mode`, logged with its duration."""
    started = time.perf_counter()
    ranked = search.search_ranked(query, top_k=top_k, filters=filters, mode=mode)
    results = ranked.results
    # The query's length, not its text: queries can carry personal data.
    log.info("search", extra={"source": source, "mode": mode, "query_chars": len(query), "top_k": top_k,
                              "filters": filters.to_index_filter(), "results": len(results),
                              "ms": round((time.perf_counter() - started) * 1000, 1)})
    return ranked


def search_page(search, query: str, filters: SearchFilters, page: int, page_size: int, source: str = "ui",
                mode: str = DEFAULT_MODE) -> Page:
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise InvalidSearch(f"page must be a positive integer, got {page!r}")
    offset = (page - 1) * page_size
    if offset >= MAX_TOP_K:
        raise InvalidSearch(f"only the top {MAX_TOP_K} results can be paged through")
    wanted = offset + page_size + 1
    top_k = min(wanted, MAX_TOP_K)
    ranked = timed_ranked(search, query, top_k, filters, source, mode)
    results = ranked.results
    # From the index's matches, not the results: a dropped row must not end the paging.
    has_more = ranked.matched > offset + page_size
    capped = top_k < wanted and ranked.matched >= top_k
    return Page(results=results[offset : offset + page_size], page=page, page_size=page_size,
                has_more=has_more, capped=capped)

