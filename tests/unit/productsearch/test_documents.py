from decimal import Decimal, InvalidOperation

import pytest

from productsearch.documents import (UnindexableProduct, build_record, decimal_from_text, finite_price, indexed_text,
                                    is_ascii_digits, is_current, normalise_category, product_id_of, text_hash)
from productsearch.search import InvalidSearch, SearchFilters, validate_query, validate_top_k

ROW = {"id": 7, "name": "Pro System", "sku": "SKU-1", "description": "A fine thing", "price": "19.99", "category": "system"}


def test_default_template_is_name_then_description_stripped():
    assert indexed_text(ROW, "{name} {description}") == "Pro System A fine thing"
    assert indexed_text({**ROW, "description": ""}, "{name} {description}") == "Pro System"


def test_record_carries_only_what_filters_and_the_version_checks_need():
    r = build_record(ROW, 42, "{name} {description}")
    assert r.id == "7" and r.version == 42
    # Display fields come from Postgres: a query is billed by the namespace's size.
    assert r.metadata == {"price": 19.99, "category_key": "system", "version": 42,
                          "text_hash": text_hash("Pro System A fine thing")}


def test_the_text_fingerprint_follows_the_indexed_text_alone():
    base = build_record(ROW, 1, "{name} {description}").metadata["text_hash"]
    assert build_record({**ROW, "price": "5", "category": "other"}, 2, "{name} {description}").metadata["text_hash"] == base
    assert build_record({**ROW, "description": "A finer thing"}, 2, "{name} {description}").metadata["text_hash"] != base
    # A new template is new text, so every record is embedded again.
    assert build_record(ROW, 1, "{description} {name}").metadata["text_hash"] != base
    assert len(base) == 16 and int(base, 16) >= 0


def test_is_current_compares_the_filtered_fields_and_the_text_fingerprint():
    stored = build_record(ROW, 3, "{name} {description}").metadata
    assert is_current(ROW, stored, "{name} {description}")
    assert not is_current({**ROW, "price": "19.98"}, stored, "{name} {description}")
    assert not is_current({**ROW, "category": "other"}, stored, "{name} {description}")
    assert not is_current({**ROW, "description": "changed"}, stored, "{name} {description}")
    assert not is_current(ROW, {k: v for k, v in stored.items() if k != "text_hash"}, "{name} {description}")


def test_blank_text_and_oversized_text_are_unindexable_with_reasons():
    with pytest.raises(UnindexableProduct, match="empty"):
        build_record({**ROW, "name": " ", "description": ""}, 1, "{name} {description}")
    with pytest.raises(UnindexableProduct, match="40960"):
        build_record({**ROW, "description": "x" * 41_000}, 1, "{name} {description}")


def test_filters_become_a_pinecone_metadata_filter():
    f = SearchFilters.parse({"price_min": 100, "price_max": "500", "category": " Device "})
    assert f.to_index_filter() == {"$and": [{"price": {"$gte": 100.0, "$lte": 500.0}}, {"category_key": {"$eq": "device"}}]}
    assert SearchFilters.parse({}).to_index_filter() is None


@pytest.mark.parametrize("price", ["NaN", Decimal("NaN"), float("nan"), "Infinity", "-Infinity", float("inf"), "1e400",
                                   "sNaN", "about ten", None])
def test_a_price_that_is_not_a_finite_number_is_unindexable(price):
    with pytest.raises(UnindexableProduct, match="price is not a finite number"):
        build_record({**ROW, "price": price}, 1, "{name} {description}")


def test_a_negative_price_is_unindexable():
    with pytest.raises(UnindexableProduct, match="negative"):
        build_record({**ROW, "price": "-0.01"}, 1, "{name} {description}")


# Text Decimal() or float() would read as some other number: digit grouping ("6_0" is
# 60 to Python), other scripts' digits, thousands separators, currency signs, hex.
NOT_DECIMAL_NOTATION = ["6_0", "1_000.00", "\u0661\u0660\u0660", "\uff11\uff12", "1,000", "$5", "0x10", "1e", ".", "5 5", "--5"]


@pytest.mark.parametrize("text, number", [("12", "12"), (" 12.50 ", "12.50"), ("+5", "5"), ("5.", "5"), (".5", "0.5"),
                                          ("1e2", "100"), ("-0.01", "-0.01"), ("007", "7")])
def test_decimal_notation_is_read_as_written(text, number):
    assert decimal_from_text(text) == Decimal(number)


@pytest.mark.parametrize("text", NOT_DECIMAL_NOTATION)
def test_text_that_is_not_decimal_notation_is_not_a_number(text):
    with pytest.raises(InvalidOperation):
        decimal_from_text(text)
    assert finite_price(text) is None
    with pytest.raises(InvalidSearch, match="must be a number"):
        SearchFilters.parse({"price_min": text})


def test_non_finite_names_stay_non_finite_for_the_caller_to_refuse():
    for text in ("NaN", "-nan", "sNaN", "Infinity", "-inf"):
        assert not decimal_from_text(text).is_finite(), text


def test_finite_price_is_json_safe():
    assert finite_price(Decimal("19.99")) == 19.99 and finite_price("5") == 5.0 and finite_price(3) == 3.0
    for bad in (Decimal("NaN"), "NaN", float("nan"), "Infinity", float("-inf"), "1e400", "", "abc", None, True):
        assert finite_price(bad) is None, bad


@pytest.mark.parametrize("written", ["Outdoor", "outdoor", " OUTDOOR ", "\tOutDoor\n", "ＯＵＴＤＯＯＲ"])
def test_category_spellings_share_one_key_in_the_index_and_the_filter(written):
    record = build_record({**ROW, "category": written}, 1, "{name} {description}")
    assert record.metadata["category_key"] == normalise_category(written) == "outdoor"
    assert SearchFilters.parse({"category": written}).to_index_filter() == {"category_key": {"$eq": "outdoor"}}


def test_filters_built_directly_hold_the_normalised_key():
    assert SearchFilters(category=" Outdoor ") == SearchFilters.parse({"category": "outdoor"})
    assert SearchFilters(category="  ").category is None


@pytest.mark.parametrize("category", ["a\x00b", "bad \ud800 text", "x" * 101, 5])
def test_a_category_that_is_not_short_text_is_refused(category):
    with pytest.raises(InvalidSearch, match="category"):
        SearchFilters.parse({"category": category})


def test_german_sharp_s_is_casefolded_not_just_lowercased():
    assert normalise_category("STRASSE") == normalise_category("straße")


def test_blank_category_is_no_filter_and_an_empty_key():
    assert SearchFilters.parse({"category": "   "}).to_index_filter() is None
    assert build_record({**ROW, "category": None}, 1, "{name} {description}").metadata["category_key"] == ""


def test_filters_admit_rows_by_their_current_values():
    f = SearchFilters.parse({"price_min": 10, "price_max": "100", "category": "Outdoor"})
    assert f.admits(Decimal("10.00"), "outdoor") and f.admits(Decimal("100.00"), " OUTDOOR ")
    assert not f.admits(Decimal("100.01"), "Outdoor")
    assert not f.admits(Decimal("9.99"), "Outdoor")
    assert not f.admits(Decimal("50"), "Kitchen")
    assert not f.admits(Decimal("NaN"), "Outdoor")  # satisfies no price bound
    assert SearchFilters.parse({"category": "outdoor"}).admits(Decimal("NaN"), "Outdoor")
    assert SearchFilters().admits(Decimal("NaN"), "")


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


@pytest.mark.parametrize("text, pid", [("12", 12), ("007", 7), ("9223372036854775807", 2**63 - 1),
                                       ("9223372036854775808", None), ("", None), ("\u00b2", None),
                                       ("1\u00b2", None), ("\u0661\u0662", None), ("\uff11\uff12", None),
                                       (" 12", None), ("-3", None), ("t#12", None)])
def test_a_vector_id_names_a_product_only_in_ascii_digits_within_a_bigint(text, pid):
    assert product_id_of(text) == pid
    assert is_ascii_digits(text) == (text != "" and all("0" <= c <= "9" for c in text))
