"""Semantic search over products: the one search path used by the frontend's UI,
its JSON endpoint and the quality evaluation.

The query is embedded with the same model and settings as emu; structured filters
are pushed down to the index as a Pinecone metadata filter; the matching rows are
read from Postgres and returned in the index's rank order with their scores.

The index may lag behind the table, so the filters are applied once more to the
rows' current values: a result never breaks the request's own filter.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

from productsearch.documents import finite_price, normalise_category

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000
MAX_TOP_K = 100


class InvalidSearch(ValueError):
    """The request is malformed; the message is safe to show to the user."""


@dataclass(frozen=True)
class SearchFilters:
    """Structured filters of a search. Prices are in the catalog's currency units,
    inclusive bounds; `category` is held as its normalised key
    (documents.normalise_category), so comparisons ignore case and surrounding space."""

    price_min: float | None = None
    price_max: float | None = None
    category: str | None = None

    def __post_init__(self) -> None:
        # Built directly (scripts, tests) as well as by parse: the key is normalised either way.
        if self.category is not None:
            object.__setattr__(self, "category", normalise_category(self.category) or None)

    @classmethod
    def parse(cls, raw: Any) -> SearchFilters:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise InvalidSearch("filters must be an object")
        unknown = set(raw) - {"price_min", "price_max", "category"}
        if unknown:
            raise InvalidSearch(f"unknown filter(s): {', '.join(sorted(unknown))}")
        price_min = _price(raw.get("price_min"), "price_min")
        price_max = _price(raw.get("price_max"), "price_max")
        if price_min is not None and price_max is not None and price_min > price_max:
            raise InvalidSearch(f"price_min ({price_min:g}) is greater than price_max ({price_max:g})")
        category = raw.get("category")
        if category is not None:
            if not isinstance(category, str) or len(category) > 100:
                raise InvalidSearch("category must be a string of at most 100 characters")
            if "\x00" in category or not _is_unicode_text(category):
                raise InvalidSearch("category is not valid Unicode text")
        return cls(price_min, price_max, category)

    def to_index_filter(self) -> dict[str, Any] | None:
        """The Pinecone metadata filter, or None for no filter. The category is matched
        on the `category_key` metadata field that documents.metadata writes."""
        clauses: list[dict[str, Any]] = []
        price: dict[str, float] = {}
        if self.price_min is not None:
            price["$gte"] = self.price_min
        if self.price_max is not None:
            price["$lte"] = self.price_max
        if price:
            clauses.append({"price": price})
        if self.category:
            clauses.append({"category_key": {"$eq": self.category}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def admits(self, price: Any, category: Any) -> bool:
        """Whether a row's current price (Decimal, float, str or None) and category
        satisfy these filters, with the same comparisons as to_index_filter. A price
        that is not a finite number satisfies no price bound."""
        if self.price_min is not None or self.price_max is not None:
            value = finite_price(price)
            if value is None:
                return False
            if self.price_min is not None and value < self.price_min:
                return False
            if self.price_max is not None and value > self.price_max:
                return False
        return not self.category or normalise_category(category) == self.category


def _price(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidSearch(f"{name} must be a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise InvalidSearch(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise InvalidSearch(f"{name} must be a non-negative number, got {value!r}")
    return number


def _is_unicode_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON)
        return False
    return True


def validate_query(query: Any) -> str:
    if not isinstance(query, str):
        raise InvalidSearch("query must be a string")
    text = query.strip()
    if not text:
        raise InvalidSearch("query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidSearch(f"query is {len(text)} characters; the limit is {MAX_QUERY_CHARS}")
    if "\x00" in text:
        raise InvalidSearch("query contains a NUL character")
    if not _is_unicode_text(text):  # not text the model can read
        raise InvalidSearch("query is not valid Unicode text")
    return text


def validate_top_k(top_k: Any) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise InvalidSearch("top_k must be an integer")
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidSearch(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")
    return top_k


@dataclass(frozen=True)
class SearchResult:
    """One result: the row's current values and the index's similarity score.
    `price` is None when the stored value is not a finite number (a row that predates
    the schema's check), so the result still serialises to valid JSON."""

    id: int
    name: str
    sku: str
    description: str
    price: float | None
    category: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


ROWS_SQL = "SELECT id, name, sku, description, price, category FROM products WHERE id = ANY(%s)"


class ProductSearch:
    def __init__(self, embedder, index, pool):
        """pool: a psycopg_pool.ConnectionPool (or anything with .connection())."""
        self.embedder, self.index, self.pool = embedder, index, pool

    def search(self, query: str, top_k: int = 10, filters: SearchFilters | None = None) -> list[SearchResult]:
        """Up to top_k results, best first. The index is asked for top_k matches under
        the filters; a match whose row has since been deleted, or whose row's current
        price or category no longer satisfies the filters (the index lags behind the
        table), is dropped, so fewer than top_k may come back. Raises InvalidSearch for
        a malformed query or top_k."""
        text = validate_query(query)
        top_k = validate_top_k(top_k)
        filters = filters or SearchFilters()
        vector = self.embedder.embed([text])[0]
        matches = self.index.query(vector, top_k=top_k, filter=filters.to_index_filter())
        ids = [int(m.id) for m in matches if m.id.isdigit()]
        if not ids:
            return []
        with self.pool.connection() as conn:
            rows = {r["id"]: r for r in conn.execute(ROWS_SQL, (ids,)).fetchall()}
        results = []
        for match in matches:
            row = rows.get(int(match.id)) if match.id.isdigit() else None
            if row is None:  # deleted, and the deletion is still on its way to the index
                continue
            if not filters.admits(row["price"], row["category"]):
                continue
            price = finite_price(row["price"])
            if price is None:
                log.warning("product price is not a finite number; shown without a price",
                            extra={"product_id": row["id"], "price": str(row["price"])})
            results.append(SearchResult(
                id=row["id"], name=row["name"], sku=row["sku"], description=row["description"],
                price=price, category=row["category"], score=match.score,
            ))
        return results
