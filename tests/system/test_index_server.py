"""System tests: the real local index server in a subprocess, driven by the official SDK.

Each test talks to ``python -m devstack.index_server`` on a free loopback port with a
temporary data directory, through ``Pinecone(api_key=...).Index(host=...)``. Where the
SDK validates an argument client-side (so the request never reaches the server), the
server's own check is exercised with raw HTTP instead.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from pinecone import Pinecone
from pinecone.exceptions import NotFoundException, PineconeApiException, UnauthorizedException
from pinecone.errors import RateLimitError, ServiceError

from devstack.index_server.faults import FAULT_EXEMPT_HEADER
from devstack.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
API_KEY = "local-key"
DIM = 8


# ----------------------------------------------------------------------------- harness
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(self, data_dir: Path, *, dimension: int = DIM, metric: str = "cosine",
                 api_key: str | None = API_KEY, extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.dimension = dimension
        self.metric = metric
        self.api_key = api_key
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        self.port = _free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO / "scripts"), *filter(None, [env.get("PYTHONPATH")])]
        )
        env.pop("INDEX_SERVER_API_KEY", None)
        argv = [sys.executable, "-m", "devstack.index_server", "--host", "127.0.0.1",
                "--port", str(self.port), "--data-dir", str(self.data_dir),
                "--dimension", str(self.dimension), "--metric", self.metric]
        if self.api_key:
            argv += ["--api-key", self.api_key]
        argv += self.extra_args
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"index server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"index server did not become healthy:\n{self.log()}")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def index(self, api_key: str = API_KEY):
        return Pinecone(api_key=api_key).Index(host=self.url)

    def http(self, method: str, path: str, *, key: str | None = API_KEY, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["Api-Key"] = key
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)


def zeroed_stats(server) -> Callable[[], dict]:
    """Sets a local server's added latency (the index server's or the AWS server's, both
    have /_latency and /_stats) back to 0 and zeroes its request counters; returns a
    reader of its /_stats."""
    server.http("PUT", "/_latency", json={"latency_ms": 0})
    server.http("DELETE", "/_stats")
    return lambda: server.http("GET", "/_stats").json()


def held_call(server, call: Callable[[], object], latency_ms: int, check: Callable[[], None]) -> float:
    """Runs *call* in a thread while a local server (the index server or the AWS server,
    both have /_latency) adds *latency_ms* to API requests, runs *check* while the call
    is held, then sets the latency back to 0. Returns the call's duration in seconds."""
    assert server.http("PUT", "/_latency", json={"latency_ms": latency_ms}).json() == {"latency_ms": latency_ms}
    took: list[float] = []

    def timed() -> None:
        started = time.perf_counter()
        call()
        took.append(time.perf_counter() - started)

    caller = threading.Thread(target=timed)
    caller.start()
    try:
        check()
        assert caller.is_alive()
    finally:
        server.http("PUT", "/_latency", json={"latency_ms": 0})
        caller.join(timeout=60)
    assert took, "the held call failed"
    return took[0]


def server_fixture(folder: str):
    """A module-scoped fixture: a local index server on a fresh data directory under
    a temporary folder named *folder*, stopped after the module."""

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        with ServerProcess(tmp_path_factory.mktemp(folder) / "data") as srv:
            yield srv

    return server


server = server_fixture("index")


@pytest.fixture
def idx(server):
    server.http("DELETE", "/_faults")
    yield server.index()
    server.http("DELETE", "/_faults")


@pytest.fixture
def ns() -> str:
    """A fresh namespace per test keeps tests independent on the shared server."""
    return f"t-{uuid.uuid4().hex[:10]}"


def vec(*head: float, dim: int = DIM) -> list[float]:
    values = list(head) + [0.0] * (dim - len(head))
    return values[:dim]


def assert_limit_error(exc_info, *fragments: str, status: int = 400) -> None:
    exc = exc_info.value
    assert isinstance(exc, PineconeApiException)
    assert exc.status_code == status, exc
    assert isinstance(exc.body, dict) and set(exc.body) == {"code", "message", "details"}
    assert exc.body["message"] == exc.message
    for fragment in fragments:
        assert fragment in exc.message, exc.message


# ----------------------------------------------------------------------------- data plane
def test_upsert_query_fetch_roundtrip(idx, ns):
    response = idx.upsert(
        vectors=[
            ("a", vec(1, 0), {"genre": "drama", "year": 2001}),
            ("b", vec(0, 1), {"genre": ["comedy", "drama"], "live": True}),
            {"id": "c", "values": vec(1, 1)},
        ],
        namespace=ns,
    )
    assert response.upserted_count == 3

    result = idx.query(vector=vec(1, 0), top_k=3, namespace=ns, include_values=True,
                       include_metadata=True)
    assert [m.id for m in result.matches] == ["a", "c", "b"]
    assert result.matches[0].score == pytest.approx(1.0)
    assert result.matches[1].score == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert result.matches[2].score == pytest.approx(0.0)
    assert result.matches[0].values == pytest.approx(vec(1, 0))
    assert result.matches[0].metadata == {"genre": "drama", "year": 2001}
    assert result.namespace == ns

    bare = idx.query(vector=vec(1, 0), top_k=2, namespace=ns)
    assert [m.id for m in bare.matches] == ["a", "c"]
    assert bare.matches[0].values == [] and bare.matches[0].metadata is None

    fetched = idx.fetch(ids=["a", "c", "missing"], namespace=ns)
    assert set(fetched.vectors) == {"a", "c"}
    assert fetched.vectors["a"].values == pytest.approx(vec(1, 0))
    assert fetched.vectors["a"].metadata == {"genre": "drama", "year": 2001}
    assert fetched.vectors["c"].metadata is None

    # overwrite keeps one record per id
    idx.upsert(vectors=[("a", vec(0, 0, 1), {"genre": "horror"})], namespace=ns)
    assert idx.fetch(ids=["a"], namespace=ns).vectors["a"].metadata == {"genre": "horror"}
    assert idx.describe_index_stats().namespaces[ns].vector_count == 3


def test_float32_values_come_back_as_sent(idx, ns):
    values = [0.1, -0.2, 0.3, 1e-3, 123.456, -7.0, 0.5, 0.25]
    idx.upsert(vectors=[("f", values)], namespace=ns)
    got = idx.fetch(ids=["f"], namespace=ns).vectors["f"].values
    assert got == pytest.approx(values, rel=1e-6)


def test_query_with_metadata_filters(idx, ns):
    rng = np.random.default_rng(1)
    genres = ["drama", "comedy", "horror"]
    records = []
    for i in range(60):
        meta = {"genre": genres[i % 3], "year": 1990 + i, "even": i % 2 == 0,
                "tags": [f"t{i % 4}", f"t{(i + 1) % 4}"]}
        records.append((f"r{i:02d}", rng.normal(size=DIM).tolist(), meta))
    idx.upsert(vectors=records, namespace=ns)
    by_id = {r[0]: r[2] for r in records}
    q = rng.normal(size=DIM).tolist()

    def ids_for(filter_):
        result = idx.query(vector=q, top_k=100, namespace=ns, filter=filter_, include_metadata=True)
        return {m.id for m in result.matches}

    def expected(pred):
        return {vid for vid, meta in by_id.items() if pred(meta)}

    assert ids_for({"genre": "drama"}) == expected(lambda m: m["genre"] == "drama")
    assert ids_for({"genre": {"$ne": "drama"}}) == expected(lambda m: m["genre"] != "drama")
    assert ids_for({"year": {"$gte": 2000, "$lt": 2010}}) == expected(lambda m: 2000 <= m["year"] < 2010)
    assert ids_for({"genre": {"$in": ["comedy", "horror"]}, "even": True}) == expected(
        lambda m: m["genre"] in ("comedy", "horror") and m["even"])
    assert ids_for({"tags": "t3"}) == expected(lambda m: "t3" in m["tags"])
    assert ids_for({"tags": {"$nin": ["t0"]}}) == expected(lambda m: "t0" not in m["tags"])
    assert ids_for({"$or": [{"year": {"$lt": 1995}}, {"year": {"$gt": 2045}}]}) == expected(
        lambda m: m["year"] < 1995 or m["year"] > 2045)
    assert ids_for({"$and": [{"genre": "horror"}, {"even": False}]}) == expected(
        lambda m: m["genre"] == "horror" and not m["even"])
    assert ids_for({"missing": {"$exists": True}}) == set()
    assert ids_for({"genre": {"$eq": "nope"}}) == set()

    # top_k applies after filtering, ordered by score
    full = idx.query(vector=q, top_k=100, namespace=ns, filter={"genre": "drama"})
    top3 = idx.query(vector=q, top_k=3, namespace=ns, filter={"genre": "drama"})
    assert [m.id for m in top3.matches] == [m.id for m in full.matches[:3]]
    scores = [m.score for m in full.matches]
    assert scores == sorted(scores, reverse=True)

    # writes after filtered queries are seen by the next filtered query
    changed = {"genre": "comedy", "year": 1990, "even": True, "tags": ["t9"]}
    added = {"genre": "drama", "year": 2100, "even": False, "tags": ["t9", "t0"]}
    idx.upsert(vectors=[("r00", records[0][1], changed), ("new", rng.normal(size=DIM).tolist(), added)],
               namespace=ns)
    by_id.update({"r00": changed, "new": added})
    assert ids_for({"genre": "drama"}) == expected(lambda m: m["genre"] == "drama")
    assert ids_for({"tags": "t9"}) == {"r00", "new"}
    assert ids_for({"year": {"$gt": 2050}}) == {"new"}
    idx.delete(ids=["r03", "new"], namespace=ns)
    del by_id["r03"], by_id["new"]
    assert ids_for({"genre": "drama"}) == expected(lambda m: m["genre"] == "drama")
    idx.update(id="r01", set_metadata={"genre": "drama"}, namespace=ns)
    by_id["r01"] = {**by_id["r01"], "genre": "drama"}
    assert ids_for({"genre": "drama"}) == expected(lambda m: m["genre"] == "drama")


def test_invalid_filter_is_a_400(idx, ns):
    idx.upsert(vectors=[("a", vec(1))], namespace=ns)
    with pytest.raises(PineconeApiException) as info:
        idx.query(vector=vec(1), top_k=1, namespace=ns, filter={"year": {"$gt": "2000"}})
    assert_limit_error(info, "Invalid filter", "$gt", "year")
    with pytest.raises(PineconeApiException) as info:
        idx.query(vector=vec(1), top_k=1, namespace=ns, filter={"year": {"$regex": "x"}})
    assert_limit_error(info, "unknown operator '$regex'")


def test_query_by_id(idx, ns):
    idx.upsert(vectors=[("a", vec(1, 0)), ("b", vec(1, 0.1)), ("c", vec(0, 1))], namespace=ns)
    result = idx.query(id="a", top_k=2, namespace=ns)
    assert [m.id for m in result.matches] == ["a", "b"]
    assert idx.query(id="nope", top_k=2, namespace=ns).matches == []


def test_default_namespace_and_alias(idx, server):
    idx.upsert(vectors=[("default-1", vec(1, 2))])
    stats = idx.describe_index_stats()
    assert stats.namespaces["__default__"].vector_count >= 1
    assert "default-1" in idx.fetch(ids=["default-1"], namespace="__default__").vectors
    assert "default-1" in idx.fetch(ids=["default-1"]).vectors
    idx.delete(ids=["default-1"])
    assert idx.fetch(ids=["default-1"]).vectors == {}


def test_list_pagination(idx, ns):
    ids = [f"doc-{i:03d}" for i in range(230)] + [f"other-{i}" for i in range(5)]
    rng = np.random.default_rng(2)
    idx.upsert(vectors=[(i, rng.normal(size=DIM).tolist()) for i in ids], namespace=ns)

    first = idx.list_paginated(prefix="doc-", limit=100, namespace=ns)
    assert [v.id for v in first.vectors] == [f"doc-{i:03d}" for i in range(100)]
    assert first.pagination is not None and first.pagination.next
    second = idx.list_paginated(prefix="doc-", limit=100, namespace=ns,
                                pagination_token=first.pagination.next)
    assert [v.id for v in second.vectors] == [f"doc-{i:03d}" for i in range(100, 200)]
    third = idx.list_paginated(prefix="doc-", limit=100, namespace=ns,
                               pagination_token=second.pagination.next)
    assert [v.id for v in third.vectors] == [f"doc-{i:03d}" for i in range(200, 230)]
    assert third.pagination is None

    pages = list(idx.list(namespace=ns, limit=40))
    listed = [v.id for page in pages for v in page.vectors]
    assert listed == sorted(ids)
    assert len(pages) == math.ceil(len(ids) / 40)
    assert [v.id for v in idx.list_paginated(prefix="other-", namespace=ns).vectors] == [
        f"other-{i}" for i in range(5)]
    assert idx.list_paginated(prefix="zzz", namespace=ns).vectors == []

    with pytest.raises(PineconeApiException) as info:
        idx.list_paginated(namespace=ns, pagination_token="not-a-token!")
    assert_limit_error(info, "Invalid pagination token")


def test_delete_by_ids_filter_and_all_with_stats(idx, ns):
    other = ns + "-b"
    idx.upsert(vectors=[(f"v{i}", vec(1, i), {"group": "x" if i < 5 else "y", "n": i})
                        for i in range(10)], namespace=ns)
    idx.upsert(vectors=[("w1", vec(0, 1))], namespace=other)
    stats = idx.describe_index_stats()
    assert stats.dimension == DIM
    assert stats.namespaces[ns].vector_count == 10
    assert stats.namespaces[other].vector_count == 1
    assert stats.total_vector_count == sum(s.vector_count for s in stats.namespaces.values())
    assert stats.index_fullness == 0.0
    assert stats.metric == "cosine"

    idx.delete(ids=["v0", "v1", "missing"], namespace=ns)
    assert idx.describe_index_stats().namespaces[ns].vector_count == 8
    idx.delete(filter={"group": "x", "n": {"$gte": 3}}, namespace=ns)
    remaining = sorted(v.id for page in idx.list(namespace=ns) for v in page.vectors)
    assert remaining == ["v2", "v5", "v6", "v7", "v8", "v9"]
    # the filtered delete did not touch the other namespace
    assert idx.describe_index_stats().namespaces[other].vector_count == 1

    idx.delete(delete_all=True, namespace=ns)
    stats = idx.describe_index_stats()
    assert ns not in stats.namespaces
    assert stats.namespaces[other].vector_count == 1

    # GET /describe_index_stats answers too, in Pinecone's camelCase
    response = httpx.get(f"{idx.host}/describe_index_stats", headers={"Api-Key": API_KEY})
    body = response.json()
    assert response.status_code == 200
    assert body["dimension"] == DIM and "totalVectorCount" in body and "indexFullness" in body
    assert body["namespaces"][other] == {"vectorCount": 1}


def test_update_values_and_metadata(idx, ns):
    idx.upsert(vectors=[("a", vec(1), {"genre": "drama", "year": 2001}),
                        ("b", vec(0, 1), {"genre": "drama"})], namespace=ns)
    assert idx.update(id="a", set_metadata={"year": 2002, "rating": 5}, namespace=ns)
    fetched = idx.fetch(ids=["a"], namespace=ns).vectors["a"]
    assert fetched.metadata == {"genre": "drama", "year": 2002, "rating": 5}
    idx.update(id="a", values=vec(0, 0, 1), namespace=ns)
    assert idx.fetch(ids=["a"], namespace=ns).vectors["a"].values == pytest.approx(vec(0, 0, 1))
    assert idx.query(vector=vec(0, 0, 1), top_k=1, namespace=ns).matches[0].id == "a"
    # filters see updated metadata
    hits = idx.query(vector=vec(1), top_k=5, namespace=ns, filter={"year": 2002})
    assert [m.id for m in hits.matches] == ["a"]

    result = idx.update(filter={"genre": "drama"}, set_metadata={"genre": "classic"}, namespace=ns)
    assert result.matched_records == 2
    assert {v.metadata["genre"] for v in idx.fetch(ids=["a", "b"], namespace=ns).vectors.values()} == {"classic"}

    with pytest.raises(PineconeApiException) as info:
        idx.update(id="a", values=[1.0, 2.0], namespace=ns)
    assert_limit_error(info, "dimension 2 does not match the dimension of the index 8")

    # the merged metadata must stay within the per-record limit; a refused update changes nothing
    idx.upsert(vectors=[("big", vec(1), {"text": "y" * 30_000})], namespace=ns)
    with pytest.raises(PineconeApiException) as info:
        idx.update(id="big", set_metadata={"more": "z" * 20_000}, namespace=ns)
    assert_limit_error(info, "exceeds the limit of 40960 bytes per vector", "vector 'big'")
    assert idx.fetch(ids=["big"], namespace=ns).vectors["big"].metadata == {"text": "y" * 30_000}


# ----------------------------------------------------------------------------- limits
def test_limit_vectors_per_upsert(idx, ns):
    vectors = [(f"id-{i}", vec(1, i)) for i in range(1001)]
    with pytest.raises(PineconeApiException) as info:
        idx.upsert(vectors=vectors, namespace=ns)
    assert_limit_error(info, "1001 vectors", "limit of 1000 vectors per upsert request")
    assert idx.upsert(vectors=vectors[:1000], namespace=ns).upserted_count == 1000


def test_limit_request_size(idx, ns):
    big_meta = {"text": "x" * 39_000}
    vectors = [(f"id-{i}", vec(1, i), big_meta) for i in range(60)]
    with pytest.raises(PineconeApiException) as info:
        idx.upsert(vectors=vectors, namespace=ns)
    assert_limit_error(info, "Request size is", "exceeds the limit of 2097152 bytes (2 MB) per request")
    assert idx.describe_index_stats().namespaces.get(ns) is None


@pytest.mark.parametrize("raw, fragment", [
    pytest.param(b"{not json", "not valid JSON", id="syntax"),
    pytest.param(b'{"vector": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply", id="deep-nesting"),
])
def test_malformed_json_bodies_are_a_400(server, raw, fragment):
    resp = server.http("POST", "/query", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert fragment in resp.json()["message"]


def test_limit_metadata_size(idx, ns):
    with pytest.raises(PineconeApiException) as info:
        idx.upsert(vectors=[("big", vec(1), {"text": "y" * 41_000})], namespace=ns)
    assert_limit_error(info, "Metadata size is 41011 bytes", "exceeds the limit of 40960 bytes per vector")
    # just under the limit is fine: {"text":"..."} adds 11 bytes of JSON around the string
    idx.upsert(vectors=[("ok", vec(1), {"text": "y" * (40960 - 11)})], namespace=ns)


def test_limit_id_length(idx, ns):
    with pytest.raises(PineconeApiException) as info:
        idx.upsert(vectors=[("i" * 513, vec(1))], namespace=ns)
    assert_limit_error(info, "513 characters", "exceeds the limit of 512 characters")
    idx.upsert(vectors=[("i" * 512, vec(1))], namespace=ns)


def test_limit_dimension(idx, ns):
    with pytest.raises(PineconeApiException) as info:
        idx.upsert(vectors=[("a", [1.0, 2.0, 3.0])], namespace=ns)
    assert_limit_error(info, "Vector dimension 3 does not match the dimension of the index 8")
    with pytest.raises(PineconeApiException) as info:
        idx.query(vector=[1.0] * 9, top_k=1, namespace=ns)
    assert_limit_error(info, "Query vector dimension 9 does not match the dimension of the index 8")


def test_limit_top_k(idx, server, ns):
    idx.upsert(vectors=[("a", vec(1))], namespace=ns)
    # The SDK refuses top_k > 10000 itself, so send that one raw.
    response = server.http("POST", "/query", json={"vector": vec(1), "topK": 10_001, "namespace": ns})
    assert response.status_code == 400
    assert "exceeds the limit of 10000" in response.json()["message"]
    assert idx.query(vector=vec(1), top_k=10_000, namespace=ns).matches[0].id == "a"
    with pytest.raises(PineconeApiException) as info:
        idx.query(vector=vec(1), top_k=1001, namespace=ns, include_metadata=True)
    assert_limit_error(info, "top_k is 1001", "limit of 1000 results per query when includeValues or includeMetadata")


def test_limit_ids_per_fetch_and_delete(idx, ns):
    ids = [f"id-{i}" for i in range(1001)]
    with pytest.raises(PineconeApiException) as info:
        idx.fetch(ids=ids, namespace=ns)
    assert_limit_error(info, "Fetch request contains 1001 ids", "limit of 1000 ids per request")
    with pytest.raises(PineconeApiException) as info:
        idx.delete(ids=ids, namespace=ns)
    assert_limit_error(info, "Delete request contains 1001 ids", "limit of 1000 ids per request")
    assert idx.fetch(ids=ids[:1000], namespace=ns).vectors == {}


def test_limit_nan_values(idx, server, ns):
    with pytest.raises(PineconeApiException) as info:
        idx.upsert(vectors=[("a", vec(1, float("nan")))], namespace=ns)
    assert_limit_error(info, "NaN", "vector 'a'", "position 1")
    # A client that writes the NaN token itself (Python's json module does) is refused too.
    response = server.http(
        "POST", "/vectors/upsert",
        content=b'{"namespace": "%s", "vectors": [{"id": "b", "values": [1, NaN, 0, 0, 0, 0, 0, 0]}]}'
        % ns.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400 and "NaN" in response.json()["message"]
    with pytest.raises(PineconeApiException) as info:
        idx.query(vector=vec(float("inf")), top_k=1, namespace=ns)
    assert_limit_error(info, "NaN and infinite values are not allowed")


def test_limit_metadata_value_types(server, ns):
    # The SDK rejects these before sending, so exercise the server's own check raw.
    for bad in ({"nested": {"a": 1}}, {"mixed": ["a", 1]}, {"$bad": "x"}):
        response = server.http("POST", "/vectors/upsert",
                               json={"namespace": ns, "vectors": [{"id": "a", "values": vec(1),
                                                                   "metadata": bad}]})
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["code"] == 3 and body["details"] == []
        assert "Metadata" in body["message"]
    ok = server.http("POST", "/vectors/upsert",
                     json={"namespace": ns, "vectors": [{"id": "a", "values": vec(1),
                                                         "metadata": {"s": "x", "n": 1.5, "b": False,
                                                                      "l": ["p", "q"], "gone": None}}]})
    assert ok.status_code == 200 and ok.json() == {"upsertedCount": 1}
    fetched = server.http("GET", "/vectors/fetch", params={"ids": "a", "namespace": ns}).json()
    assert fetched["vectors"]["a"]["metadata"] == {"s": "x", "n": 1.5, "b": False, "l": ["p", "q"]}


def test_all_zero_vector_rejected_for_cosine(idx, ns):
    with pytest.raises(PineconeApiException) as info:
        idx.upsert(vectors=[("z", [0.0] * DIM)], namespace=ns)
    assert_limit_error(info, "at least one non-zero value")


# ----------------------------------------------------------------------------- auth, errors
def test_bad_api_key_is_401(server):
    with pytest.raises(UnauthorizedException) as info:
        server.index(api_key="wrong-key").describe_index_stats()
    assert info.value.status_code == 401
    assert info.value.body["code"] == 16
    assert "Invalid API Key" in info.value.message
    missing = server.http("POST", "/describe_index_stats", key=None, json={})
    assert missing.status_code == 401 and missing.json()["code"] == 16
    # health is open without a key
    assert server.http("GET", "/healthz", key=None).status_code == 200


def test_the_fault_exempt_header_does_not_exempt_a_request_from_the_api_key(server):
    exempt = {FAULT_EXEMPT_HEADER: "1"}
    missing = server.http("POST", "/describe_index_stats", key=None, json={}, headers=dict(exempt))
    wrong = server.http("POST", "/describe_index_stats", key="wrong-key", json={}, headers=dict(exempt))
    right = server.http("POST", "/describe_index_stats", json={}, headers=dict(exempt))
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)


def test_unknown_path_is_pinecone_shaped_404(server):
    response = server.http("GET", "/no/such/path")
    assert response.status_code == 404
    assert response.json() == {"code": 5, "message": "Not Found", "details": []}


def test_request_log_lines(idx, server, ns):
    idx.upsert(vectors=[("logged", vec(0.123456, 0.654321))], namespace=ns)
    time.sleep(0.2)
    log = server.log()
    assert "POST /vectors/upsert 200" in log
    assert "0.123456" not in log  # no vector values in logs


# ----------------------------------------------------------------------------- faults
def test_fault_injection_429_then_recovers(idx, server, ns):
    idx.upsert(vectors=[("a", vec(1))], namespace=ns)

    # one 429: the SDK's own retry absorbs it
    server.http("POST", "/_faults", key=None, json={"status": 429, "count": 1, "paths": ["/query"]})
    assert idx.query(vector=vec(1), top_k=1, namespace=ns).matches[0].id == "a"
    assert server.http("GET", "/_faults", key=None).json()["faults"] == []

    # more 429s than the SDK's 4 attempts: the caller sees RateLimitError (a 429 ApiError)
    server.http("POST", "/_faults", key=None,
                json={"status": 429, "count": 4, "paths": ["/query"], "retry_after_seconds": 0})
    with pytest.raises(RateLimitError) as info:
        idx.query(vector=vec(1), top_k=1, namespace=ns)
    assert isinstance(info.value, PineconeApiException)
    assert info.value.status_code == 429
    assert info.value.body["code"] == 8
    assert "Injected fault" in info.value.message
    # ... and the next request goes through
    assert idx.query(vector=vec(1), top_k=1, namespace=ns).matches[0].id == "a"

    # other paths were not affected by a path-scoped rule
    server.http("POST", "/_faults", key=None, json={"status": 503, "count": 4, "paths": ["/vectors/upsert"],
                                                    "retry_after_seconds": 0})
    assert idx.query(vector=vec(1), top_k=1, namespace=ns).matches
    with pytest.raises(ServiceError) as info:
        idx.upsert(vectors=[("b", vec(0, 1))], namespace=ns)
    assert info.value.status_code == 503
    assert idx.fetch(ids=["b"], namespace=ns).vectors == {}


def test_fault_delay_and_clear(idx, server, ns):
    idx.upsert(vectors=[("a", vec(1))], namespace=ns)
    server.http("POST", "/_faults", key=None, json={"delay_seconds": 0.6, "count": 1})
    started = time.monotonic()
    assert idx.fetch(ids=["a"], namespace=ns).vectors
    assert time.monotonic() - started >= 0.6

    server.http("POST", "/_faults", key=None, json={"status": 500, "count": 100})
    assert len(server.http("GET", "/_faults", key=None).json()["faults"]) == 1
    assert server.http("DELETE", "/_faults", key=None).status_code == 200
    assert idx.fetch(ids=["a"], namespace=ns).vectors

    bad = server.http("POST", "/_faults", key=None, json={"status": 200})
    assert bad.status_code == 400


def test_clearing_faults_releases_stalled_requests(idx, server, ns):
    idx.upsert(vectors=[("a", vec(1))], namespace=ns)
    server.http("POST", "/_faults", key=None, json={"delay_seconds": 120, "count": 1, "paths": ["/vectors/fetch"]})
    with ThreadPoolExecutor(1) as pool:
        stalled = pool.submit(lambda: idx.fetch(ids=["a"], namespace=ns))
        wait_until(lambda: server.http("GET", "/_faults", key=None).json()["in_flight_requests"] == 1, 10, what="the fetch stalled")
        assert not stalled.done()
        server.http("DELETE", "/_faults", key=None)
        assert "a" in stalled.result(timeout=20).vectors  # well before the 120 s delay
    assert server.http("GET", "/_faults", key=None).json()["in_flight_requests"] == 0


def test_fault_exempt_requests_neither_fail_nor_consume_faults(idx, server, ns):
    idx.upsert(vectors=[("a", vec(1))], namespace=ns)
    server.http("POST", "/_faults", key=None, json={"status": 500, "count": 2, "paths": ["/vectors/fetch"]})
    exempt = server.http("GET", f"/vectors/fetch?ids=a&namespace={ns}", headers={"X-Devstack-Fault-Exempt": "1"})
    assert exempt.status_code == 200 and "a" in exempt.json()["vectors"]
    assert server.http("GET", "/_faults", key=None).json()["faults"][0]["count"] == 2
    plain = server.http("GET", f"/vectors/fetch?ids=a&namespace={ns}")
    assert plain.status_code == 500
    assert server.http("GET", "/_faults", key=None).json()["faults"][0]["count"] == 1


# ----------------------------------------------------------------------------- concurrency
def test_concurrent_writers_and_readers(idx, ns):
    def write(worker: int) -> int:
        rng = np.random.default_rng(worker)
        total = 0
        for batch in range(5):
            vectors = [(f"w{worker}-{batch}-{i}", rng.normal(size=DIM).tolist(), {"worker": worker})
                       for i in range(40)]
            total += idx.upsert(vectors=vectors, namespace=ns).upserted_count
            idx.query(vector=rng.normal(size=DIM).tolist(), top_k=5, namespace=ns,
                      filter={"worker": worker})
        return total

    with ThreadPoolExecutor(max_workers=6) as pool:
        written = sum(pool.map(write, range(6)))
    assert written == 6 * 5 * 40
    assert idx.describe_index_stats().namespaces[ns].vector_count == written
    for worker in range(6):
        hits = idx.query(vector=vec(1), top_k=1000, namespace=ns, filter={"worker": worker})
        assert len(hits.matches) == 200


# ----------------------------------------------------------------------------- persistence
def test_restart_keeps_data(tmp_path):
    srv = ServerProcess(tmp_path / "data").start()
    try:
        idx = srv.index()
        rng = np.random.default_rng(3)
        vectors = [(f"p{i}", rng.normal(size=DIM).tolist(), {"i": i, "tag": f"t{i % 3}"})
                   for i in range(300)]
        idx.upsert(vectors=vectors, namespace="keep")
        idx.upsert(vectors=[("d1", vec(1))])
        idx.delete(ids=["p0", "p1"], namespace="keep")
        idx.update(id="p2", set_metadata={"tag": "updated"}, namespace="keep")
        before = idx.query(vector=vec(1, 2, 3), top_k=10, namespace="keep", filter={"tag": "t1"})
        # SIGKILL: nothing is flushed at exit, so this proves writes were durable on response
        srv.stop(signal.SIGKILL)

        srv.start()
        idx = srv.index()
        stats = idx.describe_index_stats()
        assert stats.namespaces["keep"].vector_count == 298
        assert stats.namespaces["__default__"].vector_count == 1
        assert idx.fetch(ids=["p0"], namespace="keep").vectors == {}
        p5 = idx.fetch(ids=["p5"], namespace="keep").vectors["p5"]
        assert p5.values == pytest.approx(vectors[5][1], rel=1e-6)
        assert p5.metadata == {"i": 5, "tag": "t2"}
        assert idx.fetch(ids=["p2"], namespace="keep").vectors["p2"].metadata["tag"] == "updated"
        after = idx.query(vector=vec(1, 2, 3), top_k=10, namespace="keep", filter={"tag": "t1"})
        assert [(m.id, round(m.score, 5)) for m in after.matches] == [
            (m.id, round(m.score, 5)) for m in before.matches]
    finally:
        srv.stop()


def test_refuses_data_dir_with_other_dimension(tmp_path):
    srv = ServerProcess(tmp_path / "data").start()
    srv.index().upsert(vectors=[("a", vec(1))])
    srv.stop()
    other = ServerProcess(tmp_path / "data", dimension=16)
    with pytest.raises(RuntimeError, match="dimension=8"):
        other.start()


def test_other_metrics(tmp_path):
    for metric, expected_order, first_score in (
        ("dotproduct", ["big", "a", "b"], 3.0),
        ("euclidean", ["a", "b", "big"], 0.0),
    ):
        srv = ServerProcess(tmp_path / metric, metric=metric, api_key=None).start()
        try:
            idx = srv.index()
            idx.upsert(vectors=[("a", vec(1, 0)), ("b", vec(0, 1)), ("big", vec(3, 3))])
            result = idx.query(vector=vec(1, 0), top_k=3)
            assert [m.id for m in result.matches] == expected_order
            assert result.matches[0].score == pytest.approx(first_score)
            if metric == "euclidean":  # squared distance, as Pinecone reports it
                assert result.matches[1].score == pytest.approx(2.0)
        finally:
            srv.stop()


# ----------------------------------------------------------------------------- extras
def test_fetch_by_metadata_and_namespace_calls(idx, ns):
    idx.upsert(vectors=[(f"v{i}", vec(1, i), {"g": "odd" if i % 2 else "even"}) for i in range(1, 8)],
               namespace=ns)
    first = idx.fetch_by_metadata(filter={"g": "odd"}, namespace=ns, limit=2)
    assert sorted(first.vectors) == ["v1", "v3"]
    second = idx.fetch_by_metadata(filter={"g": "odd"}, namespace=ns, limit=2,
                                   pagination_token=first.pagination.next)
    assert sorted(second.vectors) == ["v5", "v7"] and second.pagination is None
    assert second.vectors["v5"].metadata == {"g": "odd"}

    assert idx.describe_namespace(name=ns).record_count == 7
    assert ns in {n.name for page in idx.list_namespaces() for n in page.namespaces}
    idx.delete_namespace(name=ns)
    assert ns not in idx.describe_index_stats().namespaces
    with pytest.raises(NotFoundException):
        idx.describe_namespace(name=ns)


def test_async_index_client(server, ns):
    async def scenario():
        index = Pinecone(api_key=API_KEY).IndexAsyncio(host=server.url)
        async with index:
            await index.upsert(vectors=[("x", vec(1, 2)), ("y", vec(2, 1))], namespace=ns)
            result = await index.query(vector=vec(1, 2), top_k=1, namespace=ns)
            fetched = await index.fetch(ids=["y"], namespace=ns)
            return result.matches[0].id, sorted(fetched.vectors)

    assert asyncio.run(scenario()) == ("x", ["y"])


def test_early_answers_reach_clients_sending_large_bodies(server, idx, ns):
    """429 faults, 401 and oversize refusals come back as statuses, not connection resets."""
    big = [(f"b{i}", vec(1, i), {"text": "x" * 38_000}) for i in range(50)]  # ~1.9 MB
    server.http("POST", "/_faults", key=None, json={"status": 429, "count": 4, "retry_after_seconds": 0,
                                                    "paths": ["/vectors/upsert"]})
    with pytest.raises(RateLimitError):
        idx.upsert(vectors=big, namespace=ns)
    with pytest.raises(UnauthorizedException):
        server.index(api_key="wrong").upsert(vectors=big, namespace=ns)
    huge = server.http("POST", "/vectors/upsert", content=b"{" + b" " * (8 * 1024 * 1024) + b"}",
                       headers={"Content-Type": "application/json"})
    assert huge.status_code == 400
    assert "exceeds the limit of 2097152 bytes (2 MB) per request" in huge.json()["message"]
    assert idx.upsert(vectors=big, namespace=ns).upserted_count == 50
