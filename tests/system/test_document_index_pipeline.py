"""The whole pipeline on a document index (PINECONE_INDEX_API=documents): pelican and
emu write the first 80 catalog rows as documents (dense field, product text and SKU
for Pinecone's full-text search, metadata), and the frontend searches them through
POST /api/search in every mode. The same index server process serves the session's
legacy index; this module points the stack at a document index beside it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pinecone import Pinecone

from productsearch.documents import DENSE_FIELD, SKU_FIELD, TEXT_FIELD, IndexRecord, metadata
from productsearch.index import ProductIndex
from productsearch.settings import IndexSettings, text_template_from_env
from tests.e2e import frontend_stack

pytestmark = pytest.mark.stack

CATALOG_SKU = "SKU-ABet-154"  # row 80 of the sample catalog, the last one loaded


@pytest.fixture(scope="module")
def front(stack):
    with frontend_stack.on_document_index(stack) as f:
        yield f


def add_product(front, name: str, sku: str, description: str, category: str = "device") -> int:
    pid = front.parts.insert(name, description, price=250.0, sku=sku, category=category)
    version = front.parts.conn.execute("SELECT version FROM products WHERE id = %s", (pid,)).fetchone()["version"]
    front.wait_searchable(pid, version)
    return pid


def raw_document(stack, product_id: int) -> dict:
    settings = IndexSettings.from_env(stack.env())
    index = Pinecone(api_key=settings.api_key.get_secret_value()).index(host=settings.host)
    found = index.documents.fetch(namespace=settings.namespace, ids=[str(product_id)]).documents
    return found[str(product_id)].to_dict()


def test_emu_writes_documents_with_text_and_sku_and_no_sparse_vector(front):
    [row] = front.parts.conn.execute("SELECT id, name, sku, description FROM products WHERE sku = %s",
                                     (CATALOG_SKU,)).fetchall()
    doc = raw_document(front.stack, row["id"])
    assert doc[SKU_FIELD] == CATALOG_SKU
    assert doc[TEXT_FIELD] == f"{row['name']} {row['description']}".strip()
    assert len(doc[DENSE_FIELD]) == 384
    assert {"version", "text_hash", "price", "category_key"} <= doc.keys()
    assert "sparse" not in doc


@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
def test_an_exact_sku_ranks_its_product_first(front, mode):
    [row] = front.parts.conn.execute("SELECT id FROM products WHERE sku = %s", (CATALOG_SKU,)).fetchall()
    # As typed on a keyboard set to full width: NFKC makes it the stored SKU.
    full_width = CATALOG_SKU.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
    for query in (CATALOG_SKU, CATALOG_SKU.lower(), full_width):
        assert front.search(query, mode=mode)[0]["id"] == row["id"], (query, mode)


def test_a_product_inserted_a_moment_ago_is_found_by_its_rare_name_token_at_once(front):
    pid = add_product(front, "Quillowick lantern", "QW-7781", "a brass camping lantern with a glass chimney")
    for mode in ("keyword", "hybrid"):
        assert front.search("quillowick", mode=mode)[0]["id"] == pid, mode
    assert front.search("QW-7781", mode="keyword")[0]["id"] == pid


def test_semantic_mode_ranks_by_cosine_and_explain_shows_both_parts(front):
    results = front.search("something to light a tent at night", mode="semantic")
    assert results and all(-1.0 <= r["score"] <= 1.0 for r in results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    [row] = front.parts.conn.execute("SELECT name FROM products WHERE sku = %s", (CATALOG_SKU,)).fetchall()
    resp = front.api("/api/search", "POST", {"query": row["name"], "mode": "hybrid", "explain": True})
    assert resp.status == 200, resp.body
    first = resp.body["results"][0]["explain"]
    assert first["alpha"] == pytest.approx(0.45)
    assert first["dense"] is not None and first["keyword"] is not None and first["keyword"] > 0


def test_the_pages_explain_shows_the_scores_the_two_searches_gave(front):
    """The page's Explain scores on a document index: the keyword part is Pinecone's
    BM25 from the full-text search (no record holds it), as the API explains it."""
    query = "wireless controller"
    api = front.api("/api/search", "POST", {"query": query, "mode": "hybrid", "explain": True, "top_k": 10})
    assert api.status == 200, api.body
    page = front.api("/gradio_api/run/ui_search", "POST", {"data": [query, "", "", "", "hybrid", True]})
    assert page.status == 200, page.body
    table = page.body["data"][1]
    rows = re.findall(r'data-id="(\d+)".*?<td class="num score">([-\d.]+)</td>'
                      r'<td class="num explain-only dense">([^<]+)</td><td class="num explain-only keyword">([^<]+)</td>',
                      table)
    assert [int(pid) for pid, *_ in rows] == [r["id"] for r in api.body["results"]]
    shown = lambda v: None if v == "—" else float(v)  # noqa: E731
    for (pid, fused, dense, keyword), r in zip(rows, api.body["results"], strict=True):
        parts = r["explain"]
        assert float(fused) == pytest.approx(parts["fused"], abs=1e-4)
        assert shown(dense) == pytest.approx(parts["dense"], abs=1e-4)
        assert shown(keyword) == pytest.approx(parts["keyword"], abs=1e-4)
    assert any(shown(k) and shown(k) > 1.0 for *_, k in rows)  # raw BM25, not a 0..1 dot product


def test_query_syntax_in_user_input_is_plain_words(front):
    for query in ('AND ("', "lantern OR", "title:lantern", "lant*", "\\", "-", "+brass -glass"):
        for mode in ("keyword", "hybrid"):
            resp = front.api("/api/search", "POST", {"query": query, "mode": mode})
            assert resp.status == 200, (query, mode, resp.body)
    assert front.search("-", mode="keyword") == []


def test_filters_apply_in_every_mode(front):
    pid = add_product(front, "Quillowick torch", "QW-9911", "a brass pocket torch", category="outdoor")
    for mode in ("keyword", "hybrid", "semantic"):
        results = front.search("quillowick brass torch", filters={"category": "outdoor", "price_max": 300}, mode=mode)
        assert results and {r["category"] for r in results} == {"outdoor"}, mode
        assert pid in [r["id"] for r in results]


def test_a_deleted_product_leaves_the_index_and_the_results(front):
    pid = add_product(front, "Vexmoor kettle", "VX-1200", "a copper stovetop kettle")
    assert front.search("vexmoor", mode="keyword")[0]["id"] == pid
    front.parts.conn.execute("DELETE FROM products WHERE id = %s", (pid,))
    from devstack.waiting import wait_until

    wait_until(lambda: front.parts.vector(pid) is None, 60, interval=0.5, what="the document deleted")
    assert front.search("vexmoor", mode="keyword") == []


def test_versioned_writes_refuse_older_state_on_a_document_index(front):
    index = ProductIndex(IndexSettings.from_env(front.stack.env()), attempts=2)
    unit = np.zeros(384, dtype=np.float32)
    unit[0] = 1.0

    def record(version: int) -> IndexRecord:
        return IndexRecord(id="990001", text=f"state {version}", sku="V-1",
                           metadata={"price": 1.0, "category_key": "", "text_hash": "h", "version": version})

    assert index.write_versioned([(record(5), unit)], {}).written == {"990001"}
    assert index.write_versioned([(record(3), unit)], {}).superseded == {"990001"}
    assert index.fetch_versions(["990001"]) == {"990001": 5}
    assert index.write_versioned([], {"990001": 6}).written == {"990001"}
    late = index.write_versioned([(record(5), unit)], {})
    assert late.superseded == {"990001"} and index.fetch(["990001"]) == {}


def test_a_dense_search_reads_back_every_metadata_field_and_query_is_refused(front):
    """A document search returns only the fields it names: every key documents.metadata
    writes must come back, or a new one would be written and never read. query (one
    request scoring dense and sparse parts together) exists on a legacy index only."""
    index = ProductIndex(IndexSettings.from_env(front.stack.env()), attempts=2)
    [row] = front.parts.conn.execute("SELECT id, version FROM products WHERE sku = %s", (CATALOG_SKU,)).fetchall()
    vector = np.asarray(front.parts.vector(row["id"]).values, dtype=np.float32)
    [best] = index.search_dense(vector, top_k=1)
    written = metadata(front.parts.conn.execute("SELECT * FROM products WHERE id = %s", (row["id"],)).fetchone(),
                       row["version"], text_template_from_env(front.stack.env()))
    assert best.id == str(row["id"]) and best.metadata == written
    with pytest.raises(TypeError, match="search_dense"):
        index.query(vector, top_k=1)


def test_a_write_costs_the_same_requests_on_either_api(stack):
    """The write path's request counts (what the scale figures are made of) do not
    depend on the API: the same versioned writes, counted by the index server."""
    import httpx

    base = f"http://127.0.0.1:{stack.index_port}"
    docs_host = stack.create_document_index("write-costs")
    env = {**stack.env(), "PINECONE_NAMESPACE": "write-costs"}
    indexes = {"vectors": ProductIndex(IndexSettings.from_env({**env, "PINECONE_HOST": base,
                                                               "PINECONE_INDEX_API": "vectors"}), attempts=2),
               "documents": ProductIndex(IndexSettings.from_env({**env, "PINECONE_HOST": docs_host,
                                                                 "PINECONE_INDEX_API": "documents"}), attempts=2)}
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(1200, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def records(version: int) -> list[tuple[IndexRecord, np.ndarray]]:
        return [(IndexRecord(id=str(800_000 + i), text=f"product {i} " * 20, sku=f"W-{i}",
                             metadata={"price": 1.0, "category_key": "", "text_hash": "h", "version": version}),
                 vectors[i]) for i in range(1200)]

    counts = {}
    for api, index in indexes.items():
        httpx.delete(f"{base}/_stats", timeout=10).raise_for_status()
        index.write_versioned(records(1), {})
        index.write_versioned(records(2)[:600], {str(800_000 + i): 3 for i in range(600, 700)})
        operations = httpx.get(f"{base}/_stats", timeout=10).json()["operations"]
        counts[api] = {op.removeprefix("documents_"): v["requests"] for op, v in operations.items()
                       if v.get("requests") and op.removeprefix("documents_") in ("fetch", "upsert", "delete")}
        index.delete_ids([str(800_000 + i) for i in range(1200)])
    assert counts["vectors"] == counts["documents"], counts
    assert counts["vectors"]["upsert"] >= 3  # 1,200 records are more than one request's limit


def test_long_texts_are_written_in_requests_under_the_size_limit(stack):
    """A document carries its whole indexed text, so a batch of long texts is far
    over one request's 2 MB: the client splits it by bytes, and the server (which
    refuses a larger request with 413) takes every part."""
    import httpx

    from productsearch.documents import MAX_TEXT_BYTES

    base = f"http://127.0.0.1:{stack.index_port}"
    host = stack.create_document_index("long-texts")
    index = ProductIndex(IndexSettings.from_env({**stack.env(), "PINECONE_HOST": host, "PINECONE_INDEX_API": "documents",
                                                 "PINECONE_NAMESPACE": "long-texts"}), attempts=2)
    unit = np.zeros(384, dtype=np.float32)
    unit[0] = 1.0
    text = ("wörd " * MAX_TEXT_BYTES).encode()[:MAX_TEXT_BYTES].decode(errors="ignore")  # at the text limit
    assert len(text.encode()) > MAX_TEXT_BYTES - 8
    records = [(IndexRecord(id=str(970_000 + i), text=text, sku=f"L-{i}",
                            metadata={"price": 1.0, "category_key": "", "text_hash": "h", "version": 1}), unit)
               for i in range(120)]
    httpx.delete(f"{base}/_stats", timeout=10).raise_for_status()
    assert index.write_versioned(records, {}).written == {r.id for r, _ in records}
    upserts = httpx.get(f"{base}/_stats", timeout=10).json()["operations"]["documents_upsert"]
    assert upserts["requests"] >= 3 and upserts["errors"] == 0, upserts  # 120 x 40 KiB is about 4.9 MB
    assert index.count() == 120


def test_make_status_names_the_document_index_api(front):
    assert front.stack.sync_lines()[0] == f"UI: http://127.0.0.1:{front.stack.frontend_port}/  (index: Documents API)"
