"""The database under operations, against the real local parts: one normal form for
SKUs (loader, constraint, migration, keyword search); a column type change while
pelican, emu and the frontend run; a transaction held open (status API, panel,
pelican's metrics); and a status that never claims more than it read."""

from __future__ import annotations

import json
import time
import unicodedata
import uuid
from decimal import Decimal

import boto3
import psycopg
import pytest
from psycopg_pool import ConnectionPool

from devstack.waiting import wait_until
from productsearch import db, products
from productsearch.catalog import load_catalog
from productsearch.index import ProductIndex
from productsearch.settings import IndexSettings
from tests.e2e import frontend_stack
from tests.kit import clear_index_faults, inject_index_fault
from tests.e2e.frontend_stack import request
from tests.system.test_pelican_metrics import metric_statistics
from tests.system.test_reliability import converge

pytestmark = pytest.mark.stack

ROWS = 60
NFC_SKU = "CAFÉ-Ñ-4471"
NFD_SKU = unicodedata.normalize("NFD", NFC_SKU)
assert NFC_SKU != NFD_SKU


@pytest.fixture(scope="module")
def front(stack):
    f = frontend_stack.start(stack, rows=ROWS)
    yield f
    frontend_stack.stop(f)


def version_of(front, pid: int) -> int:
    return front.parts.conn.execute("SELECT version FROM products WHERE id = %s", (pid,)).fetchone()["version"]


# -- one normal form for identity keys and search tokens -------------------------------------
def test_nfd_and_nfc_forms_of_one_sku_load_as_one_product(front, tmp_path):
    conn = front.parts.conn
    header = "name,sku,description,price\n"
    first, second, both = tmp_path / "nfc.csv", tmp_path / "nfd.csv", tmp_path / "both.csv"
    first.write_text(header + f"Café Grinder,{NFC_SKU},a burr grinder,120.00\n", encoding="utf-8")
    second.write_text(header + f"Cafe Grinder (other system),{NFD_SKU},typed elsewhere,99.00\n", encoding="utf-8")
    both.write_text(header + f"One,{NFD_SKU},first,1.00\nTwo,{NFC_SKU},second,2.00\n", encoding="utf-8")

    assert load_catalog(conn, first).loaded == 1
    again = load_catalog(conn, second)
    assert (again.loaded, again.kept) == (0, 1)
    in_one_file = load_catalog(conn, both)
    assert in_one_file.kept == 1 and [line for line, _ in in_one_file.skipped] == [3]
    assert "duplicate sku" in in_one_file.skipped[0][1]
    stored = conn.execute("SELECT id, sku, name FROM products WHERE sku IN (%s, %s)", (NFC_SKU, NFD_SKU)).fetchall()
    assert [(r["sku"], r["name"]) for r in stored] == [(NFC_SKU, "Café Grinder")]

    # No path bypasses it: the table refuses a SKU that is not NFC.
    with pytest.raises(psycopg.errors.CheckViolation, match="products_sku_nfc"):
        conn.execute("INSERT INTO products (name, sku, description, price) VALUES ('x', %s, 'y', 1)", (NFD_SKU,))
    front.wait_searchable(stored[0]["id"], version_of(front, stored[0]["id"]))


def test_a_full_width_or_decomposed_sku_query_ranks_the_product_first(front):
    sku = "ZQ-7781-KX"
    pid = front.parts.insert("Quiet Desk Fan", "three speeds, oscillating", sku=sku, category="device")
    accented = front.parts.insert("Crème Brûlée Torch", "kitchen torch", sku="BRÛLÉE-22", category="device")
    front.wait_searchable(pid, version_of(front, pid))
    front.wait_searchable(accented, version_of(front, accented))
    full_width = unicodedata.normalize("NFKC", sku).translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
    assert full_width == "ＺＱ－７７８１－ＫＸ"
    for mode in ("keyword", "hybrid"):
        for query, wanted in ((full_width, pid), (full_width.lower(), pid),
                              (unicodedata.normalize("NFD", "brûlée-22"), accented)):
            results = front.search(query, top_k=5, mode=mode)
            assert results and results[0]["id"] == wanted, (mode, query, [r["sku"] for r in results])


# -- a column type change while the services run ---------------------------------------------
def change_price_type(conn, new_type: str) -> None:
    """What a migration widening the price does: the capture trigger's WHEN clause names
    the column, so it is dropped and recreated around the ALTER, in one transaction."""
    with conn.transaction():
        definition = conn.execute(
            "SELECT pg_get_triggerdef(oid) AS d FROM pg_trigger WHERE tgrelid = 'products'::regclass "
            "AND tgname = 'products_capture_update'").fetchone()["d"]
        conn.execute("DROP TRIGGER products_capture_update ON products")
        conn.execute(f"ALTER TABLE products ALTER COLUMN price TYPE {new_type}")
        conn.execute(definition)


def test_a_column_type_change_while_the_services_run(front):
    conn = front.parts.conn
    ids = front.product_ids[:10]
    # The failure this guards against: a statement prepared before the change fails after it.
    with db.connect(front.stack.database_url, autocommit=True) as prepared:
        prepared.prepare_threshold = 0
        prepared.execute(products.ROWS_BY_IDS, (ids,)).fetchall()
        for _ in range(30):  # searches the frontend's pool connections run many times
            assert front.search("wireless headset", top_k=5)
        pelican_log = front.stack.log_path("pelican")
        before = len(pelican_log.read_text().splitlines())
        change_price_type(conn, "numeric(14,2)")
        try:
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="cached plan must not change result type"):
                prepared.execute(products.ROWS_BY_IDS, (ids,)).fetchall()

            statuses = [front.api("/api/search", "POST", {"query": "wireless headset", "top_k": 5}).status
                        for _ in range(30)]
            assert statuses == [200] * 30
            assert front.api(f"/api/products/{ids[0]}").status == 200
            # Changes keep flowing through pelican and emu.
            conn.execute("UPDATE products SET price = 4321.99, description = description || ' (widened)' WHERE id = %s",
                         (ids[1],))
            front.wait_searchable(ids[1], version_of(front, ids[1]))
            assert front.stack.processes["pelican"].poll() is None
            logged = [json.loads(line) for line in pelican_log.read_text().splitlines()[before:] if line.startswith("{")]
            assert not [r for r in logged if r.get("level") in ("ERROR", "CRITICAL")], logged
        finally:
            change_price_type(conn, "numeric(12,2)")


# -- a transaction held open --------------------------------------------------------------------
def _reader(front, **kwargs):
    from frontend.status import StatusReader

    env = front.stack.env()
    pool = ConnectionPool(env["DATABASE_URL"], min_size=1, max_size=2, open=True,
                          **db.pool_options(env["DATABASE_URL"], application_name="status-test"))
    sqs = boto3.client("sqs", region_name=env["AWS_REGION"], endpoint_url=env["AWS_ENDPOINT_URL"],
                       aws_access_key_id="local", aws_secret_access_key="local")
    index = ProductIndex(IndexSettings.from_env(env), attempts=1, timeout_s=2.0)
    return pool, StatusReader(pool, index, sqs, env["SQS_QUEUE_URL"], env["SQS_DLQ_URL"], **kwargs)


def test_a_held_transaction_shows_in_the_status_api_panel_and_metrics(front):
    from frontend.status import status_markdown

    cw = boto3.client("cloudwatch", region_name=front.stack.env()["AWS_REGION"],
                      endpoint_url=front.stack.env()["AWS_ENDPOINT_URL"],
                      aws_access_key_id="local", aws_secret_access_key="local")
    namespace, deployment = f"ProductSearchHeld{uuid.uuid4().hex[:8]}", "held-test"
    holder = psycopg.connect(front.stack.database_url, autocommit=True)
    pool, reader = _reader(front)
    front.stack.start_app("pelican", {"CLOUDWATCH_NAMESPACE": namespace, "DEPLOYMENT_NAME": deployment},
                          options={"metric_interval_seconds": 1, **frontend_stack.FAST},
                          instance="pelican-metrics")
    try:
        # An idle-in-transaction session with a snapshot: it holds the xmin horizon.
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM products").fetchone()
        assert holder.execute("SELECT backend_xmin IS NOT NULL FROM pg_stat_activity WHERE pid = pg_backend_pid()"
                              ).fetchone()[0]
        # Changes shipped meanwhile leave their deleted outbox rows dead.
        for n in range(20):
            front.parts.conn.execute("UPDATE products SET price = price + 1 WHERE id = %s",
                                     (front.product_ids[n % 10],))
        wait_until(lambda: front.parts.pending_changes() == 0, 60, what="the changes shipped")

        status = wait_until(lambda: (s := front.api("/api/status").body)["oldest_transaction_age_s"] >= 3
                            and s["outbox_dead_tuples"] >= 20 and s, 60, interval=1.0,
                            what="the held transaction and the dead rows in GET /api/status")
        assert status["errors"] == {}
        panel = status_markdown(reader.read())
        assert "| Oldest open transaction | " in panel and "| Oldest open transaction | none |" not in panel
        dead_row = next(line for line in panel.splitlines() if line.startswith("| Dead row versions in the change log"))
        assert int(dead_row.split("|")[2].strip().replace(",", "")) >= 20
        # The page's own panel, as its Refresh button asks for it.
        page_panel = request(front.url + "/gradio_api/run/ui_status", "POST", {"data": []}).body["data"][0]
        assert "| Oldest open transaction | " in page_panel and "| Oldest open transaction | none |" not in page_panel
        assert "| Dead row versions in the change log | " in page_panel

        held = wait_until(
            lambda: (s := metric_statistics(cw, namespace, deployment, "OldestTransactionAgeSeconds"))["Maximum"]
            and s["Maximum"] >= 3 and s, 60, interval=1.0, what="OldestTransactionAgeSeconds of 3 s or more")
        dead = wait_until(
            lambda: (s := metric_statistics(cw, namespace, deployment, "OutboxDeadTuples"))["Maximum"]
            and s["Maximum"] >= 20 and s, 60, interval=1.0, what="OutboxDeadTuples of 20 or more")
        assert held["SampleCount"] >= 1 and dead["SampleCount"] >= 1
        listed = {m["MetricName"]: m["Dimensions"] for m in cw.list_metrics(Namespace=namespace)["Metrics"]}
        assert listed["OldestTransactionAgeSeconds"] == listed["OutboxDeadTuples"] == listed["ChangesWaiting"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        front.stack.stop("pelican-metrics", timeout=20)
        pool.close()
    # Once it ends, the age goes back to none.
    wait_until(lambda: front.api("/api/status").body["oldest_transaction_age_s"] < 3, 30, interval=1.0,
               what="the oldest transaction's age back to below 3 s")


def test_the_outbox_is_vacuumed_as_a_queue_table(front):
    options = front.parts.conn.execute(
        "SELECT reloptions FROM pg_class WHERE oid = 'product_changes'::regclass").fetchone()["reloptions"]
    assert sorted(options) == ["autovacuum_vacuum_cost_delay=0", "autovacuum_vacuum_scale_factor=0",
                               "autovacuum_vacuum_threshold=1000"]


# -- status that tells the truth ------------------------------------------------------------------
def test_nothing_waiting_is_said_only_when_nothing_waits_anywhere(front):
    from frontend.status import status_markdown

    pool, reader = _reader(front, ttl_s=0.5)
    front.stack.stop("emu", timeout=20)
    try:
        front.parts.conn.execute("UPDATE products SET price = price + 1 WHERE id = %s", (front.product_ids[20],))
        # pelican ships it; with no emu it waits in the queue.
        wait_until(lambda: front.parts.pending_changes() == 0, 60, what="the change shipped to the queue")
        status = wait_until(lambda: (s := reader.read()).queued and s.changes_pending == 0 and s, 30, interval=0.3,
                            what="a reading with the change in the queue")
        panel = status_markdown(status)
        assert "nothing waiting" not in panel
        assert "| Age of the oldest unsynced change | none in the change log; 1 in the jobs queue" in panel
        assert status.rows == status.vectors and not status.in_sync and "In sync" not in panel
        api = wait_until(lambda: (s := front.api("/api/status").body)["queue"]["visible"] + s["queue"]["in_flight"] > 0
                         and s, 30, interval=0.5, what="the API's reading with the change in the queue")
        assert api["in_sync"] is False
    finally:
        front.stack.start_app("emu")
        pool.close()
    wait_until(lambda: front.api("/api/status").body["in_sync"], 90, interval=1.0, what="in sync again")


def test_a_reading_that_cannot_be_refreshed_is_marked_stale(front):
    from frontend.status import status_markdown

    pool, reader = _reader(front, ttl_s=0.5, stale_after_s=2.0, first_wait_s=0.5)
    try:
        first = wait_until(lambda: (s := reader.read()).in_sync and s, 30, interval=0.3, what="an in-sync reading")
        assert first.age_s is not None and first.stale is False
        # Every index request now stalls: refreshes cannot finish.
        inject_index_fault(front.stack, delay_seconds=20, paths=["/describe_index_stats"])
        stale = wait_until(lambda: (s := reader.read()).stale and s, 30, interval=0.5, what="a stale reading")
        assert stale.in_sync is False and stale.age_s >= 2.0
        assert stale.to_json()["stale"] is True and stale.to_json()["in_sync"] is False
        panel = status_markdown(stale)
        assert "**Stale reading**" in panel and "In sync" not in panel
    finally:
        clear_index_faults(front.stack)
        pool.close()


def test_make_status_never_prints_an_old_reading_as_current(front):
    wait_until(lambda: front.api("/api/status").body["in_sync"], 90, interval=1.0, what="in sync")
    lines = front.stack.sync_lines()
    assert lines[1].startswith("sync: in sync (read at ") and " s ago)" in lines[1]
    assert lines[4].startswith("  oldest open transaction: ") and "change-log rows awaiting vacuum: " in lines[4]
    rows_before = front.api("/api/status").body["rows"]
    front.stack.stop("emu", timeout=20)
    try:
        new = front.parts.insert("Quiet Spell Lamp", "added while nobody looked", price=Decimal("19.00"))
        wait_until(lambda: front.parts.pending_changes() == 0, 60, what="the insert shipped to the queue")
        # A quiet spell: nobody asks for the status until the cached reading is stale.
        time.sleep(12)
        lines = front.stack.sync_lines()
        assert not lines[1].startswith("sync: in sync"), lines
        if lines[1].startswith("sync: catching up"):
            assert f"rows {rows_before + 1:,}," in lines[2], lines
        else:
            assert lines[1].startswith("sync: unknown: the latest reading is stale"), lines
    finally:
        front.stack.start_app("emu")
    front.wait_searchable(new, version_of(front, new))


# -- last: what the faults above leave behind -------------------------------------------------------
def test_the_index_ends_equal_to_the_table(front):
    """After the rewritten SKUs, the widened and restored column, the held transaction
    and the stopped emu, reconcile finds nothing to repair."""
    converge(front.parts, front.stack)
