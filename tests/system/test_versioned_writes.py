"""ProductIndex.write_versioned against the local index server: what it writes, what
it refuses, and how many requests each case costs (the server counts them)."""

from __future__ import annotations

import numpy as np

from devstack import costs
from productsearch.documents import build_record
from productsearch.settings import DEFAULT_TEXT_TEMPLATE

ROW = {"name": "Lamp", "sku": "L-1", "description": "a brass desk lamp", "price": "12.50", "category": "Home"}


def record(pid: int, version: int):
    return build_record({**ROW, "id": pid}, version, DEFAULT_TEXT_TEMPLATE), np.eye(384, dtype=np.float32)[pid % 384]


def requests(parts) -> dict[str, float]:
    return {op: row["requests"] for op, row in costs.reset_stats(parts.env)["index"]["operations"].items()}


def test_a_record_older_than_its_tombstone_is_not_left_live(parts):
    parts.index.delete({"41": 10})
    requests(parts)
    result = parts.index.write_versioned([record(41, 5)], {})
    assert result.superseded == {"41"} and result.written == set()
    # Looked up, written, its tombstone found, deleted again.
    assert requests(parts) == {"fetch": 2, "upsert": 1, "delete": 1}
    assert parts.vector(41) is None

    result = parts.index.write_versioned([record(41, 11)], {})  # a re-insert newer than the deletion
    assert result.written == {"41"} and parts.vector(41).metadata["version"] == 11


def test_an_update_of_a_live_record_costs_its_lookup_and_its_upsert(parts):
    parts.index.write_versioned([record(42, 3), record(43, 3)], {})
    live = parts.index.lookup(["42", "43"])
    assert {i: r.version for i, r in live.items()} == {"42": 3, "43": 3}
    requests(parts)
    result = parts.index.write_versioned([record(42, 4), record(43, 2)], {},
                                         live_versions={i: r.version for i, r in live.items()})
    assert result.written == {"42"} and result.superseded == {"43"}
    assert requests(parts) == {"upsert": 1}  # the versions were looked up; no tombstone can be newer
    assert parts.vector(42).metadata["version"] == 4 and parts.vector(43).metadata["version"] == 3


def test_a_deletion_never_overwrites_a_newer_tombstone(parts):
    parts.index.delete({"44": 20})
    result = parts.index.write_versioned([], {"44": 15})
    assert result.superseded == {"44"}
    assert parts.index.fetch_versions(["44"], namespace=parts.index.settings.tombstone_namespace) == {"44": 20}
