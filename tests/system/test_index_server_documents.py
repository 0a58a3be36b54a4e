"""System tests: document indexes (Pinecone's Documents API) on the real local index
server in a subprocess, driven by the official SDK: ``pc.indexes`` for the control
plane, ``pc.index(host=...).documents`` for the data plane. Where the SDK refuses an
argument before sending it, the server's own check is exercised with raw HTTP.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from pinecone import Pinecone, SchemaBuilder
from pinecone.errors import ForbiddenError, NotFoundError
from pinecone.exceptions import PineconeApiException

from tests.system.test_index_server import API_KEY, ServerProcess, server_fixture

pytestmark = pytest.mark.timeout(120)

DIM = 4


server = server_fixture("docindex")


@pytest.fixture(scope="module")
def pc(server) -> Pinecone:
    return Pinecone(api_key=API_KEY, host=server.url)


def product_schema() -> dict:
    return (
        SchemaBuilder()
        .add_dense_vector_field(name="embedding", dimension=DIM, metric="dotproduct")
        .add_sparse_vector_field(name="keywords")
        .add_string_field(name="text", full_text_search={"language": "en", "stemming": True})
        .add_string_field(name="sku", full_text_search={})
        .build()
    )


@pytest.fixture(scope="module")
def docindex(pc):
    model = pc.indexes.create(name="products-docs", schema=product_schema())
    return pc.index(host=model.host)


@pytest.fixture
def ns() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


CATALOG = [
    {"_id": "p1", "embedding": [1, 0, 0, 0], "text": "Trail running shoes with a grippy sole",
     "sku": "SKU-qHUp-446", "category": "shoes", "price": 120},
    {"_id": "p2", "embedding": [0, 1, 0, 0], "text": "Wireless noise cancelling headphones",
     "sku": "WH-1000XM4", "category": "audio", "price": 300,
     "keywords": {"indices": [7, 11], "values": [0.5, 2.0]}},
    {"_id": "p3", "embedding": [0, 0, 1, 0], "text": "Running socks, shoes not included",
     "sku": "SOCK-9", "category": "shoes", "price": 15},
    {"_id": "p4", "embedding": [0.5, 0.5, 0, 0], "text": "Headphones stand for wireless headsets",
     "category": "audio", "price": 40, "keywords": {"indices": [7], "values": [1.0]}},
]


def load(docindex, ns: str) -> None:
    assert docindex.documents.upsert(namespace=ns, documents=CATALOG).upserted_count == len(CATALOG)


def ids(response) -> list[str]:
    return [m.id for m in response.matches]


# ----------------------------------------------------------------------------- control plane
def test_create_describe_list_and_schema(pc, docindex):
    described = pc.indexes.describe("products-docs")
    assert described.status.ready
    assert described.deletion_protection == "disabled"
    fields = described.schema.to_dict()["fields"] if hasattr(described.schema, "to_dict") else described.schema["fields"]
    assert set(fields) == {"embedding", "keywords", "text", "sku"}
    assert described.host.endswith("/document-indexes/products-docs")
    assert "products-docs" in [m.name for m in pc.indexes.list()]
    with pytest.raises(PineconeApiException) as exc:
        pc.indexes.create(name="products-docs", schema=product_schema())
    assert exc.value.status_code == 409


def test_deletion_protection_and_tags(pc):
    pc.indexes.create(name="guarded", schema=product_schema(), deletion_protection="enabled", tags={"team": "search"})
    with pytest.raises(ForbiddenError):
        pc.indexes.delete("guarded")
    assert pc.indexes.exists("guarded")
    model = pc.indexes.configure("guarded", deletion_protection="disabled", tags={"team": "", "env": "dev"})
    assert model.deletion_protection == "disabled"
    assert dict(model.tags) == {"env": "dev"}
    pc.indexes.delete("guarded")
    assert not pc.indexes.exists("guarded")
    with pytest.raises(NotFoundError):
        pc.indexes.describe("guarded")


def test_protection_and_tags_the_server_refuses(server):
    """Values the SDK would refuse before sending: the server's own checks, on create
    and on configure, answer 400 in the control-plane shape and change nothing."""
    schema = {"fields": {"text": {"type": "string", "full_text_search": {}}}}
    bad = [({"deletion_protection": "sometimes"}, "deletion_protection must be"),
           ({"tags": {"team": 7}}, "tags must be an object of strings"),
           ({"tags": ["team"]}, "tags must be an object of strings")]
    for body, fragment in bad:
        response = server.http("POST", "/indexes", json={"name": "bad-settings", "schema": schema, **body})
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "INVALID_ARGUMENT" and fragment in error["message"]
    assert server.http("GET", "/indexes/bad-settings").status_code == 404
    assert server.http("POST", "/indexes", json={"name": "settings", "schema": schema,
                                                 "tags": {"team": "search"}}).status_code == 201
    for body, fragment in bad:
        response = server.http("PATCH", "/indexes/settings", json=body)
        assert response.status_code == 400 and fragment in response.json()["error"]["message"], response.text
    described = server.http("GET", "/indexes/settings").json()
    assert described["deletion_protection"] == "disabled" and described["tags"] == {"team": "search"}
    long_ns = "n" * 513
    response = server.http("POST", f"/document-indexes/settings/namespaces/{long_ns}/documents/list", json={})
    assert response.status_code == 400
    assert response.json()["message"] == ("Namespace length is 513 characters, which exceeds the limit of 512 "
                                           "characters")
    assert server.http("DELETE", "/indexes/settings").status_code == 202


def test_schema_the_server_refuses(server):
    cases = [
        ({"fields": {"body": {"type": "string", "embed": {"model": "llama-text-embed-v2"}}}}, "integrated embedding"),
        ({"fields": {"_values": {"type": "dense_vector", "dimension": 4}}}, "legacy vector index"),
        ({"fields": {"v": {"type": "dense_vector", "dimension": 4, "metric": "manhattan"}}}, "metric"),
        ({"fields": {"a": {"type": "dense_vector", "dimension": 4}, "b": {"type": "dense_vector", "dimension": 4}}},
         "at most one dense_vector"),
        ({"fields": {"t": {"type": "string", "full_text_search": {"stop_words": True}}}}, "requires stemming"),
        ({"fields": {}}, "non-empty"),
    ]
    for schema, fragment in cases:
        response = server.http("POST", "/indexes", json={"name": "bad-schema", "schema": schema})
        assert response.status_code == 400, (schema, response.text)
        assert fragment in response.json()["error"]["message"]
    assert server.http("GET", "/indexes/bad-schema").status_code == 404


# ----------------------------------------------------------------------------- writes and reads
def test_upsert_fetch_roundtrip(docindex, ns):
    load(docindex, ns)
    fetched = docindex.documents.fetch(namespace=ns, ids=["p2", "missing"])
    assert set(fetched.documents) == {"p2"}
    doc = fetched.documents["p2"].to_dict()
    assert doc["embedding"] == [0.0, 1.0, 0.0, 0.0]
    assert doc["keywords"] == {"indices": [7, 11], "values": [0.5, 2.0]}
    assert doc["sku"] == "WH-1000XM4" and doc["category"] == "audio" and doc["price"] == 300
    assert fetched.usage.read_units == 1
    only = docindex.documents.fetch(namespace=ns, ids=["p1"], include_fields=["sku"]).documents["p1"].to_dict()
    assert only == {"_id": "p1", "sku": "SKU-qHUp-446"}


def test_documents_the_server_refuses(docindex, ns, server):
    bad = [
        ({"_id": "x", "text": "no vector"}, "missing the dense_vector field 'embedding'"),
        ({"_id": "x", "embedding": [1, 0]}, "dimension"),
        ({"_id": "x", "embedding": [1, 0, 0, 0], "text": 42}, "must be a string"),
        ({"_id": "x", "embedding": [1, 0, 0, 0], "keywords": {"indices": [1, 1], "values": [1, 2]}}, "unique"),
        ({"_id": "x", "embedding": [1, 0, 0, 0], "meta": {"nested": 1}}, "Metadata value"),
    ]
    for document, fragment in bad:
        with pytest.raises(PineconeApiException) as exc:
            docindex.documents.upsert(namespace=ns, documents=[document])
        assert exc.value.status_code == 400 and fragment in str(exc.value), (document, str(exc.value))
    too_many = [{"_id": f"d{i}", "embedding": [1, 0, 0, 0]} for i in range(1001)]
    response = server.http("POST", f"/document-indexes/products-docs/namespaces/{ns}/documents/upsert",
                           json={"documents": too_many})
    assert response.status_code == 400 and "limit of 1000 documents" in response.json()["message"]
    assert docindex.documents.fetch(namespace=ns, filter={"price": {"$exists": True}}).documents == {}


def test_text_search_ranks_by_bm25_and_sees_a_write_at_once(docindex, ns):
    load(docindex, ns)
    found = docindex.documents.search(namespace=ns, top_k=10,
                                      score_by=[{"type": "text", "fields": ["text"], "query": "running shoe"}])
    # p1 and p3 hold both stems (run, shoe); p1's text is longer, so BM25 ranks p3 first
    assert ids(found) == ["p3", "p1"]
    assert found.matches[0].score > found.matches[1].score > 0
    assert found.matches[0].to_dict().keys() == {"_id", "_score"}
    docindex.documents.upsert(namespace=ns, documents=[
        {"_id": "p5", "embedding": [0, 0, 0, 1], "text": "Zyxelon gadget", "sku": "ZX-77"}])
    fresh = docindex.documents.search(namespace=ns, top_k=3,
                                      score_by=[{"type": "text", "fields": ["text", "sku"], "query": "zyxelon"}])
    assert ids(fresh) == ["p5"]


def test_query_string_lucene_syntax_and_summed_clauses(docindex, ns):
    load(docindex, ns)
    both = docindex.documents.search(namespace=ns, top_k=10,
                                     score_by=[{"type": "query_string", "query": "text:running AND text:socks"}])
    assert ids(both) == ["p3"]
    phrase = docindex.documents.search(namespace=ns, top_k=10,
                                       score_by=[{"type": "query_string", "query": 'text:"noise cancelling"'}])
    assert ids(phrase) == ["p2"]
    sku = docindex.documents.search(namespace=ns, top_k=10, score_by=[{"type": "query_string", "query": "sku:qhup"}])
    assert ids(sku) == ["p1"]
    text_only = docindex.documents.search(namespace=ns, top_k=10,
                                          score_by=[{"type": "text", "fields": ["text"], "query": "headphones"}])
    combined = docindex.documents.search(namespace=ns, top_k=10, score_by=[
        {"type": "text", "fields": ["text"], "query": "headphones"},
        {"type": "query_string", "query": "sku:wh"}])
    by_id = {m.id: m.score for m in text_only.matches}
    assert combined.matches[0].id == "p2"
    assert combined.matches[0].score > by_id["p2"]
    with pytest.raises(PineconeApiException) as exc:
        docindex.documents.search(namespace=ns, top_k=3, score_by=[{"type": "query_string", "query": "nofield:x"}])
    assert exc.value.status_code == 400 and "nofield" in str(exc.value)


def test_dense_and_sparse_search_with_metadata_filters(docindex, ns):
    load(docindex, ns)
    dense = docindex.documents.search(namespace=ns, top_k=2, include_fields=["category"],
                                      score_by=[{"type": "dense_vector", "field": "embedding", "values": [1, 0.2, 0, 0]}])
    assert ids(dense) == ["p1", "p4"]
    assert dense.matches[0].score == pytest.approx(1.0)
    assert dense.matches[0].category == "shoes"
    filtered = docindex.documents.search(namespace=ns, top_k=5, filter={"category": {"$eq": "audio"}, "price": {"$lt": 100}},
                                         score_by=[{"type": "dense_vector", "field": "embedding", "values": [1, 0.2, 0, 0]}])
    assert ids(filtered) == ["p4"]
    sparse = docindex.documents.search(namespace=ns, top_k=5, score_by=[
        {"type": "sparse_vector", "field": "keywords", "sparse_values": {"indices": [7, 11], "values": [1.0, 1.0]}}])
    assert [(m.id, round(m.score, 4)) for m in sparse.matches] == [("p2", 2.5), ("p4", 1.0)]
    assert sparse.usage.read_units == 1
    unshared = docindex.documents.search(namespace=ns, top_k=5, score_by=[
        {"type": "sparse_vector", "field": "keywords", "sparse_values": {"indices": [99], "values": [1.0]}}])
    assert ids(unshared) == []  # no shared term: no match, not a zero score


def test_text_match_filters_on_full_text_fields(docindex, ns):
    load(docindex, ns)
    dense = [{"type": "dense_vector", "field": "embedding", "values": [1, 1, 1, 1]}]
    phrase = docindex.documents.search(namespace=ns, top_k=10, score_by=dense,
                                       filter={"text": {"$match_phrase": "running shoes"}})
    assert ids(phrase) == ["p1"]
    every = docindex.documents.search(namespace=ns, top_k=10, score_by=dense,
                                      filter={"text": {"$match_all": "shoes running"}})
    assert sorted(ids(every)) == ["p1", "p3"]
    mixed = docindex.documents.search(namespace=ns, top_k=10, score_by=dense, filter={
        "$or": [{"text": {"$match_any": "socks"}}, {"$and": [{"category": "audio"}, {"price": {"$gt": 100}}]}]})
    assert sorted(ids(mixed)) == ["p2", "p3"]
    for bad, fragment in [({"text": {"$eq": "x"}}, "not comparison operators"),
                          ({"category": {"$match_any": "shoes"}}, "only to full_text_search fields"),
                          ({"embedding": {"$exists": True}}, "cannot be filtered on")]:
        with pytest.raises(PineconeApiException) as exc:
            docindex.documents.search(namespace=ns, top_k=3, score_by=dense, filter=bad)
        assert exc.value.status_code == 400 and fragment in str(exc.value)


def test_fetch_by_filter_pages_and_list(docindex, ns):
    load(docindex, ns)
    first = docindex.documents.fetch(namespace=ns, filter={"price": {"$gte": 15}}, limit=3)
    assert sorted(first.documents) == ["p1", "p2", "p3"] and first.pagination is not None
    rest = docindex.documents.fetch(namespace=ns, filter={"price": {"$gte": 15}}, limit=3,
                                    pagination_token=first.pagination.next)
    assert sorted(rest.documents) == ["p4"] and rest.pagination is None
    assert [d.id for d in docindex.documents.list(namespace=ns, limit=3)] == ["p1", "p2", "p3", "p4"]
    assert [d.id for d in docindex.documents.list(namespace=ns, prefix="p3")] == ["p3"]


def test_delete_update_and_stats(docindex, ns):
    load(docindex, ns)
    stats = docindex.describe_index_stats()
    assert stats.namespaces[ns].vector_count == 4 and stats.dimension == DIM
    assert docindex.documents.delete(namespace=ns, filter={"category": "audio"}).matched_records == 2
    docindex.documents.delete(namespace=ns, ids=["p3", "never-there"])
    assert [d.id for d in docindex.documents.list(namespace=ns)] == ["p1"]
    docindex.documents.update(namespace=ns, documents=[{"_id": "p1", "text": "Hiking boots", "_remove_fields": ["sku"]}])
    doc = docindex.documents.fetch(namespace=ns, ids=["p1"]).documents["p1"].to_dict()
    assert doc["text"] == "Hiking boots" and "sku" not in doc and doc["price"] == 120
    keyword = docindex.documents.search(namespace=ns, top_k=3, score_by=[{"type": "text", "fields": ["text"], "query": "boots"}])
    assert ids(keyword) == ["p1"]
    gone = docindex.documents.search(namespace=ns, top_k=3, score_by=[{"type": "query_string", "query": "sku:qhup"}])
    assert ids(gone) == []
    updated = docindex.documents.update(namespace=ns, filter={"price": {"$gt": 100}}, set_fields={"sale": True})
    assert updated.matched_records == 1
    assert docindex.documents.fetch(namespace=ns, ids=["p1"]).documents["p1"].to_dict()["sale"] is True
    docindex.documents.delete(namespace=ns, delete_all=True)
    assert docindex.documents.list(namespace=ns).to_list() == []


def test_costs_are_counted_per_documents_operation(server, docindex, ns):
    load(docindex, ns)
    server.http("DELETE", "/_stats")
    docindex.documents.search(namespace=ns, top_k=3, score_by=[{"type": "text", "fields": ["text"], "query": "shoes"}])
    docindex.documents.fetch(namespace=ns, ids=["p1", "p2"])
    operations = server.http("GET", "/_stats").json()["operations"]
    # a small namespace costs a search the documented minimum, 0.25 RU; a fetch of 2, 1 RU
    assert operations["documents_search"]["requests"] == 1
    assert operations["documents_search"]["read_units"] == pytest.approx(0.25)
    assert operations["documents_fetch"]["read_units"] == 1


def test_documents_survive_a_restart(tmp_path):
    srv = ServerProcess(tmp_path / "data").start()
    try:
        pc = Pinecone(api_key=API_KEY, host=srv.url)
        host = pc.indexes.create(name="kept", schema=product_schema()).host
        pc.index(host=host).documents.upsert(namespace="n", documents=CATALOG)
        srv.stop()
        srv.start()
        pc = Pinecone(api_key=API_KEY, host=srv.url)
        model = pc.indexes.describe("kept")
        assert model.host.startswith(srv.url)  # a new port: the host follows the server
        found = pc.index(host=model.host).documents.search(
            namespace="n", top_k=3, score_by=[{"type": "text", "fields": ["sku"], "query": "WH-1000XM4"}])
        assert ids(found)[0] == "p2"
    finally:
        srv.stop()


def test_legacy_vectors_api_still_served(server):
    legacy = Pinecone(api_key=API_KEY).Index(host=server.url)
    legacy.upsert(vectors=[{"id": "v1", "values": [1.0] + [0.0] * 7}], namespace="legacy")
    assert legacy.fetch(ids=["v1"], namespace="legacy").vectors["v1"].values[0] == 1.0
    assert httpx.get(f"{server.url}/healthz").json()["dimension"] == 8


def test_bad_requests_are_400s_that_name_the_problem(server, docindex, ns):
    """Bodies the SDK would refuse to send, sent raw: each is a 400 with a message,
    never a 500, and nothing is written."""
    load(docindex, ns)
    base = f"/document-indexes/products-docs/namespaces/{ns}/documents"
    cases = [
        ("search", {"score_by": ["text"], "top_k": 3}, "score_by"),
        ("search", {"score_by": [], "top_k": 3}, "'score_by' must contain at least one scoring method"),
        ("search", {"score_by": [{"type": "text", "fields": ["text"], "query": "x"}] * 101, "top_k": 3},
         "score_by has 101 clauses, which exceeds the limit of 100"),
        ("upsert", {"documents": []}, "non-empty 'documents' array"),
        ("search", {"score_by": [{"type": "text", "query": "x", "fields": [["text"]]}], "top_k": 3}, "fields"),
        ("search", {"score_by": [{"type": "sparse_vector", "field": "keywords"}], "top_k": 3}, "sparse_values"),
        ("search", {"score_by": [{"type": "dense_vector", "field": "text", "values": [1, 0, 0, 0]}], "top_k": 3},
         "dense_vector field"),
        ("search", {"score_by": [{"type": "embed", "field": "text", "query": "x"}], "top_k": 3}, "integrated embedding"),
        ("search", {"score_by": [{"type": "text", "fields": ["text"], "query": "x"}], "top_k": 0}, "top_k"),
        ("search", {"score_by": [{"type": "dense_vector", "field": "embedding", "values": [1, 0, 0, 0]},
                                 {"type": "text", "fields": ["text"], "query": "x"}], "top_k": 3}, "alone"),
        ("fetch", {"ids": ["p1"], "filter": {"price": 1}}, "exactly one"),
        ("fetch", {"filter": {"price": {"$gt": 1}}, "pagination_token": "%%%"}, "pagination token"),
        ("delete", {"ids": "p1"}, "ids"),
        ("update", {"filter": {"price": {"$gt": 1}}, "set_fields": ["x"]}, "set_fields"),
        ("update", {"documents": [{"_id": "p1", "embedding": None}]}, "null"),
        ("list", {"limit": 1000}, "limit"),
        ("nonsense", {}, "Unknown documents operation"),
    ]
    for operation, body, fragment in cases:
        response = server.http("POST", f"{base}/{operation}", json=body)
        assert response.status_code in (400, 404), (operation, body, response.text)
        assert fragment in response.json()["message"], (operation, body, response.text)
    empty = server.http("POST", "/document-indexes/products-docs/namespaces/never-written/documents/search",
                        json={"score_by": [{"type": "text", "fields": ["text"], "query": "shoes"}], "top_k": 3,
                              "filter": {"text": {"$match_any": "shoes"}}})
    assert empty.status_code == 200 and empty.json()["matches"] == []
    assert server.http("POST", "/document-indexes/no-such-index/namespaces/a/documents/list", json={}).status_code == 404
    assert len(docindex.documents.list(namespace=ns).to_list()) == len(CATALOG)
    assert docindex.documents.fetch(namespace=ns, ids=["p1"]).documents["p1"].to_dict()["embedding"] == [1.0, 0, 0, 0]
