"""Row values that must not break the index or the API, against the real local
stack: the schema refuses non-finite prices, a category is found whatever its case, a result satisfies the
request's filters on the row's current values, and no row value makes an API answer 500."""

from __future__ import annotations

import contextlib
import re

import psycopg
import pytest

from devstack.waiting import wait_until
from tests.e2e import frontend_stack
from tests.e2e.frontend_stack import request

pytestmark = pytest.mark.stack

CHECK = "products_price_finite"


# -- the schema's price rule -------------------------------------------------------------------
def test_the_schema_refuses_prices_that_are_not_finite(parts):
    """CHECK (price >= 0) alone lets NaN through (Postgres sorts it above every number);
    products_price_finite refuses it, and numeric(12,2) the infinities, on every path."""
    parts.insert("Good", "a fine row", price=12.5, sku="Q-GOOD")
    refusals = [
        ("INSERT INTO products (name, sku, price) VALUES ('n', 'Q-NEW', 'NaN')", CHECK),
        ("UPDATE products SET price = 'NaN' WHERE sku = 'Q-GOOD'", CHECK),
        ("INSERT INTO products (name, sku, price) VALUES ('n', 'Q-NEW', 'Infinity')", "infinite value"),
        ("UPDATE products SET price = '-Infinity' WHERE sku = 'Q-GOOD'", "infinite value"),
    ]
    for sql, reason in refusals:
        with pytest.raises(psycopg.errors.IntegrityError if reason == CHECK else psycopg.errors.DataError, match=reason):
            parts.conn.execute(sql)
    assert parts.conn.execute("SELECT price::text AS p FROM products WHERE sku = 'Q-GOOD'").fetchone()["p"] == "12.50"


# -- the apps over rows the index lags behind or cannot hold -----------------------------------
@pytest.fixture(scope="module")
def front(stack):
    f = frontend_stack.start(stack, rows=20)
    yield f
    frontend_stack.stop(f)


def insert_indexed(front, name: str, description: str, price: float, category: str) -> int:
    pid = front.parts.insert(name, description, price, category=category)
    wait_until(lambda: front.parts.vector(pid), 90, interval=0.3, what=f"product {pid} indexed")
    return pid


def delete_synced(front, *ids: int) -> None:
    front.parts.conn.execute("DELETE FROM products WHERE id = ANY(%s)", (list(ids),))
    wait_until(lambda: all(front.parts.vector(i) is None for i in ids), 90, interval=0.3, what="test rows gone from the index")


def without_capture(front, sql: str, params=()) -> None:
    """A write the triggers do not see, so the index keeps the old values (a lagging index)."""
    with front.parts.conn.transaction():
        front.parts.conn.execute("SET LOCAL session_replication_role = replica")
        front.parts.conn.execute(sql, params)


@contextlib.contextmanager
def price_check_dropped(conn):
    """Lets a NaN price in, as on a database restored from before the price rule; the
    constraint comes back exactly as the schema defines it. The caller repairs its rows."""
    definition = conn.execute("SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conname = %s",
                              (CHECK,)).fetchone()["d"]
    conn.execute(f"ALTER TABLE products DROP CONSTRAINT {CHECK}")
    try:
        yield
    finally:
        conn.execute(f"ALTER TABLE products ADD CONSTRAINT {CHECK} {definition}")


def ui_result_ids(front, query: str, category: str = "", price_max: str = "") -> list[int]:
    resp = request(front.url + "/gradio_api/run/ui_search", "POST", {"data": [query, "", price_max, category, "hybrid", False]})
    assert resp.status == 200, resp.body
    return [int(i) for i in re.findall(r'data-id="(\d+)"', resp.body["data"][1])]


TENT_QUERY = "tent for backpacking and camping"


def test_a_category_is_found_whatever_its_case(front):
    tent = insert_indexed(front, "Trail Tent", "A two-person backpacking tent for alpine camping", 250, "Outdoor")
    tarp = insert_indexed(front, "Camp Tarp", "A lightweight tarp shelter for camping trips", 40, "outdoor")
    shelf = insert_indexed(front, "Tent Shelf", "A kitchen shelf shaped like a camping tent", 60, "Kitchen")
    try:
        assert front.parts.vector(tent).metadata["category_key"] == "outdoor"
        for spelling in ("Outdoor", "outdoor", " OUTDOOR "):
            found = front.search(TENT_QUERY, top_k=10, filters={"category": spelling})
            assert {r["id"] for r in found} == {tent, tarp}, spelling
            assert {r["category"] for r in found} == {"Outdoor", "outdoor"}  # shown as written
        # The UI's dropdown sends the category as Postgres holds it.
        assert set(ui_result_ids(front, TENT_QUERY, category="Outdoor")) == {tent, tarp}
        assert ui_result_ids(front, TENT_QUERY, category="Kitchen") == [shelf]
    finally:
        delete_synced(front, tent, tarp, shelf)


def test_reconcile_rewrites_vectors_without_a_category_key(front, embedder):
    from pelican.reconcile import reconcile
    from productsearch.documents import IndexRecord, build_record
    from productsearch.settings import DatabaseSettings, IndexSettings

    pid = insert_indexed(front, "Dry Bag", "A waterproof dry bag for kayaking", 15, "Outdoor")
    try:
        row = front.parts.conn.execute("SELECT * FROM products WHERE id = %s", (pid,)).fetchone()
        current = build_record(row, int(front.parts.vector(pid).metadata["version"]), "{name} {description}")
        old_style = {k: v for k, v in current.metadata.items() if k != "category_key"}  # as written before the key
        front.parts.index.upsert([IndexRecord(current.id, current.text, old_style)], embedder.embed([current.text]))
        assert "category_key" not in front.parts.vector(pid).metadata
        assert front.search("waterproof dry bag", top_k=5, filters={"category": "outdoor"}) == []

        database, index = DatabaseSettings.from_env(), IndexSettings.from_env()
        assert pid in reconcile(database, index, progress=False).stale
        assert pid in reconcile(database, index, repair=True, progress=False).stale
        wait_until(lambda: front.parts.vector(pid).metadata.get("category_key") == "outdoor", 90, interval=0.3,
                   what="the repaired vector")
        assert [r["id"] for r in front.search("waterproof dry bag", top_k=5, filters={"category": "outdoor"})] == [pid]
    finally:
        delete_synced(front, pid)


def test_results_satisfy_the_filters_on_the_rows_current_values(front):
    query = "canvas hammock for hanging between trees"
    pid = insert_indexed(front, "Canvas Hammock", "A canvas hammock to hang between two trees", 50, "Outdoor")
    try:
        assert pid in [r["id"] for r in front.search(query, top_k=5, filters={"price_max": 100})]

        without_capture(front, "UPDATE products SET price = 500 WHERE id = %s", (pid,))
        assert front.parts.vector(pid).metadata["price"] == 50.0  # the index still says 50
        assert pid not in [r["id"] for r in front.search(query, top_k=5, filters={"price_max": 100})]
        assert pid not in ui_result_ids(front, query, price_max="100")
        hit = [r for r in front.search(query, top_k=5) if r["id"] == pid]
        assert hit and hit[0]["price"] == 500.0  # unfiltered, the row's current price is shown

        without_capture(front, "UPDATE products SET price = 50, category = 'Kitchen' WHERE id = %s", (pid,))
        assert pid not in [r["id"] for r in front.search(query, top_k=5, filters={"category": "outdoor"})]
        assert pid in [r["id"] for r in front.search(query, top_k=5, filters={"price_max": 100})]
    finally:
        delete_synced(front, pid)


def test_no_api_answers_500_for_a_row_whose_price_is_nan(front):
    query = "hurricane storm lantern for camping"
    pid = insert_indexed(front, "Storm Lantern", "A hurricane storm lantern for camping nights", 30, "Outdoor")
    conn = front.parts.conn
    try:
        with price_check_dropped(conn):
            try:
                conn.execute("UPDATE products SET price = 'NaN' WHERE id = %s", (pid,))
                # emu refuses the new state with the reason; the index keeps the vector at price 30.
                dead = wait_until(lambda: front.parts.drain_queue(front.parts.env["SQS_DLQ_URL"], idle_rounds=1), 90,
                                  what="dead letter")
                assert [d["product_id"] for d in dead] == [pid]
                assert "price is not a finite number: NaN" in dead[0]["reason"]
                assert front.parts.vector(pid).metadata["price"] == 30.0

                hit = [r for r in front.search(query, top_k=5) if r["id"] == pid]
                assert hit and hit[0]["price"] is None
                assert pid in [r["id"] for r in front.search(query, top_k=5, filters={"category": "outdoor"})]
                assert pid not in [r["id"] for r in front.search(query, top_k=5, filters={"price_max": 100})]
                assert pid in ui_result_ids(front, query)

                product = front.api(f"/api/products/{pid}")
                assert product.status == 200 and product.body["price"] is None and product.body["name"] == "Storm Lantern"
                sync = front.api(f"/api/products/{pid}/sync")
                assert sync.status == 200 and sync.body["searchable"] is False
                loaded = request(front.url + "/gradio_api/run/ui_load", "POST", {"data": [str(pid)]})
                assert loaded.status == 200 and loaded.body["data"][2] == "NaN"

                rename = front.edit(pid, {"name": "Storm Lantern II"})
                assert rename.status == 400 and "price is not a finite number" in rename.body["error"]
                fixed = front.edit(pid, {"price": "31.00"})
                assert fixed.status == 200 and fixed.body["price"] == 31.0
            finally:
                conn.execute("UPDATE products SET price = 31 WHERE id = %s AND price = 'NaN'", (pid,))
        front.wait_searchable(pid, fixed.body["version"])
        assert front.parts.vector(pid).metadata["price"] == 31.0
    finally:
        delete_synced(front, pid)
