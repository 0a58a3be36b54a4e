"""System tests: sparse-dense (hybrid) records in the real local index server.

Same harness as test_index_server.py: ``python -m devstack.index_server`` in a subprocess,
driven by the official SDK (``Pinecone(api_key=...).Index(host=...)``) the way
productsearch/index.py drives it. Where the SDK validates an argument before sending it,
the server's own check is exercised with raw HTTP instead.

Pinecone's rules mirrored here (docs: Limits, Known limitations, query sparse-dense vectors):
indices uint32 and unique, values finite float32, indices and values the same length, at most
1000 non-zero values; a dotproduct index scores dense dot + sparse dot; upsert, update and
fetch of sparse values work on any metric but a sparse query on a non-dotproduct index is a
400 "Index configuration does not support sparse values".
"""

from __future__ import annotations

import signal
import uuid

import numpy as np
import pytest
from pinecone.exceptions import PineconeApiException

from tests.system.test_index_server import DIM, ServerProcess, assert_limit_error, vec

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("sparse") / "data", metric="dotproduct").start()
    yield srv
    srv.stop()


@pytest.fixture
def idx(server):
    return server.index()


@pytest.fixture
def ns() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


def sparse(pairs: dict[int, float]) -> dict[str, list]:
    return {"indices": list(pairs), "values": list(pairs.values())}


def expected_score(dense_q, sparse_q, dense_r, sparse_r) -> float:
    """Pinecone's dotproduct over a sparse-dense vector: dense dot + sparse dot."""
    score = float(np.dot(np.asarray(dense_q, np.float64), np.asarray(dense_r, np.float64)))
    if sparse_r:
        score += sum(weight * sparse_r.get(term, 0.0) for term, weight in sparse_q.items())
    return score


def raw_error(response, *fragments: str) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 3 and body["details"] == [], body
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return body["message"]


# ----------------------------------------------------------------------------- round trips
def test_upsert_fetch_and_query_return_sparse_values(idx, ns):
    idx.upsert(vectors=[
        {"id": "h", "values": vec(1, 0), "sparse_values": sparse({7: 0.5, 4_000_000_000: 1.25}),
         "metadata": {"kind": "hybrid"}},
        {"id": "d", "values": vec(0, 1)},
    ], namespace=ns)

    fetched = idx.fetch(ids=["h", "d"], namespace=ns).vectors
    assert fetched["h"].sparse_values.indices == [7, 4_000_000_000]
    assert fetched["h"].sparse_values.values == [0.5, 1.25]
    assert fetched["h"].values == pytest.approx(vec(1, 0))
    assert fetched["h"].metadata == {"kind": "hybrid"}
    assert fetched["d"].sparse_values is None

    result = idx.query(vector=vec(1, 1), sparse_vector=sparse({7: 2.0}), top_k=2, namespace=ns,
                       include_values=True, include_metadata=True)
    by_id = {m.id: m for m in result.matches}
    assert by_id["h"].sparse_values.indices == [7, 4_000_000_000]
    assert by_id["h"].sparse_values.values == [0.5, 1.25]
    assert by_id["d"].sparse_values is None
    bare = idx.query(vector=vec(1, 1), sparse_vector=sparse({7: 2.0}), top_k=2, namespace=ns)
    assert all(m.sparse_values is None and m.values == [] for m in bare.matches)

    by_metadata = idx.fetch_by_metadata(filter={"kind": "hybrid"}, namespace=ns)
    assert by_metadata.vectors["h"].sparse_values.indices == [7, 4_000_000_000]


def test_dotproduct_scores_dense_plus_sparse_exactly(idx, ns):
    rng = np.random.default_rng(11)
    records = {}
    for i in range(40):
        dense = rng.normal(size=DIM).round(3).tolist()
        terms = rng.choice(30, size=int(rng.integers(0, 6)), replace=False).tolist()
        records[f"r{i}"] = (dense, {int(t): float(rng.integers(1, 9)) / 4 for t in terms})
    idx.upsert(vectors=[{"id": vid, "values": dense, **({"sparse_values": sparse(sp)} if sp else {})}
                        for vid, (dense, sp) in records.items()], namespace=ns)

    dense_q = rng.normal(size=DIM).round(3).tolist()
    for sparse_q in ({3: 1.5, 7: 0.25, 29: 2.0, 999: 5.0}, {}, {1000: 1.0}):
        result = idx.query(vector=dense_q, sparse_vector=sparse(sparse_q), top_k=40, namespace=ns)
        expected = {vid: expected_score(dense_q, sparse_q, *rec) for vid, rec in records.items()}
        assert len(result.matches) == 40
        for match in result.matches:
            assert match.score == pytest.approx(expected[match.id], rel=1e-6, abs=1e-6), match.id
        assert [m.id for m in result.matches] == sorted(expected, key=lambda v: -expected[v])

    # keyword-only: an all-zero dense part (Pinecone's hybrid_score_norm with alpha=0)
    sparse_q = {3: 1.0, 7: 1.0}
    keyword = idx.query(vector=[0.0] * DIM, sparse_vector=sparse(sparse_q), top_k=5, namespace=ns)
    keyword_expected = {vid: sum(sp.get(t, 0.0) for t in sparse_q) for vid, (_, sp) in records.items()}
    assert [m.score for m in keyword.matches] == sorted(keyword_expected.values(), reverse=True)[:5]
    assert all(m.score == keyword_expected[m.id] for m in keyword.matches)

    # dense-only query on the same records: the sparse parts do not count
    dense_only = idx.query(vector=dense_q, top_k=1, namespace=ns)
    best = max(records, key=lambda v: np.dot(dense_q, records[v][0]))
    assert dense_only.matches[0].id == best
    assert dense_only.matches[0].score == pytest.approx(float(np.dot(dense_q, records[best][0])), rel=1e-6)

    # query by id uses the stored sparse-dense vector
    dense_r, sparse_r = records["r0"]
    by_id = idx.query(id="r0", top_k=40, namespace=ns)
    for match in by_id.matches:
        assert match.score == pytest.approx(expected_score(dense_r, sparse_r, *records[match.id]),
                                            rel=1e-6, abs=1e-6)


def test_filters_apply_to_sparse_queries(idx, ns):
    idx.upsert(vectors=[
        {"id": f"p{i}", "values": vec(0.01 * i), "sparse_values": sparse({5: float(i)}),
         "metadata": {"brand": "acme" if i % 2 else "other", "price": i}}
        for i in range(1, 21)
    ], namespace=ns)
    result = idx.query(vector=[0.0] * DIM, sparse_vector=sparse({5: 1.0}), top_k=3, namespace=ns,
                       filter={"brand": "acme", "price": {"$lt": 15}})
    assert [m.id for m in result.matches] == ["p13", "p11", "p9"]
    assert [m.score for m in result.matches] == [13.0, 11.0, 9.0]
    none = idx.query(vector=[0.0] * DIM, sparse_vector=sparse({5: 1.0}), top_k=3, namespace=ns,
                     filter={"brand": "nobody"})
    assert none.matches == []


def test_upsert_replaces_and_update_sets_sparse_values(idx, server, ns):
    idx.upsert(vectors=[{"id": "a", "values": vec(1), "sparse_values": sparse({1: 1.0})},
                        {"id": "b", "values": vec(1), "sparse_values": sparse({1: 2.0}),
                         "metadata": {"g": "x"}}], namespace=ns)

    def keyword_scores() -> dict[str, float]:
        result = idx.query(vector=[0.0] * DIM, sparse_vector=sparse({1: 1.0, 2: 1.0}), top_k=5,
                           namespace=ns)
        return {m.id: m.score for m in result.matches}

    assert keyword_scores() == {"a": 1.0, "b": 2.0}
    # an upsert writes the whole record: without sparse values it has none afterwards
    idx.upsert(vectors=[("a", vec(1))], namespace=ns)
    assert idx.fetch(ids=["a"], namespace=ns).vectors["a"].sparse_values is None
    assert keyword_scores() == {"a": 0.0, "b": 2.0}

    idx.update(id="a", sparse_values=sparse({2: 3.0}), namespace=ns)
    assert keyword_scores() == {"a": 3.0, "b": 2.0}
    # updating the dense values or metadata keeps the sparse values
    idx.update(id="a", values=vec(0, 1), set_metadata={"g": "y"}, namespace=ns)
    a = idx.fetch(ids=["a"], namespace=ns).vectors["a"]
    assert a.sparse_values.indices == [2] and a.values == pytest.approx(vec(0, 1))
    # empty sparse values remove them
    idx.update(id="a", sparse_values={"indices": [], "values": []}, namespace=ns)
    assert idx.fetch(ids=["a"], namespace=ns).vectors["a"].sparse_values is None

    raw_error(server.http("POST", "/vectors/update", json={
        "filter": {"g": "x"}, "sparseValues": sparse({1: 1.0}), "namespace": ns}),
        "Update by filter can only set metadata, not sparse values")
    with pytest.raises(PineconeApiException) as info:
        idx.update(id="b", sparse_values=sparse({1: 1.0, 2: float("inf")}), namespace=ns)
    assert_limit_error(info, "NaN and infinite values are not allowed in sparse values",
                       "vector 'b'", "position 1")
    assert keyword_scores() == {"a": 0.0, "b": 2.0}  # the refused update changed nothing


# ----------------------------------------------------------------------------- validation
def test_sparse_validation_errors(idx, server, ns):
    """Each rule, on upsert, query and update; a refused upsert writes nothing."""
    bad = [
        ({"indices": [1, 2], "values": [1.0]}, ["2 indices and 1 values", "same length"]),
        ({"indices": [1, -3], "values": [1.0, 1.0]}, ["between 0 and 4294967295 (uint32)", "-3 at position 1"]),
        ({"indices": [2**32], "values": [1.0]}, ["uint32", "4294967296 at position 0"]),
        ({"indices": [0.5], "values": [1.0]}, ["must be integers", "0.5 at position 0"]),
        ({"indices": [4, 9, 4], "values": [1.0, 1.0, 1.0]}, ["must be unique", "index 4 more than once"]),
        ({"indices": [1, 2], "values": [1.0, "x"]}, ["Sparse values must be numbers", "position 1"]),
        ({"indices": [1], "values": [3e38 * 10]}, ["NaN and infinite values are not allowed", "position 0"]),
        ({"indices": [1]}, ["must be an object with 'indices' and 'values' arrays"]),
        ([1, 2], ["must be an object with 'indices' and 'values' arrays"]),
    ]
    for raw, fragments in bad:
        upsert = server.http("POST", "/vectors/upsert", json={
            "namespace": ns, "vectors": [{"id": "ok", "values": vec(1)},
                                         {"id": "x", "values": vec(1), "sparseValues": raw}]})
        raw_error(upsert, *fragments, "vector 'x'")
        query = server.http("POST", "/query", json={
            "namespace": ns, "topK": 1, "vector": vec(1), "sparseVector": raw})
        raw_error(query, *fragments, "the query")
        update = server.http("POST", "/vectors/update", json={
            "namespace": ns, "id": "x", "sparseValues": raw})
        raw_error(update, *fragments, "vector 'x'")
    assert ns not in idx.describe_index_stats().namespaces

    # NaN written as a token by a client (Python's json module does)
    response = server.http(
        "POST", "/vectors/upsert",
        content=b'{"namespace": "%s", "vectors": [{"id": "n", "values": [1,0,0,0,0,0,0,0], '
                b'"sparseValues": {"indices": [1, 2], "values": [1.0, NaN]}}]}' % ns.encode(),
        headers={"Content-Type": "application/json"})
    raw_error(response, "NaN and infinite values are not allowed in sparse values", "position 1")

    # and through the SDK, which passes these on for the server to judge
    with pytest.raises(PineconeApiException) as info:
        idx.upsert(vectors=[{"id": "x", "values": vec(1), "sparse_values": sparse({4: 1.0}) | {
            "indices": [4, 4], "values": [1.0, 2.0]}}], namespace=ns)
    assert_limit_error(info, "Sparse indices must be unique", "vector 'x'")
    with pytest.raises(PineconeApiException) as info:
        idx.query(vector=vec(1), sparse_vector={"indices": [-1], "values": [1.0]}, top_k=1, namespace=ns)
    assert_limit_error(info, "uint32", "the query")

    # records with sparse values must have dense values too (Pinecone docs: Limits)
    raw_error(server.http("POST", "/vectors/upsert", json={
        "namespace": ns, "vectors": [{"id": "s", "values": [], "sparseValues": sparse({1: 1.0})}]}),
        "Vector 's' must have non-empty dense values")


def test_limit_non_zero_values_per_sparse_vector(idx, ns):
    at_limit = sparse({i * 7: 0.5 for i in range(1000)})
    assert idx.upsert(vectors=[{"id": "max", "values": vec(1), "sparse_values": at_limit}],
                      namespace=ns).upserted_count == 1
    assert len(idx.fetch(ids=["max"], namespace=ns).vectors["max"].sparse_values.indices) == 1000
    over = sparse({i: 0.5 for i in range(1001)})
    with pytest.raises(PineconeApiException) as info:
        idx.upsert(vectors=[{"id": "over", "values": vec(1), "sparse_values": over}], namespace=ns)
    assert_limit_error(info, "Sparse vector size 1001", "limit of 1000 non-zero values per sparse vector",
                       "vector 'over'")
    with pytest.raises(PineconeApiException) as info:
        idx.query(vector=vec(1), sparse_vector=over, top_k=1, namespace=ns)
    assert_limit_error(info, "Sparse vector size 1001", "the query")
    result = idx.query(vector=[0.0] * DIM, sparse_vector=at_limit, top_k=1, namespace=ns)
    assert result.matches[0].score == pytest.approx(1000 * 0.25)


def test_query_selectors(server, ns):
    server.index().upsert(vectors=[{"id": "a", "values": vec(1), "sparse_values": sparse({1: 1.0})}],
                          namespace=ns)
    # a dense index needs a dense query vector: sparse alone is refused (zeros are the way)
    raw_error(server.http("POST", "/query", json={"namespace": ns, "topK": 1,
                                                  "sparseVector": sparse({1: 1.0})}),
              "Query must provide 'vector'", "all-zero 'vector'")
    with pytest.raises(PineconeApiException) as info:
        server.index().query(sparse_vector=sparse({1: 1.0}), top_k=1, namespace=ns)
    assert_limit_error(info, "Query must provide 'vector'")
    raw_error(server.http("POST", "/query", json={"namespace": ns, "topK": 1, "id": "a",
                                                  "sparseVector": sparse({1: 1.0})}),
              "Cannot provide both 'ID' and 'sparse_vector' at the same time")


def test_stats_and_health_report_dotproduct(server, idx):
    assert idx.describe_index_stats().metric == "dotproduct"
    assert server.http("GET", "/healthz", key=None).json()["metric"] == "dotproduct"


# ----------------------------------------------------------------------------- other metrics
def test_sparse_query_on_cosine_index_is_refused_but_writes_work(tmp_path):
    srv = ServerProcess(tmp_path / "cosine", metric="cosine").start()
    try:
        idx = srv.index()
        # Pinecone docs (Known limitations): upsert, update and fetch succeed on any metric
        idx.upsert(vectors=[{"id": "a", "values": vec(1), "sparse_values": sparse({1: 1.0})}])
        idx.update(id="a", sparse_values=sparse({2: 2.0}))
        assert idx.fetch(ids=["a"]).vectors["a"].sparse_values.indices == [2]
        # ... but querying with sparse values is an error
        with pytest.raises(PineconeApiException) as info:
            idx.query(vector=vec(1), sparse_vector=sparse({2: 1.0}), top_k=1)
        assert_limit_error(info, "Index configuration does not support sparse values", "dotproduct",
                           "cosine")
        # a dense query is fine and ignores the sparse part; values come back with it
        result = idx.query(vector=vec(1), top_k=1, include_values=True)
        assert result.matches[0].score == pytest.approx(1.0)
        assert result.matches[0].sparse_values.indices == [2]
        assert idx.query(id="a", top_k=1).matches[0].score == pytest.approx(1.0)
    finally:
        srv.stop()


# ----------------------------------------------------------------------------- persistence
def test_sparse_values_survive_a_kill_and_restart(tmp_path):
    srv = ServerProcess(tmp_path / "data", metric="dotproduct").start()
    try:
        idx = srv.index()
        rng = np.random.default_rng(5)
        vectors = [{"id": f"p{i}", "values": rng.normal(size=DIM).tolist(),
                    "sparse_values": sparse({int(t): float(rng.random())
                                             for t in rng.choice(500, size=8, replace=False)})}
                   for i in range(200)]
        idx.upsert(vectors=vectors, namespace="keep")
        idx.delete(ids=["p0"], namespace="keep")
        idx.update(id="p1", sparse_values=sparse({4_294_967_295: 9.0}), namespace="keep")
        idx.update(id="p2", values=vec(1), namespace="keep")
        q_sparse = sparse({int(t): 1.0 for t in range(0, 500, 3)} | {4_294_967_295: 1.0})
        before = idx.query(vector=vec(1, 2), sparse_vector=q_sparse, top_k=20, namespace="keep")
        srv.stop(signal.SIGKILL)  # nothing flushed at exit: writes were durable on response

        srv.start()
        idx = srv.index()
        fetched = idx.fetch(ids=["p1", "p2", "p3", "p0"], namespace="keep").vectors
        assert set(fetched) == {"p1", "p2", "p3"}
        assert fetched["p1"].sparse_values.indices == [4_294_967_295]
        assert fetched["p1"].sparse_values.values == [9.0]
        assert fetched["p2"].sparse_values.indices == vectors[2]["sparse_values"]["indices"]
        assert fetched["p3"].sparse_values.values == pytest.approx(
            vectors[3]["sparse_values"]["values"], rel=1e-6)
        after = idx.query(vector=vec(1, 2), sparse_vector=q_sparse, top_k=20, namespace="keep")
        assert [(m.id, round(m.score, 4)) for m in after.matches] == [
            (m.id, round(m.score, 4)) for m in before.matches]
    finally:
        srv.stop()
