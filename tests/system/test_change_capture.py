"""Change capture without a NOTIFY per transaction (sql/005_capture_without_notify.sql)
and pelican's adaptive wake-up (pelican/service.py), against the real local parts."""

from __future__ import annotations

import threading

import psycopg
import pytest

from devstack.waiting import wait_until
from pelican.service import AdaptivePoll
from productsearch import db
from productsearch.settings import ConfigError, PelicanSettings

pytestmark = pytest.mark.stack

CAPTURE_TRIGGERS = {"products_capture_insert", "products_capture_update", "products_capture_delete",
                    "products_capture_truncate"}
SENTINEL = "test-sentinel"


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


def test_writers_notify_only_when_their_change_lands_in_an_empty_outbox(parts):
    listener = listen(parts)
    try:
        ids = parts.insert_many(4, prefix="wake")  # one statement into an empty outbox: one notification
        assert heard(listener, parts) == [""]

        for cents in range(20):  # the outbox holds changes: nobody is asleep, nothing is sent
            parts.conn.execute("UPDATE products SET price = %s WHERE id = %s", (10 + cents, ids[0]))
        writers = [db.connect(parts.env["DATABASE_URL"]) for _ in range(3)]
        try:
            for writer, pid in zip(writers, ids[1:], strict=True):
                writer.execute("UPDATE products SET description = 'concurrent' WHERE id = %s", (pid,))
            for writer in writers:
                writer.commit()
            assert heard(listener, parts) == []
            assert parts.pending_changes() == 4 + 20 + 3

            # Shipped (pelican deletes what it shipped): the next change wakes it again.
            parts.conn.execute("DELETE FROM product_changes")
            parts.conn.execute("UPDATE products SET price = 99 WHERE id = %s", (ids[0],))
            assert heard(listener, parts) == [""]

            # Two transactions into an empty outbox do not see each other's uncommitted
            # rows, so each may notify: at most one notification per capturing transaction.
            parts.conn.execute("DELETE FROM product_changes")
            for writer, pid in zip(writers[:2], ids[1:3], strict=True):
                writer.execute("UPDATE products SET price = 5 WHERE id = %s", (pid,))
            for writer in writers[:2]:
                writer.commit()
            assert heard(listener, parts) == ["", ""]
        finally:
            for writer in writers:
                writer.close()
    finally:
        listener.close()


def test_a_change_no_notification_announced_is_still_shipped_by_the_poll(parts, stack):
    """The race the design leaves open: a writer captures while the outbox holds a change,
    so it sends nothing; pelican ships that change and the outbox is empty before the
    writer commits. pelican's poll, not a NOTIFY, must find the writer's change."""
    queue = parts.env["SQS_QUEUE_URL"]
    pid = parts.insert("Lantern", "an oil lantern")
    listener = listen(parts)
    writer = db.connect(parts.env["DATABASE_URL"])
    try:
        writer.execute("UPDATE products SET description = 'an electric lantern' WHERE id = %s", (pid,))
        edited_version = writer.execute("SELECT version FROM products WHERE id = %s", (pid,)).fetchone()["version"]
        # Scaled down from the defaults so the test is quick; the busy interval is the default.
        stack.start_app("pelican", {"PELICAN_POLL_INTERVAL_SECONDS": "1"}, instance="pelican-capture")
        wait_until(lambda: parts.pending_changes() == 0, 60, what="pelican to ship the insert")
        writer.commit()
        assert heard(listener, parts) == []

        shipped: list[tuple[int, int]] = []

        def edit_shipped() -> bool:
            shipped.extend((c["id"], c["v"]) for body in parts.drain_queue(queue, idle_rounds=1) for c in body["changes"])
            return (pid, edited_version) in shipped

        wait_until(edit_shipped, 60, what="pelican's poll to ship the unannounced edit")
        assert parts.pending_changes() == 0
    finally:
        writer.close()
        listener.close()


def test_a_bulk_update_captures_each_changed_row_once_at_its_version(parts):
    ids = parts.insert_many(400, prefix="bulk")
    before = versions(parts)
    parts.conn.execute("DELETE FROM product_changes")
    listener = listen(parts)
    try:
        updated = parts.conn.execute(
            "UPDATE products SET price = CASE WHEN id % 2 = 0 THEN price + 1 ELSE price END, updated_at = now()"
        ).rowcount
        assert updated == 400
        assert heard(listener, parts) == [""]
    finally:
        listener.close()
    after = versions(parts)
    changed = sorted(pid for pid in ids if pid % 2 == 0)
    rows = captured(parts)
    assert sorted(pid for pid, _, _ in rows) == changed
    assert {op for _, op, _ in rows} == {"update"}
    assert all(version == after[pid] > before[pid] for pid, _, version in rows)
    assert all(after[pid] == before[pid] for pid in ids if pid % 2 == 1)


def test_key_changes_pair_rows_by_id_and_deletes_outrank_the_last_state(parts):
    a, b, c = parts.insert_many(3, prefix="key")
    before = versions(parts)
    parts.conn.execute("DELETE FROM product_changes")
    # a moves to a new id and b takes a's: b is gone, the new id appears, and a now holds
    # other content. (Rows are updated in id order here, so a is free before b takes it.)
    moved = c + 100
    parts.conn.execute("UPDATE products SET id = CASE id WHEN %s THEN %s ELSE %s END WHERE id IN (%s, %s)",
                       (a, moved, a, a, b))
    after = versions(parts)
    rows = {pid: (op, version) for pid, op, version in captured(parts)}
    assert set(rows) == {a, b, moved}
    assert rows[b][0] == "delete" and rows[b][1] > before[b]
    assert rows[moved] == ("insert", after[moved])
    assert rows[a] == ("update", after[a])
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


@pytest.fixture
def capture_database(stack):
    admin_url = stack.database_url.replace("/products?", "/postgres?")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS capture_check")
        admin.execute("CREATE DATABASE capture_check")
    yield stack.database_url.replace("/products?", "/capture_check?")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS capture_check WITH (FORCE)")


def test_the_migration_applies_over_001_to_004_twice_and_keeps_capture_as_owner(capture_database):
    files = db.migration_files()
    with psycopg.connect(capture_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        for name, sql in files:
            if name < "005":
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
        conn.execute("INSERT INTO products (name, sku, description, price) VALUES ('Old', 'OLD-1', 'before 005', 1)")

    assert "005_capture_without_notify.sql" in db.migrate(capture_database)
    sql = dict(files)["005_capture_without_notify.sql"]
    with psycopg.connect(capture_database, autocommit=True) as conn:
        conn.execute(sql)  # a second run over itself changes nothing
        triggers = {r[0] for r in conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'products'::regclass AND NOT tgisinternal "
            "AND tgname LIKE 'products_capture%'")}
        assert triggers == CAPTURE_TRIGGERS
        functions = {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT proname, prosecdef, proconfig FROM pg_proc WHERE proname LIKE 'products_capture%'")}
        assert set(functions) == {"products_capture_rows", "products_capture_truncate"}
        for secdef, config in functions.values():
            assert secdef and config == ["search_path=public, pg_temp"]
        assert conn.execute("SELECT has_function_privilege('public', 'product_changes_wake(bigint)', 'EXECUTE')").fetchone() == (False,)

        conn.execute("UPDATE products SET name = 'Old, edited' WHERE sku = 'OLD-1'")
        version = conn.execute("SELECT version FROM products WHERE sku = 'OLD-1'").fetchone()[0]
        rows = conn.execute("SELECT operation, version FROM product_changes ORDER BY id").fetchall()
        assert rows[0][0] == "insert" and rows[-1] == ("update", version) and len(rows) == 2


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


# -- the wake-up schedule and its settings (no database) ------------------------------------
def test_adaptive_poll_doubles_while_idle_and_resets_on_work():
    poll = AdaptivePoll(0.05, 1.0)
    assert [poll.found_nothing() for _ in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    poll.found_work()
    assert poll.found_nothing() == 0.05


def test_poll_settings_have_defaults_and_refuse_a_busy_interval_above_the_idle_one():
    settings = PelicanSettings.from_env({})
    assert (settings.busy_poll_interval_seconds, settings.poll_interval_seconds) == (0.05, 5.0)
    tuned = PelicanSettings.from_env({"PELICAN_BUSY_POLL_INTERVAL_SECONDS": "0.2", "PELICAN_POLL_INTERVAL_SECONDS": "2"})
    assert (tuned.busy_poll_interval_seconds, tuned.poll_interval_seconds) == (0.2, 2.0)
    with pytest.raises(ConfigError, match="PELICAN_BUSY_POLL_INTERVAL_SECONDS"):
        PelicanSettings.from_env({"PELICAN_BUSY_POLL_INTERVAL_SECONDS": "3", "PELICAN_POLL_INTERVAL_SECONDS": "2"})
    with pytest.raises(ConfigError, match="PELICAN_BUSY_POLL_INTERVAL_SECONDS"):
        PelicanSettings.from_env({"PELICAN_BUSY_POLL_INTERVAL_SECONDS": "0"})
