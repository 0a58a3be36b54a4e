"""Change capture without any NOTIFY from writers, updates captured by one BEFORE row
trigger (both in schema/current.sql), and pelican's adaptive polling (pelican/service.py), against the real local parts."""

from __future__ import annotations

import threading

import psycopg
import pytest

from devstack.waiting import wait_until
from pelican.recapture import recapture
from pelican.service import AdaptivePoll
from productsearch import db, products
from pelican.config import PelicanSettings
from productsearch.settings import ConfigError

pytestmark = pytest.mark.stack

CAPTURE_TRIGGERS = {"products_capture_insert_delete", "products_capture_update", "products_capture_truncate"}
CAPTURE_FUNCTIONS = {"products_capture_change", "products_capture_update", "products_capture_truncate"}
SENTINEL = "test-sentinel"
# Scaled down from the defaults (0.05 s doubling to 0.5 s) so a test waits little.
QUICK_POLL = {"busy_poll_interval_seconds": 0.05, "poll_interval_seconds": 0.2}  # options of `pelican run`


def listen(parts) -> psycopg.Connection:
    conn = db.connect(parts.env["DATABASE_URL"], autocommit=True)
    conn.execute("LISTEN product_changes")
    return conn


def heard(listener: psycopg.Connection, parts) -> list[str]:
    """The payloads of every notification committed before this call. A sentinel sent
    now arrives after all of them (notifications are delivered in commit order), so
    the count needs no waiting for stragglers."""
    parts.conn.execute(f"NOTIFY product_changes, '{SENTINEL}'")
    payloads = []
    for note in listener.notifies(timeout=30):
        if note.payload == SENTINEL:
            return payloads
        payloads.append(note.payload)
    raise AssertionError(f"the sentinel notification never arrived; heard {payloads}")


def captured(parts) -> list[tuple[int, str, int | None]]:
    rows = parts.conn.execute("SELECT product_id, operation, version FROM product_changes ORDER BY id")
    return [(r["product_id"], r["operation"], r["version"]) for r in rows]


def versions(parts) -> dict[int, int]:
    return {r["id"]: r["version"] for r in parts.conn.execute("SELECT id, version FROM products")}


def test_writers_send_no_notification_at_all(parts):
    listener = listen(parts)
    writers = [db.connect(parts.env["DATABASE_URL"]) for _ in range(3)]
    try:
        ids = parts.insert_many(4, prefix="quiet")  # into an empty outbox
        parts.insert("Single", "one row")
        for cents in range(5):
            parts.conn.execute("UPDATE products SET price = %s WHERE id = %s", (10 + cents, ids[0]))
        parts.conn.execute("DELETE FROM product_changes")  # as after pelican shipped them
        for writer, pid in zip(writers, ids[1:], strict=True):
            writer.execute("UPDATE products SET description = 'concurrent' WHERE id = %s", (pid,))
        for writer in writers:
            writer.commit()
        parts.conn.execute("UPDATE products SET id = id + 1000 WHERE id = %s", (ids[0],))
        parts.conn.execute("DELETE FROM products WHERE id = %s", (ids[1],))
        parts.conn.execute("TRUNCATE products")
        assert heard(listener, parts) == []
        # Everything was captured all the same: 3 updates, a key change (2 rows), a
        # delete and the truncate of the 4 rows left.
        assert parts.pending_changes() == 3 + 2 + 1 + 4
    finally:
        for writer in writers:
            writer.close()
        listener.close()


def test_a_change_is_shipped_by_polling_alone(parts, stack):
    """No writer notifies, so pelican's poll must find every change, including one that
    commits after pelican shipped everything before it and went idle."""
    queue = parts.env["SQS_QUEUE_URL"]
    pid = parts.insert("Lantern", "an oil lantern")
    listener = listen(parts)
    writer = db.connect(parts.env["DATABASE_URL"])
    try:
        writer.execute("UPDATE products SET description = 'an electric lantern' WHERE id = %s", (pid,))
        edited_version = writer.execute("SELECT version FROM products WHERE id = %s", (pid,)).fetchone()["version"]
        stack.start_app("pelican", options=QUICK_POLL, instance="pelican-capture")
        wait_until(lambda: parts.pending_changes() == 0, 60, what="pelican to ship the insert")
        writer.commit()
        assert heard(listener, parts) == []

        shipped: list[tuple[int, int]] = []

        def edit_shipped() -> bool:
            shipped.extend((c["id"], c["v"]) for body in parts.drain_queue(queue, idle_rounds=1) for c in body["changes"])
            return (pid, edited_version) in shipped

        wait_until(edit_shipped, 60, what="pelican's poll to ship the edit")
        assert parts.pending_changes() == 0
    finally:
        writer.close()
        listener.close()


def test_a_recapture_notify_still_wakes_pelican_from_its_idle_wait(parts, stack):
    """pelican keeps LISTENing: backfill and recapture NOTIFY once per batch. With polls
    60 s apart (the longest pelican allows), only that NOTIFY can make pelican ship
    within the 30 s wait below."""
    queue = parts.env["SQS_QUEUE_URL"]
    stack.start_app("pelican", options={"busy_poll_interval_seconds": 60, "poll_interval_seconds": 60},
                    instance="pelican-asleep")

    def first_claim_done() -> bool:
        # Before its first claim pelican's work connection has run nothing; after it, it
        # sits idle in its 60 s wait.
        row = parts.conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'pelican' AND state = 'idle' AND query <> ''").fetchone()
        return row["n"] == 1

    wait_until(first_claim_done, 60, what="pelican's first (empty) claim")
    pid = parts.insert("Kettle", "a whistling kettle")
    assert recapture(parts.conn, [pid]) == 1
    wait_until(lambda: parts.pending_changes() == 0, 30, what="the NOTIFY to wake pelican")
    shipped = {c["id"] for body in parts.drain_queue(queue, idle_rounds=1) for c in body["changes"]}
    assert shipped == {pid}


def test_a_bulk_update_captures_each_changed_row_once_at_its_version(parts):
    ids = parts.insert_many(400, prefix="bulk")
    before = versions(parts)
    parts.conn.execute("DELETE FROM product_changes")
    updated = parts.conn.execute(
        "UPDATE products SET price = CASE WHEN id % 2 = 0 THEN price + 1 ELSE price END, updated_at = now()"
    ).rowcount
    assert updated == 400
    after = versions(parts)
    changed = sorted(pid for pid in ids if pid % 2 == 0)
    rows = captured(parts)
    assert sorted(pid for pid, _, _ in rows) == changed
    assert {op for _, op, _ in rows} == {"update"}
    assert all(version == after[pid] > before[pid] for pid, _, version in rows)
    assert all(after[pid] == before[pid] for pid in ids if pid % 2 == 1)


def test_a_key_change_is_a_delete_of_the_old_id_and_an_insert_of_the_new(parts):
    a, b, c = parts.insert_many(3, prefix="key")
    before = versions(parts)
    parts.conn.execute("DELETE FROM product_changes")
    # a moves to a new id and b takes a's. (Rows are updated in id order here, so a is
    # free before b takes it.)
    moved = c + 100
    parts.conn.execute("UPDATE products SET id = CASE id WHEN %s THEN %s ELSE %s END WHERE id IN (%s, %s)",
                       (a, moved, a, a, b))
    after = versions(parts)
    rows: dict[int, list[tuple[str, int]]] = {}
    for pid, op, version in captured(parts):
        rows.setdefault(pid, []).append((op, version))
    assert set(rows) == {a, b, moved}
    assert [op for op, _ in rows[b]] == ["delete"] and rows[b][0][1] > before[b]
    assert rows[moved] == [("insert", after[moved])]
    # a: the old a's deletion, outranking its last state, and b's content arriving.
    assert sorted(op for op, _ in rows[a]) == ["delete", "insert"]
    assert dict(rows[a])["delete"] > before[a] and dict(rows[a])["insert"] == after[a]
    assert parts.conn.execute("SELECT name FROM products WHERE id = %s", (a,)).fetchone()["name"] == "key 2"


def test_unchanged_updates_deletes_and_truncate(parts):
    ids = parts.insert_many(5, prefix="misc")
    before = versions(parts)
    parts.conn.execute("DELETE FROM product_changes")

    parts.conn.execute("UPDATE products SET updated_at = now() - interval '1 day', price = price")
    assert captured(parts) == []

    parts.conn.execute("DELETE FROM products WHERE id = ANY(%s)", (ids[:2],))
    rows = captured(parts)
    assert sorted(pid for pid, _, _ in rows) == sorted(ids[:2])
    assert all(op == "delete" and version > before[pid] for pid, op, version in rows)

    parts.conn.execute("DELETE FROM product_changes")
    parts.conn.execute("TRUNCATE products")
    rows = captured(parts)
    assert sorted(pid for pid, _, _ in rows) == sorted(ids[2:])
    assert all(op == "truncate" and version > before[pid] for pid, op, version in rows)


def test_an_update_of_each_indexed_column_and_of_no_other_is_captured(parts):
    """The capture trigger's WHEN clause (schema/current.sql) must list exactly what reaches the
    index, products.CONTENT_COLUMNS (plus id, tested above): one update per column."""
    [pid] = parts.insert_many(1, prefix="columns")
    parts.conn.execute("DELETE FROM product_changes")
    edits = {"name": "renamed", "sku": "COLUMNS-NEW", "description": "described again", "price": 12.34,
             "category": "recategorised"}
    assert set(edits) == set(products.CONTENT_COLUMNS)  # a new indexed column needs an edit here
    for column, value in edits.items():
        before = versions(parts)[pid]
        parts.conn.execute(f"UPDATE products SET {column} = %s WHERE id = %s", (value, pid))
        after = versions(parts)[pid]
        assert after > before and captured(parts)[-1] == (pid, "update", after), column
    parts.conn.execute("UPDATE products SET updated_at = now() - interval '1 hour' WHERE id = %s", (pid,))
    assert len(captured(parts)) == len(edits)


def test_an_update_that_fails_or_is_rolled_back_leaves_no_change_row(parts):
    """009 writes an update's change row in a BEFORE trigger, before the row itself is
    written: a failure after it (a CHECK, a unique key) or a rollback to a savepoint
    must take the change row with it."""
    a, b = parts.insert_many(2, prefix="fail")
    before = versions(parts)
    parts.conn.execute("DELETE FROM product_changes")
    sku_b = parts.conn.execute("SELECT sku FROM products WHERE id = %s", (b,)).fetchone()["sku"]
    with pytest.raises(psycopg.errors.CheckViolation):
        parts.conn.execute("UPDATE products SET price = -1 WHERE id = %s", (a,))
    with pytest.raises(psycopg.errors.UniqueViolation):
        parts.conn.execute("UPDATE products SET sku = %s, name = 'taken' WHERE id = %s", (sku_b, a))
    with parts.conn.transaction():
        with pytest.raises(psycopg.errors.CheckViolation), parts.conn.transaction():  # a savepoint
            parts.conn.execute("UPDATE products SET name = 'renamed' WHERE id = %s", (a,))
            parts.conn.execute("UPDATE products SET price = -2 WHERE id = %s", (b,))
        parts.conn.execute("UPDATE products SET description = 'kept' WHERE id = %s", (b,))
    assert versions(parts)[a] == before[a]
    assert captured(parts) == [(b, "update", versions(parts)[b])]


def test_an_update_that_waited_for_a_concurrent_one_is_captured_on_the_row_it_replaced(parts):
    """READ COMMITTED: an UPDATE blocked on a row another transaction is changing
    re-checks the newer row once that commits, and the BEFORE trigger fires only
    then, on that row. Two writers wait (checked in pg_stat_activity, not by timing):
    one whose WHERE no longer holds, which must capture nothing, and one that applies."""
    url = parts.env["DATABASE_URL"]
    [pid] = parts.insert_many(1, prefix="race")
    old_price = parts.conn.execute("SELECT price FROM products WHERE id = %s", (pid,)).fetchone()["price"]
    parts.conn.execute("DELETE FROM product_changes")
    rowcounts: dict[str, int] = {}
    errors = []

    def update(key: str, sql: str, params: tuple) -> None:
        try:
            with db.connect(url, autocommit=True) as conn:
                rowcounts[key] = conn.execute(sql, params).rowcount
        except Exception as exc:  # surfaced below
            errors.append(exc)

    first = db.connect(url)
    try:
        first.execute("UPDATE products SET price = price + 1 WHERE id = %s", (pid,))
        waiting = [threading.Thread(target=update, args=("stale", "UPDATE products SET name = 'stale' WHERE id = %s AND price = %s",
                                                          (pid, old_price))),
                   threading.Thread(target=update, args=("fresh", "UPDATE products SET description = 'after the first' "
                                                          "WHERE id = %s", (pid,)))]
        for thread in waiting:
            thread.start()
        wait_until(lambda: parts.conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query LIKE 'UPDATE products SET %'").fetchone()["n"] == 2, 30, what="both writers to wait for the row lock")
        first.commit()
        for thread in waiting:
            thread.join(30)
    finally:
        first.close()
    assert errors == [] and rowcounts == {"stale": 0, "fresh": 1}
    row = parts.conn.execute("SELECT name, description, version FROM products WHERE id = %s", (pid,)).fetchone()
    assert row["name"] != "stale" and row["description"] == "after the first"
    rows = captured(parts)
    assert [(p, op) for p, op, _ in rows] == [(pid, "update"), (pid, "update")]
    assert rows[0][2] < rows[1][2] == row["version"]


def test_an_upsert_captures_what_it_did(parts):
    """INSERT ... ON CONFLICT, as the catalog loader writes (products.upsert_sql): a
    conflicting row is an update (captured once, as an update), and one left alone is
    not captured at all, although the BEFORE INSERT trigger fired for it."""
    [pid] = parts.insert_many(1, prefix="upsert")
    sku = parts.conn.execute("SELECT sku FROM products WHERE id = %s", (pid,)).fetchone()["sku"]
    parts.conn.execute("DELETE FROM product_changes")
    row = {"name": "upsert 0", "sku": sku, "description": "from the file", "price": 3, "category": "upsert"}
    parts.conn.execute(products.upsert_sql(update_existing=False), row)
    assert captured(parts) == []
    parts.conn.execute(products.upsert_sql(update_existing=True), row)
    assert captured(parts) == [(pid, "update", versions(parts)[pid])]


def test_capture_triggers_fire_where_the_update_rule_needs_and_run_as_owner(parts):
    """products_capture_update fires BEFORE the row, so it stamps the version the row is
    written with; any other BEFORE UPDATE trigger fires after it (name order) and must not
    change an indexed column. The capture functions run as their owner with a pinned
    search_path (current.sql says why)."""
    # tgtype's bits (PostgreSQL's pg_trigger.h): 1 FOR EACH ROW, 2 BEFORE, then the
    # events: 4 INSERT, 8 DELETE, 16 UPDATE, 32 TRUNCATE.
    triggers = {r["tgname"]: r["tgtype"] for r in parts.conn.execute(
        "SELECT tgname, tgtype FROM pg_trigger WHERE tgrelid = 'products'::regclass AND NOT tgisinternal")}
    assert {name for name in triggers if name.startswith("products_capture")} == CAPTURE_TRIGGERS
    assert {name: triggers[name] for name in CAPTURE_TRIGGERS | {"products_stamp_version"}} == {
        "products_capture_insert_delete": 1 | 4 | 8, "products_capture_update": 1 | 2 | 16,
        "products_capture_truncate": 2 | 32, "products_stamp_version": 1 | 2 | 4}
    # Adding a BEFORE UPDATE trigger means checking it changes no indexed column.
    before_update = {name for name, kind in triggers.items() if kind & 2 and kind & 16}
    assert before_update == {"products_capture_update", "products_touch_updated_at"}
    functions = {r["proname"]: (r["prosecdef"], r["proconfig"]) for r in parts.conn.execute(
        "SELECT proname, prosecdef, proconfig FROM pg_proc WHERE proname LIKE 'products_capture%'")}
    assert set(functions) == CAPTURE_FUNCTIONS
    for secdef, config in functions.values():
        assert secdef and config == ["search_path=public, pg_temp"]


def test_concurrent_writers_capture_every_change(parts):
    ids = parts.insert_many(40, prefix="many")
    parts.conn.execute("DELETE FROM product_changes")
    errors = []

    def edit(chunk):
        try:
            with db.connect(parts.env["DATABASE_URL"], autocommit=True) as conn:
                for pid in chunk:
                    conn.execute("UPDATE products SET price = price + 1 WHERE id = %s", (pid,))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=edit, args=(ids[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(pid for pid, _, _ in captured(parts)) == sorted(ids)


# -- the polling schedule and its settings (no database) ------------------------------------
def test_adaptive_poll_doubles_while_idle_and_resets_on_work():
    poll = AdaptivePoll(0.05, 0.5)
    assert [poll.found_nothing() for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    poll.found_work()
    assert poll.found_nothing() == 0.05
    assert AdaptivePoll(0.2, 0.1).found_nothing() == 0.2  # an idle wait below the busy one is raised to it


def test_poll_settings_have_defaults_and_refuse_a_busy_interval_above_the_idle_one():
    settings = PelicanSettings.from_env({})
    assert (settings.busy_poll_interval_seconds, settings.poll_interval_seconds) == (0.05, 0.5)
    tuned = PelicanSettings.parse(["--busy-poll-interval-seconds", "0.2", "--poll-interval-seconds", "2"])
    assert (tuned.busy_poll_interval_seconds, tuned.poll_interval_seconds) == (0.2, 2.0)
    with pytest.raises(ConfigError, match="--busy-poll-interval-seconds"):
        PelicanSettings.parse(["--busy-poll-interval-seconds", "3", "--poll-interval-seconds", "2"])
    with pytest.raises(ConfigError, match="--busy-poll-interval-seconds"):
        PelicanSettings.parse(["--busy-poll-interval-seconds", "0"])
    with pytest.raises(ConfigError, match="--busy-poll-interval-seconds"):
        PelicanSettings.from_env({}, busy_poll_interval_seconds=1)  # above the 0.5 s idle default
