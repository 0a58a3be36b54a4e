"""POST /api/search's body model: each bad body is refused with one reason that names
the field, in the order a reader fixes them (unknown fields, a missing query, then
the fields in order)."""

import pytest

from frontend.api import SearchRequest
from frontend.bodies import InvalidBody
from productsearch.search import DEFAULT_MODE


def refusal(body) -> str:
    with pytest.raises(InvalidBody) as caught:
        SearchRequest.parse(body)
    return str(caught.value)


def test_defaults_fill_what_the_body_leaves_out():
    asked = SearchRequest.parse({"query": "  desk lamp "})
    assert (asked.top_k, asked.mode, asked.explain) == (10, DEFAULT_MODE, False)
    assert asked.filters.price_min is None and asked.filters.category is None


def test_unknown_fields_come_first_and_are_all_named():
    message = refusal({"top_k": "many", "zeta": 1, "alpha": 2})
    assert message == "unknown field(s): alpha, zeta (allowed: query, top_k, filters, mode, explain)"


def test_a_missing_query_comes_before_a_bad_field():
    assert refusal({"top_k": 0}) == "query is missing"


def test_the_first_bad_field_is_named_with_the_search_modules_reason():
    assert refusal({"query": "lamp", "top_k": "ten", "mode": "fuzzy"}) == "top_k must be an integer"
    assert refusal({"query": "lamp", "mode": "fuzzy"}).startswith("mode must be one of")


@pytest.mark.parametrize("explain", ["yes", 1, None])
def test_explain_takes_only_json_booleans(explain):
    assert refusal({"query": "lamp", "explain": explain}) == "explain must be true or false"


@pytest.mark.parametrize("body", [[], "lamp", 3, None])
def test_a_body_that_is_not_an_object_is_refused(body):
    assert refusal(body).startswith("request body must be a JSON object")
