"""Unit tests for the local index server's metadata filter language (pure, no server)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from devstack.index_server.filters import (
    MAX_IN_VALUES,
    FieldColumn,
    FilterError,
    compile_filter,
    matches,
)

RECORDS: list[dict | None] = [
    {"genre": "drama", "year": 2001, "rating": 7.5, "tags": ["a", "b"], "live": True},
    {"genre": "comedy", "year": 2010, "rating": 6.0, "tags": ["b", "c"], "live": False},
    {"genre": "drama", "year": 2020, "tags": []},
    {"genre": ["drama", "comedy"], "year": 1999.0},
    {"year": "2001", "live": 1},
    None,
    {},
]


def select(raw_filter) -> list[int]:
    """Row indices matching, computed both ways; the two must agree."""
    node = compile_filter(raw_filter)
    python_rows = [i for i, meta in enumerate(RECORDS) if node is None or node.matches(meta)]
    if node is not None:
        cache: dict[str, FieldColumn] = {}

        def column(field: str) -> FieldColumn:
            if field not in cache:
                cache[field] = FieldColumn(field, RECORDS)
            return cache[field]

        mask = node.mask(column, len(RECORDS))
        assert list(np.flatnonzero(mask)) == python_rows, raw_filter
    return python_rows


@pytest.mark.parametrize(
    ("raw_filter", "expected"),
    [
        (None, [0, 1, 2, 3, 4, 5, 6]),
        ({}, [0, 1, 2, 3, 4, 5, 6]),
        ({"genre": "drama"}, [0, 2, 3]),
        ({"genre": {"$eq": "drama"}}, [0, 2, 3]),
        ({"genre": {"$ne": "drama"}}, [1, 4, 5, 6]),
        ({"year": 2001}, [0]),
        ({"year": 2001.0}, [0]),
        ({"year": {"$gt": 2001}}, [1, 2]),
        ({"year": {"$gte": 2001}}, [0, 1, 2]),
        ({"year": {"$lt": 2001}}, [3]),
        ({"year": {"$lte": 2001}}, [0, 3]),
        ({"year": {"$gte": 2000, "$lt": 2015}}, [0, 1]),
        ({"rating": {"$gt": 6.5}}, [0]),
        ({"genre": {"$in": ["comedy", "horror"]}}, [1, 3]),
        ({"genre": {"$nin": ["comedy", "horror"]}}, [0, 2, 4, 5, 6]),
        ({"year": {"$in": [2001, 2020]}}, [0, 2]),
        ({"year": {"$in": []}}, []),
        ({"tags": "b"}, [0, 1]),
        ({"tags": {"$in": ["c", "zzz"]}}, [1]),
        ({"tags": {"$nin": ["a"]}}, [1, 2, 3, 4, 5, 6]),
        ({"live": True}, [0]),
        ({"live": False}, [1]),
        ({"live": 1}, [4]),
        ({"year": "2001"}, [4]),
        ({"year": {"$exists": True}}, [0, 1, 2, 3, 4]),
        ({"year": {"$exists": False}}, [5, 6]),
        ({"genre": "drama", "year": {"$gt": 2005}}, [2]),
        ({"$and": [{"genre": "drama"}, {"year": {"$lt": 2005}}]}, [0, 3]),
        ({"$or": [{"genre": "comedy"}, {"year": 2020}]}, [1, 2, 3]),
        ({"$or": [{"live": True}, {"$and": [{"genre": "comedy"}, {"rating": {"$lt": 7}}]}]}, [0, 1]),
        ({"$and": [{"$or": [{"year": 2001}, {"year": 2010}]}, {"tags": "c"}]}, [1]),
        ({"missing": {"$ne": "x"}}, [0, 1, 2, 3, 4, 5, 6]),
        ({"missing": "x"}, []),
    ],
)
def test_filter_semantics(raw_filter, expected):
    assert select(raw_filter) == expected


def test_booleans_are_not_numbers():
    assert not matches({"flag": 1}, {"flag": True})
    assert not matches({"flag": True}, {"flag": 1})
    assert not matches({"n": {"$gt": 0}}, {"n": True})
    assert matches({"n": {"$gt": 0}}, {"n": 1})


def test_matches_helper_and_none_metadata():
    assert matches(None, None)
    assert not matches({"a": "b"}, None)
    assert matches({"a": {"$exists": False}}, None)


@pytest.mark.parametrize(
    ("raw_filter", "fragment"),
    [
        ([], "must be a JSON object"),
        ("genre", "must be a JSON object"),
        ({"year": {"$gt": "2000"}}, "$gt for field 'year' expects a number"),
        ({"year": {"$lte": True}}, "$lte for field 'year' expects a number"),
        ({"genre": {"$in": "drama"}}, "$in for field 'genre' expects an array"),
        ({"genre": {"$nin": [["nested"]]}}, "$nin for field 'genre' expects a string, number"),
        ({"genre": {"$eq": {"a": 1}}}, "$eq for field 'genre' expects a string, number"),
        ({"genre": {"$regex": "dr.*"}}, "unknown operator '$regex' for field 'genre'"),
        ({"genre": {"$exists": "yes"}}, "$exists for field 'genre' expects true or false"),
        ({"genre": {}}, "empty operator object"),
        ({"genre": {"sub": 1}}, "expected an operator such as $eq"),
        ({"genre": ["drama", "comedy"]}, "use {\"$in\": [...]}"),
        ({"genre": None}, "compared to null"),
        ({"$and": []}, "$and expects a non-empty array"),
        ({"$or": {"genre": "drama"}}, "$or expects a non-empty array"),
        ({"$or": [{}]}, "$or[0] is an empty filter object"),
        ({"$and": ["genre"]}, "$and[0] must be a JSON object"),
        ({"$not": {"genre": "drama"}}, "unknown top-level operator '$not'"),
        ({"$eq": "drama"}, "operator $eq must be applied to a field"),
        ({"genre": {"$and": [{"a": 1}]}}, "$and is a logical operator"),
        ({"year": {"$gt": float("nan")}}, "$gt for field 'year' expects a number"),
        ({"": "x"}, "field names must be non-empty"),
    ],
)
def test_invalid_filters_are_rejected_with_a_clear_message(raw_filter, fragment):
    with pytest.raises(FilterError) as info:
        compile_filter(raw_filter)
    message = str(info.value)
    assert message.startswith("Invalid filter")
    assert fragment in message


def test_in_operator_value_limit():
    compile_filter({"n": {"$in": list(range(MAX_IN_VALUES))}})
    with pytest.raises(FilterError, match="exceeds the limit of 10000 values"):
        compile_filter({"n": {"$in": list(range(MAX_IN_VALUES + 1))}})


def test_fields_reported():
    node = compile_filter({"a": 1, "$or": [{"b": 2}, {"c": {"$exists": True}}]})
    assert node is not None
    assert node.fields() == {"a", "b", "c"}


def test_vectorised_and_python_evaluation_agree_on_random_data():
    rng = random.Random(7)
    genres = ["drama", "comedy", "horror", "doc"]
    records = []
    for _ in range(500):
        meta = {}
        if rng.random() < 0.8:
            meta["genre"] = rng.choice(genres) if rng.random() < 0.7 else rng.sample(genres, 2)
        if rng.random() < 0.8:
            meta["year"] = rng.choice([rng.randint(1990, 2024), float(rng.randint(1990, 2024))])
        if rng.random() < 0.5:
            meta["flag"] = rng.random() < 0.5
        records.append(meta or None)
    filters = [
        {"genre": "drama"},
        {"genre": {"$ne": "drama"}},
        {"genre": {"$in": ["comedy", "doc"]}},
        {"genre": {"$nin": ["comedy", "doc"]}},
        {"year": {"$gte": 2000, "$lt": 2010}},
        {"flag": True, "year": {"$exists": True}},
        {"$or": [{"flag": False}, {"genre": "horror", "year": {"$lte": 2000}}]},
        {"flag": {"$exists": False}},
        {"year": {"$in": [1995, 2000.0, 2005]}},
    ]
    for raw in filters:
        node = compile_filter(raw)
        assert node is not None
        expected = [i for i, meta in enumerate(records) if node.matches(meta)]
        columns: dict[str, FieldColumn] = {}
        mask = node.mask(
            lambda f: columns.setdefault(f, FieldColumn(f, records)), len(records)
        )
        assert list(np.flatnonzero(mask)) == expected, raw
        assert expected, f"filter {raw} should match something in the random data"


def test_incremental_column_updates_match_a_fresh_build():
    rng = random.Random(11)

    def record():
        choice = rng.random()
        if choice < 0.15:
            return None
        meta = {}
        if rng.random() < 0.7:
            meta["f"] = rng.choice(["x", "y", True, False, 1, 2.5, ["x", "z"], ["y"], []])
        return meta

    records = [record() for _ in range(200)]
    columns = {"f": FieldColumn("f", records)}
    for _ in range(30):
        rows = rng.sample(range(len(records)), 5)  # overwrites
        rows += list(range(len(records), len(records) + rng.randint(0, 4)))  # appends
        metas = [record() for _ in rows]
        for row, meta in zip(rows, metas):
            if row < len(records):
                records[row] = meta
            else:
                records.append(meta)
        columns["f"].update_rows("f", rows, metas, len(records))

    fresh = FieldColumn("f", records)
    for raw in ({"f": "x"}, {"f": True}, {"f": {"$in": ["z", 2.5]}}, {"f": {"$nin": ["y", 1]}},
                {"f": {"$exists": True}}, {"f": {"$gte": 2}}, {"f": {"$ne": False}}):
        node = compile_filter(raw)
        incremental = node.mask(lambda _f: columns["f"], len(records))
        rebuilt = node.mask(lambda _f: fresh, len(records))
        expected = [i for i, meta in enumerate(records) if node.matches(meta)]
        assert list(np.flatnonzero(incremental)) == expected, raw
        assert list(np.flatnonzero(rebuilt)) == expected, raw
