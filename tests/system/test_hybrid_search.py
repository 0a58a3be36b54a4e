"""Hybrid, semantic and keyword search through POST /api/search against the real local
parts: the first 300 rows of the sample catalog (which hold SKU-qHUp-446, an identifier dense vectors miss)
synced by pelican and emu into the index with BM25 sparse vectors, the keyword
statistics fitted by `pelican refit-lexical` before the sync, the frontend as a real
process."""

from __future__ import annotations

import subprocess
import sys
import threading
from contextlib import contextmanager

import pytest

from devstack.waiting import wait_until
from productsearch import jobs, lexical
from productsearch.documents import lexical_text
from tests.conftest import REPO
from tests.e2e import frontend_stack
from tests.kit.embedders import Recording

pytestmark = pytest.mark.stack

TEMPLATE = "{name} {description}"  # the stack's INDEXED_TEXT_TEMPLATE (the default)
ISSUE_SKU = "SKU-qHUp-446"  # a SKU semantic search alone missed: row 299 of the sample catalog
MODES = ("hybrid", "semantic", "keyword")


@pytest.fixture(scope="module")
def front(stack):
    f = frontend_stack.start(stack, rows=300)
    yield f
    frontend_stack.stop(f)


def rows(front, where: str = "TRUE", params=()) -> list[dict]:
    return front.parts.conn.execute(
        f"SELECT id, name, sku, description, price, category FROM products WHERE {where} ORDER BY id", params).fetchall()


def add_product(front, name: str, sku: str, description: str, price: float = 250.0, category: str = "device") -> int:
    pid = front.parts.insert(name, description, price=price, sku=sku, category=category)
    version = front.parts.conn.execute("SELECT version FROM products WHERE id = %s", (pid,)).fetchone()["version"]
    front.wait_searchable(pid, version)
    return pid


def refit() -> str:
    proc = subprocess.run([sys.executable, "-m", "pelican", "refit-lexical"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# -- exact identifiers ---------------------------------------------------------------------
def test_the_issue_sku_finds_its_product_first_as_written_and_lower_cased(front):
    [row] = rows(front, "sku = %s", (ISSUE_SKU,))
    for query in (ISSUE_SKU, ISSUE_SKU.lower(), ISSUE_SKU.upper()):
        for mode in ("hybrid", "keyword"):
            results = front.search(query, top_k=10, mode=mode)
            assert results and results[0]["id"] == row["id"], (query, mode, [r["sku"] for r in results[:3]])


def test_every_sku_of_a_sample_finds_its_own_product_first(front):
    sample = rows(front)[::15]  # 20 products spread over the catalog rows
    misses = []
    for row in sample:
        for query in (row["sku"], row["sku"].lower()):
            results = front.search(query, top_k=3)
            if not results or results[0]["id"] != row["id"]:
                misses.append((query, [r["sku"] for r in results]))
    assert not misses, misses


def test_a_rare_word_from_a_name_finds_the_product_in_the_top_3(front):
    # The catalog's names share a small vocabulary (Pro, Ultra, Device ...); brand words
    # that occur once are what shoppers type.
    products = {
        "Quokka": add_product(front, "Quokka Mini Device", "SKU-QKKA-101",
                              "This is a streamline scalable portals product with Proactive modular features."),
        "Zephyrine": add_product(front, "Zephyrine Ultra Cleaner", "SKU-ZPHR-202",
                                 "This is a harness robust metrics product with Balanced holistic features."),
    }
    try:
        for word, pid in products.items():
            for query in (word, word.lower()):
                top = [r["id"] for r in front.search(query, top_k=3)]
                assert pid in top, (query, top)
    finally:
        front.parts.conn.execute("DELETE FROM products WHERE id = ANY(%s)", (list(products.values()),))


# -- filters -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_filters_hold_in_every_mode(front, mode):
    query = "smart cleaning machine"
    prices = sorted(float(r["price"]) for r in rows(front))
    low, high = prices[100], prices[160]
    results = front.search(query, top_k=20, filters={"price_min": low, "price_max": high}, mode=mode)
    assert results and all(low <= r["price"] <= high for r in results)
    category = rows(front)[0]["category"]
    results = front.search(query, top_k=20, filters={"category": category.upper()}, mode=mode)
    assert results and all(r["category"].casefold() == category.casefold() for r in results)
    assert front.search(query, filters={"price_min": 999_999}, mode=mode) == []


@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
def test_a_filter_excludes_even_an_exact_sku_match(front, mode):
    [row] = rows(front, "sku = %s", (ISSUE_SKU,))
    price = float(row["price"])
    assert front.search(ISSUE_SKU, mode=mode, filters={"price_max": price})[0]["id"] == row["id"]
    above = front.search(ISSUE_SKU, mode=mode, filters={"price_min": price + 0.01})
    assert row["id"] not in [r["id"] for r in above]


# -- modes -----------------------------------------------------------------------------------------
def test_the_modes_answer_differently_and_semantic_is_dense_only(front, embedder):
    query = "wireless controller for gaming"
    semantic = [r["id"] for r in front.search(query, top_k=10, mode="semantic")]
    # The shared index may still hold vectors of other modules' rows, which search drops.
    rows = {r["id"] for r in front.parts.conn.execute("SELECT id FROM products")}
    dense = [int(m.id) for m in front.parts.index.query(embedder.embed([query])[0], top_k=10) if int(m.id) in rows]
    assert semantic == dense
    assert front.search(query, top_k=10) == front.search(query, top_k=10, mode="hybrid")


def test_a_keyword_query_without_terms_finds_nothing_and_hybrid_falls_back_to_semantic(front):
    assert front.search("the and of", mode="keyword") == []
    hybrid = [r["id"] for r in front.search("the and of", top_k=5, mode="hybrid")]
    assert hybrid == [r["id"] for r in front.search("the and of", top_k=5, mode="semantic")]


@pytest.mark.parametrize("mode,reason", [("fuzzy", "mode must be one of hybrid, semantic, keyword"),
                                         (3, "mode must be one of"), (None, "mode must be one of"),
                                         ("HYBRID", "mode must be one of"), ("", "mode must be one of")])
def test_a_bad_mode_is_a_400_with_the_reason(front, mode, reason):
    resp = front.api("/api/search", "POST", {"query": "lamp", "mode": mode})
    assert resp.status == 400 and reason in resp.body["error"], resp.body


# -- the sparse vectors emu writes --------------------------------------------------------------------
def stored_sparse(front, pid: int) -> dict[int, float]:
    vec = front.parts.vector(pid)
    sparse = vec.sparse_values
    assert sparse is not None, f"product {pid} has no sparse values"
    return dict(zip(sparse.indices, sparse.values))


def test_emu_writes_the_bm25_document_vector_with_the_fitted_parameters(front):
    stats = lexical.read_corpus(front.parts.conn)
    assert stats.documents == 300 and stats.average_length > 0 and stats.fitted_at is not None
    for row in rows(front)[:5]:
        expected = lexical.encode_document(lexical_text(row, TEMPLATE), stats)
        got = stored_sparse(front, row["id"])
        assert list(got) == list(expected.indices)
        assert list(got.values()) == pytest.approx(list(expected.values), rel=1e-5)


def test_a_job_without_lexical_parameters_still_indexes(front):
    # As pelican sends it while the schema lacks the statistics (outbox.corpus_parameters).
    row = rows(front)[3]
    product = {"name": row["name"], "sku": row["sku"], "description": row["description"] + " (re-sent)",
               "price": str(row["price"]), "category": row["category"]}
    current = front.parts.conn.execute("SELECT version FROM products WHERE id = %s", (row["id"],)).fetchone()["version"]
    change = jobs.Change(row["id"], current + 1, product)
    body = jobs.encode([change])
    assert '"lexical"' not in body
    front.parts.sqs.send_message(QueueUrl=front.parts.env["SQS_QUEUE_URL"], MessageBody=body,
                                 MessageGroupId=jobs.partition_of(row["id"]),
                                 MessageDeduplicationId=jobs.deduplication_id(body))
    wait_until(lambda: int(front.parts.vector(row["id"]).metadata["version"]) == current + 1, 60, interval=0.5,
               what="the job without lexical parameters indexed")
    expected = lexical.encode_document(lexical_text({**product, "id": row["id"]}, TEMPLATE), lexical.UNFITTED)
    got = stored_sparse(front, row["id"])
    assert list(got) == list(expected.indices)
    assert list(got.values()) == pytest.approx(list(expected.values), rel=1e-5)
    assert "no usable lexical parameters" in front.stack.log_path("emu").read_text()


# -- between refits and after one ------------------------------------------------------------------
def test_a_product_added_after_the_refit_is_found_by_its_sku_and_a_refit_counts_it(front):
    sku = "XR-7Q-20931"
    before = lexical.read_corpus(front.parts.conn)
    whole = lexical.term_id(sku.lower())
    df = lambda: front.parts.conn.execute(  # noqa: E731
        "SELECT document_frequency FROM lexical_terms WHERE term_id = %s", (whole,)).fetchone()
    assert df() is None  # unseen at the last fit: the highest idf
    pid = add_product(front, "Mega Device", sku, "This is a leverage seamless channels product with Smart features.")
    try:
        for query in (sku, sku.lower()):
            for mode in ("hybrid", "keyword"):
                assert front.search(query, top_k=5, mode=mode)[0]["id"] == pid, (query, mode)

        assert "301 products" in refit()
        after = lexical.read_corpus(front.parts.conn)
        assert after.documents == before.documents + 1 == 301
        assert after.fitted_at > before.fitted_at
        assert df()["document_frequency"] == 1
        common = lexical.term_id("devic")  # "Device" in many names
        n_device = sum("devic" in lexical.terms(lexical_text(r, TEMPLATE)) for r in rows(front))
        assert front.parts.conn.execute("SELECT document_frequency FROM lexical_terms WHERE term_id = %s",
                                        (common,)).fetchone()["document_frequency"] == n_device
        for query in (sku, sku.lower()):
            assert front.search(query, top_k=5)[0]["id"] == pid
    finally:
        front.parts.conn.execute("DELETE FROM products WHERE id = %s", (pid,))
        refit()
    assert lexical.read_corpus(front.parts.conn).documents == 300
    assert df() is None


# -- the query's two vectors at once ---------------------------------------------------------------
class CountingPool:
    """A real psycopg pool that counts the connections borrowed from it."""

    def __init__(self, pool):
        self.pool, self.borrowed = pool, 0

    @contextmanager
    def connection(self, *args, **kwargs):
        self.borrowed += 1
        with self.pool.connection(*args, **kwargs) as conn:
            yield conn


def test_a_hybrid_search_reads_its_keyword_statistics_while_its_query_is_embedded(front, embedder):
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    from frontend.query_embedding import BatchingEmbedder
    from productsearch.search import ProductSearch

    query = "wireless controller for gaming"
    held = Recording(embedder)
    held.hold_on = query
    batcher = BatchingEmbedder(held, window_s=0.0, max_batch=8, timeout_s=60.0)
    with ConnectionPool(front.stack.database_url, min_size=1, max_size=2,
                        kwargs={"autocommit": True, "row_factory": dict_row}) as real:
        pool = CountingPool(real)
        out: dict = {}
        thread = threading.Thread(target=lambda: out.update(
            results=ProductSearch(batcher, front.parts.index, pool).search(query, top_k=10, mode="hybrid")))
        try:
            thread.start()
            assert held.held.wait(60)
            # The statistics are read while the forward pass is still held, not after it.
            wait_until(lambda: pool.borrowed == 1, 60, 0.01, what="the keyword statistics read during the pass")
            assert thread.is_alive() and batcher.waiting_callers == 1
            held.release.set()
            thread.join(60)
        finally:
            held.release.set()
            batcher.close()
        assert pool.borrowed == 2  # then the rows of the matches
        plain = ProductSearch(embedder, front.parts.index, real).search(query, top_k=10, mode="hybrid")
    assert [r.id for r in out["results"]] == [r.id for r in plain] and plain


def test_a_failed_keyword_statistics_read_gives_up_the_pending_query_vector(front, embedder):
    from psycopg_pool import ConnectionPool, PoolClosed

    from frontend.query_embedding import BatchingEmbedder
    from productsearch.search import ProductSearch

    batcher = BatchingEmbedder(embedder, window_s=0.0, max_batch=8, timeout_s=60.0)
    closed = ConnectionPool(front.stack.database_url, min_size=1, max_size=1, open=False)
    try:
        with pytest.raises(PoolClosed):
            ProductSearch(batcher, front.parts.index, closed).search("wireless controller for gaming", mode="hybrid")
        assert batcher.waiting_callers == 0  # no caller is left counted as waiting
        assert batcher.embed(["wireless controller for gaming"]).shape == (1, embedder.settings.dimension)
    finally:
        batcher.close()
