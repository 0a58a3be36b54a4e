import json
import random

import numpy as np
import pytest

from devstack.index_server.limits import MAX_SPARSE_VALUES
from devstack.index_server.protocol import ApiError, parse_sparse
from devstack.index_server.sparse import SparseVector
from devstack.index_server.store import IndexStore
from productsearch.documents import MAX_UPSERT_REQUEST_BYTES, MAX_VECTORS_PER_UPSERT
from productsearch.index import chunks_within_limits
from productsearch.index_apis import DocumentsApi, VectorsApi


def item(i: int, dim: int, description: str) -> dict:
    rnd = random.Random(i)
    return {"id": str(i), "values": [rnd.uniform(-1, 1) * 10 ** rnd.randint(-40, 3) for _ in range(dim)],
            "metadata": {"description": description, "version": i}}


def test_size_bound_is_never_below_the_real_json_size():
    for i, description in enumerate(["", "plain", "ünïcødé " * 50, '"quotes" and \\ slashes' * 20]):
        it = item(i, 384, description)
        assert VectorsApi.item_bytes(it) >= len(json.dumps(it, separators=(",", ":")).encode())


def test_document_size_bound_is_never_below_the_real_json_size():
    from productsearch.documents import IndexRecord

    for i, text in enumerate(["", "plain", "ünïcødé " * 50, '"quotes" and \\ slashes' * 20]):
        source = item(i, 384, "")
        record = IndexRecord(id=source["id"], text=text, metadata=source["metadata"], sku=f"SKU-{text[:9]}")
        doc = DocumentsApi.item(source["id"], source["values"], source["metadata"], record)
        assert DocumentsApi.item_bytes(doc) >= len(json.dumps(doc, separators=(",", ":")).encode())


def test_chunks_respect_the_request_size_and_count_limits_and_keep_every_item():
    items = [item(i, 1536, "x" * 30_000) for i in range(150)] + [item(1000 + i, 4, "") for i in range(2500)]
    chunks = list(chunks_within_limits(items, VectorsApi.item_bytes))
    assert [it["id"] for chunk in chunks for it in chunk] == [it["id"] for it in items]
    assert len(chunks) > 3
    for chunk in chunks:
        assert len(chunk) <= MAX_VECTORS_PER_UPSERT
        body = json.dumps({"vectors": chunk, "namespace": "products-deleted"}, separators=(",", ":")).encode()
        assert len(body) <= MAX_UPSERT_REQUEST_BYTES


# ----------------------------------------------------------------------------- local index server
# Parsing of sparse values by the local index server (devstack/index_server), and the store's sparse
# scoring against a brute-force reference; the HTTP behaviour is in tests/system.


def test_parse_sparse_accepts_pinecone_shape_and_keeps_order():
    parsed = parse_sparse({"indices": [42, 0, 2**32 - 1], "values": [0.5, 1, -2.25]}, "vector 'a'")
    assert parsed is not None
    assert parsed.indices.dtype == np.uint32 and parsed.values.dtype == np.float32
    assert parsed.indices.tolist() == [42, 0, 2**32 - 1]
    assert parsed.values.tolist() == [0.5, 1.0, -2.25]
    assert SparseVector.from_bytes(parsed.to_bytes()).indices.tolist() == parsed.indices.tolist()
    assert parse_sparse(None, "vector 'a'") is None
    assert parse_sparse({"indices": [], "values": []}, "vector 'a'") is None
    assert parse_sparse({"indices": list(range(MAX_SPARSE_VALUES)),
                         "values": [1.0] * MAX_SPARSE_VALUES}, "vector 'a'") is not None


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        ([1, 2], ["must be an object with 'indices' and 'values' arrays"]),
        ({"indices": [1]}, ["must be an object with 'indices' and 'values' arrays"]),
        ({"indices": [1, 2], "values": [1.0]}, ["2 indices and 1 values", "same length"]),
        ({"indices": list(range(1001)), "values": [1.0] * 1001},
         ["Sparse vector size 1001", "limit of 1000 non-zero values"]),
        ({"indices": [1, -1], "values": [1.0, 1.0]}, ["uint32", "-1 at position 1"]),
        ({"indices": [2**32], "values": [1.0]}, ["between 0 and 4294967295", "4294967296"]),
        ({"indices": [1.5], "values": [1.0]}, ["must be integers", "1.5 at position 0"]),
        ({"indices": [True], "values": [1.0]}, ["must be integers", "true at position 0"]),
        ({"indices": [3, 1, 3], "values": [1.0, 1.0, 1.0]}, ["unique", "index 3 more than once"]),
        ({"indices": [1, 2], "values": [1.0, "x"]}, ["must be numbers", "\"x\" at position 1"]),
        ({"indices": [1, 2], "values": [1.0, float("nan")]}, ["NaN and infinite", "position 1"]),
        ({"indices": [1], "values": [1e39]}, ["finite 32-bit floats", "position 0"]),
        ({"indices": [1], "values": [None]}, ["NaN and infinite", "null at position 0"]),
    ],
)
def test_parse_sparse_refusals_are_400_with_the_culprit(raw, fragments):
    with pytest.raises(ApiError) as info:
        parse_sparse(raw, "vector 'doc-1'")
    assert info.value.status == 400
    assert "vector 'doc-1'" in info.value.message or "Sparse values of" in info.value.message
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message


def _reference_scores(store: IndexStore, ns: str, dense: np.ndarray, sparse: SparseVector):
    space = store.namespaces[ns]
    query = dict(zip(sparse.indices.tolist(), sparse.values.tolist(), strict=True))
    out = {}
    for vid, row in space.rows.items():
        score = float(np.dot(space.matrix[row].astype(np.float64), dense))
        own = space.sparse[row]
        if own is not None:
            score += sum(query.get(i, 0.0) * v
                         for i, v in zip(own.indices.tolist(), own.values.tolist(), strict=True))
        out[vid] = score
    return out


def test_sparse_scores_stay_exact_through_writes_deletes_and_rebuilds(tmp_path):
    """Scores match a brute-force reference after every kind of write, on both the
    incremental (dirty rows) and the rebuilt-matrix paths."""
    rng = np.random.default_rng(7)
    store = IndexStore(str(tmp_path), 4, "dotproduct")

    def random_sparse() -> SparseVector | None:
        if rng.random() < 0.2:
            return None
        terms = rng.choice(200, size=int(rng.integers(1, 12)), replace=False)
        return SparseVector((terms.astype(np.uint64) * 20_000_000).astype(np.uint32),
                            rng.random(terms.size).astype(np.float32))

    def write(ids: list[str]) -> None:
        store.upsert("ns", ids, rng.normal(size=(len(ids), 4)).astype(np.float32), [None] * len(ids),
                     [random_sparse() for _ in ids])

    query = SparseVector((np.arange(0, 200, 3, dtype=np.uint64) * 20_000_000).astype(np.uint32),
                         np.linspace(0.5, 2.0, 67).astype(np.float32))
    dense = rng.normal(size=4).astype(np.float32)

    def check() -> None:
        expected = _reference_scores(store, "ns", dense, query)
        got = store.query("ns", dense, 10_000, None, False, False, query)
        assert len(got) == len(expected)
        for match in got:
            assert float(match.score) == pytest.approx(expected[match.id], rel=1e-5, abs=1e-5)
        assert [float(m.score) for m in got] == sorted((float(m.score) for m in got), reverse=True)

    write([f"r{i}" for i in range(3000)])
    check()  # first query builds the matrix
    write([f"r{i}" for i in range(0, 3000, 50)] + [f"new{i}" for i in range(40)])
    check()  # a few dirty rows, rescored on their own
    store.delete_ids("ns", [f"r{i}" for i in range(1, 3000, 37)])
    check()  # swap-with-last moves rows
    store.update("ns", ["r2", "new3"], None, None, sparse=None, set_sparse=True)
    store.update("ns", ["r4"], None, None, sparse=query, set_sparse=True)
    check()
    write([f"r{i}" for i in range(500, 1500)])
    check()  # past the dirty threshold: rebuilt
    store.close()
    reopened = IndexStore(str(tmp_path), 4, "dotproduct")
    store = reopened
    check()
    reopened.close()
