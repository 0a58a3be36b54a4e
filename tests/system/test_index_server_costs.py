"""System tests: the index server's added latency and its request accounting, driven by
the official SDK as in test_index_server.py.

What the server counts is compared with what the SDK sent, counted on the client side
at httpx's transport (every HTTP request the SDK makes goes through it), and the read
and write units with Pinecone's cost model (docs: "Understand Pinecone cost"), worked
out here by hand for records of a known size.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import httpx
import pytest

from tests.system.test_index_server import ServerProcess, held_call, server_fixture, vec, zeroed_stats

pytestmark = pytest.mark.timeout(120)

LATENCY_MS = 8_000  # long enough that the control calls below finish well within it


server = server_fixture("costs")


@pytest.fixture
def stats(server):
    """Reads the server's counters, zeroed at the start of the test."""
    return zeroed_stats(server)


@pytest.fixture
def sdk_requests(monkeypatch):
    """(method, path) -> count, and body bytes sent, of the HTTP requests the SDK makes."""
    seen: Counter = Counter()
    sent = {"bytes": 0}
    inner = httpx.HTTPTransport.handle_request

    def counting(self, request: httpx.Request) -> httpx.Response:
        seen[(request.method, request.url.path)] += 1
        sent["bytes"] += len(request.content)
        return inner(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", counting)
    return seen, sent


def record(i: int) -> dict:
    """A record of exactly 100 bytes as Pinecone sizes it: a 4-byte id, 64 bytes of
    metadata ({"t":"..."}) and 8 dimensions x 4 bytes."""
    return {"id": f"r{i:03d}", "values": vec(1.0, float(i)), "metadata": {"t": "x" * 56}}


def test_the_server_counts_each_request_the_sdk_makes_with_its_bytes(server, stats, sdk_requests):
    seen, sent = sdk_requests
    idx, ns = server.index(), f"c-{uuid.uuid4().hex[:8]}"
    idx.upsert(vectors=[record(i) for i in range(250)], namespace=ns, batch_size=100, show_progress=False)
    idx.upsert(vectors=[record(i) for i in range(250)], namespace=ns)
    idx.fetch(ids=[f"r{i:03d}" for i in range(25)], namespace=ns)
    idx.query(vector=vec(1.0), top_k=5, namespace=ns)
    ids = [v.id for page in idx.list(namespace=ns) for v in page.vectors]
    idx.delete(ids=ids[:30], namespace=ns)
    idx.update(id="r100", set_metadata={"t": "y"}, namespace=ns)
    idx.describe_index_stats()
    assert len(ids) == 250
    sdk, sent_bytes = dict(seen), sent["bytes"]  # before the test's own call to /_stats

    counted = stats()
    names = {"/vectors/upsert": "upsert", "/vectors/fetch": "fetch", "/query": "query", "/vectors/list": "list",
             "/vectors/delete": "delete", "/vectors/update": "update", "/describe_index_stats": "describe_index_stats"}
    by_op = Counter()
    for (_method, path), n in sdk.items():
        by_op[names[path]] += n
    assert by_op["upsert"] == 3 + 1 and by_op["list"] == 3  # batch_size=100 splits 250 records in three
    assert {op: row["requests"] for op, row in counted["operations"].items()} == dict(by_op)
    assert counted["totals"]["requests"] == sum(sdk.values())
    assert counted["totals"]["request_bytes"] == sent_bytes
    assert counted["totals"]["errors"] == 0
    assert all(row["response_bytes"] > 0 for row in counted["operations"].values())


def test_read_and_write_units_follow_pinecone_cost_model(server, stats):
    idx, ns = server.index(), f"c-{uuid.uuid4().hex[:8]}"

    def units(op: str) -> tuple[float, int]:
        row = stats()["operations"][op]
        return row["read_units"], row["write_units"]

    # Upsert: 1 WU per KB of the request, at least 5; 100 records of 100 bytes: 10 WUs.
    idx.upsert(vectors=[record(i) for i in range(250)], namespace=ns, batch_size=100, show_progress=False)  # 10 + 10 + 5
    assert units("upsert") == (0, 25)
    assert stats()["operations"]["upsert"]["record_bytes"] == 25_000
    # Overwriting also costs the existing records: 25 KB sent + 25 KB replaced.
    idx.upsert(vectors=[record(i) for i in range(250)], namespace=ns)
    assert units("upsert") == (0, 25 + 50)
    idx.upsert(vectors=[record(999)], namespace=ns)  # 0.1 KB: the 5 WU minimum
    assert units("upsert") == (0, 25 + 50 + 5)

    # Fetch: 1 RU per 10 records found; missing and repeated ids add nothing.
    fetched = idx.fetch(ids=[f"r{i:03d}" for i in range(25)] + ["nope", "r000"], namespace=ns)
    assert len(fetched.vectors) == 25 and fetched.usage.read_units == 3
    assert units("fetch") == (3, 0)
    idx.fetch(ids=["nope"], namespace=ns)  # at least 1 RU
    assert units("fetch") == (4, 0)

    # Query: 1 RU per GB of namespace, at least 0.25; top_k and includes change nothing.
    idx.query(vector=vec(1.0), top_k=5, namespace=ns)
    idx.query(vector=vec(1.0), top_k=200, include_metadata=True, include_values=True, namespace=ns)
    assert units("query") == (0.5, 0)

    # List: 1 RU per page of up to 100 ids.
    assert sum(len(page.vectors) for page in idx.list(namespace=ns)) == 251
    assert units("list") == (3, 0)

    # Delete: 1 WU per KB of records deleted, at least 5; deleteAll 5 WUs.
    idx.delete(ids=[f"r{i:03d}" for i in range(120)] + ["nope"], namespace=ns)  # 12 KB
    assert units("delete") == (0, 12)
    idx.delete(ids=["r120"], namespace=ns)
    assert units("delete") == (0, 12 + 5)

    # Update: 1 WU per KB of the new and the existing record, at least 5.
    idx.update(id="r200", set_metadata={"t": "x" * 5_000}, namespace=ns)  # 0.1 KB before, 5.044 KB after
    assert units("update") == (0, 6)

    idx.delete(delete_all=True, namespace=ns)
    assert units("delete") == (0, 12 + 5 + 5)
    idx.describe_index_stats()
    assert units("describe_index_stats") == (0, 0)


def test_latency_is_added_to_api_requests_but_not_to_the_control_endpoints(server, stats):
    idx = server.index()

    def control_endpoints_answer() -> None:
        # While the API request is held, every control endpoint answers: none waits.
        deadline = time.monotonic() + 5
        while server.http("GET", "/_faults").json()["in_flight_requests"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.http("GET", "/healthz").status_code == 200
        assert server.http("GET", "/_latency").json() == {"latency_ms": LATENCY_MS}
        assert stats()["latency_ms"] == LATENCY_MS
        assert server.http("GET", "/_faults").json()["in_flight_requests"] == 1

    assert held_call(server, idx.describe_index_stats, LATENCY_MS, control_endpoints_answer) >= LATENCY_MS / 1000
    # The control calls were not counted; the held request was.
    assert {op: row["requests"] for op, row in stats()["operations"].items()} == {"describe_index_stats": 1}

    # A latency set at run time applies to the next request.
    server.http("PUT", "/_latency", json={"latency_ms": 300})
    started = time.perf_counter()
    idx.describe_index_stats()
    assert time.perf_counter() - started >= 0.3
    refused = server.http("PUT", "/_latency", json={"latency_ms": -5})
    assert refused.status_code == 400 and "latency_ms" in refused.json()["message"]


def test_the_latency_option_applies_from_the_start(tmp_path):
    srv = ServerProcess(tmp_path / "data", extra_args=("--latency-ms", "250")).start()
    try:
        assert srv.http("GET", "/_latency").json() == {"latency_ms": 250}
        started = time.perf_counter()
        srv.index().describe_index_stats()
        assert time.perf_counter() - started >= 0.25
    finally:
        srv.stop()


def test_a_reset_hands_over_the_counts_and_starts_again(server, stats):
    idx = server.index()
    idx.describe_index_stats()
    server.http("POST", "/query", json={"topK": 0, "vector": vec(1.0)})  # a 400 counts, as an error
    held = server.http("DELETE", "/_stats").json()
    assert held["operations"]["describe_index_stats"]["requests"] == 1
    assert held["operations"]["query"] == {**held["operations"]["query"], "requests": 1, "errors": 1, "read_units": 0}
    after = stats()
    assert after["operations"] == {} and after["totals"]["requests"] == 0
