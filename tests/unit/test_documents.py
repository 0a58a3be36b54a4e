import pytest

from productsearch.documents import UnindexableProduct, build_record, indexed_text
from productsearch.search import InvalidSearch, SearchFilters, validate_query, validate_top_k

ROW = {"id": 7, "name": "Pro System", "sku": "SKU-1", "description": "A fine thing", "price": "19.99", "category": "system"}


def test_default_template_is_name_then_description_stripped():
    assert indexed_text(ROW, "{name} {description}") == "Pro System A fine thing"
    assert indexed_text({**ROW, "description": ""}, "{name} {description}") == "Pro System"


def test_record_carries_version_and_filterable_metadata():
    r = build_record(ROW, 42, "{name} {description}")
    assert r.id == "7" and r.version == 42
    assert r.metadata["price"] == 19.99 and r.metadata["category"] == "system"


def test_blank_text_and_oversized_metadata_are_unindexable_with_reasons():
    with pytest.raises(UnindexableProduct, match="empty"):
        build_record({**ROW, "name": " ", "description": ""}, 1, "{name} {description}")
    with pytest.raises(UnindexableProduct, match="40960"):
        build_record({**ROW, "description": "x" * 41_000}, 1, "{name} {description}")


def test_filters_become_a_pinecone_metadata_filter():
    f = SearchFilters.parse({"price_min": 100, "price_max": "500", "category": " Device "})
    assert f.to_index_filter() == {"$and": [{"price": {"$gte": 100.0, "$lte": 500.0}}, {"category": {"$eq": "device"}}]}
    assert SearchFilters.parse({}).to_index_filter() is None


@pytest.mark.parametrize("raw, reason", [
    ({"price_min": 500, "price_max": 100}, "greater than"),
    ({"price_min": -1}, "non-negative"),
    ({"price_max": "cheap"}, "number"),
    ({"colour": "red"}, "unknown filter"),
    ("price<5", "object"),
])
def test_bad_filters_are_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidSearch, match=reason):
        SearchFilters.parse(raw)


@pytest.mark.parametrize("query, reason", [("", "empty"), ("   ", "empty"), ("x" * 10_000, "limit"), (5, "string")])
def test_bad_queries_are_refused(query, reason):
    with pytest.raises(InvalidSearch, match=reason):
        validate_query(query)


@pytest.mark.parametrize("top_k", [0, 100_000, -1, "10", True])
def test_bad_top_k_is_refused(top_k):
    with pytest.raises(InvalidSearch):
        validate_top_k(top_k)
