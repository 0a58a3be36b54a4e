"""Ordering across the events that move a database's sequences backwards while the
index keeps what it holds: a point-in-time restore, a dump restored into a new
database, a new database under a kept index, and an index written while a clock ran
ahead. After each, new edits are indexed, /sync tells the truth, and
`pelican reconcile --repair` converges."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psycopg
import pytest

from devstack.postgres import pg_bindir
from devstack.waiting import wait_until
from frontend import editing
from productsearch import db
from productsearch.documents import IndexRecord, metadata
from productsearch.settings import DEFAULT_TEXT_TEMPLATE
from tests.system.test_reliability import CLEAN, FAST, converge, reconcile_line, without_capture

pytestmark = pytest.mark.stack


class OwnConnection:
    """The pool interface frontend.editing uses, over the test's own connection (the
    frontend's pool would hold connections a restore has to drop)."""

    def __init__(self, parts):
        self.parts = parts

    @contextmanager
    def connection(self):
        yield self.parts.conn


def sync(parts, pid: int, version: int | None = None) -> editing.SyncState:
    return editing.sync_state(parts.index, OwnConnection(parts), pid, DEFAULT_TEXT_TEMPLATE, version)




def start_apps(stack) -> None:
    stack.start_app("pelican", options=FAST)
    stack.start_app("emu")


def stop_apps(stack) -> None:
    for name in ("pelican", "emu"):
        stack.stop(name, timeout=30)


def outbox_sequence(parts) -> int:
    return parts.conn.execute("SELECT last_value FROM product_changes_id_seq").fetchone()["last_value"]


def pg_dump(stack, path: Path) -> None:
    subprocess.run([str(pg_bindir() / "pg_dump"), "--format=custom", f"--file={path}", f"--dbname={stack.database_url}"],
                   check=True, capture_output=True, timeout=120)


def restore(parts, stack, dump: Path) -> None:
    """Replaces the products database with the dump, as a point-in-time restore does.
    The database keeps its name and credentials; if the restore fails it is recreated
    empty and migrated, so the tests after this one still find a usable schema."""
    parts.conn.close()
    admin_url = stack.database_url.replace("/products?", "/postgres?")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("DROP DATABASE products WITH (FORCE)")
        admin.execute("CREATE DATABASE products")
    try:
        subprocess.run([str(pg_bindir() / "pg_restore"), "--exit-on-error", f"--dbname={stack.database_url}", str(dump)],
                       check=True, capture_output=True, timeout=120)
    except BaseException:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("DROP DATABASE products WITH (FORCE)")
            admin.execute("CREATE DATABASE products")
        stack.migrate()
        raise
    finally:
        parts.conn = db.connect(stack.database_url, autocommit=True, attempts=10)


def test_new_database_under_a_kept_index_indexes_the_new_rows(parts, stack):
    start_apps(stack)
    ids = [parts.insert(f"Old Thing {i}", f"the old catalog's item number {i}") for i in range(4)]
    for round_ in range(3):  # the index's change-id versions climb past where a new outbox starts
        for pid in ids:
            parts.conn.execute("UPDATE products SET price = %s WHERE id = %s", (200 + round_, pid))
    converge(parts, stack)
    held = parts.index.newest_versions([str(i) for i in ids])

    # A new database: empty table and outbox, sequences from 1, the index and queues kept.
    without_capture(parts, "TRUNCATE products, product_changes RESTART IDENTITY")
    assert outbox_sequence(parts) == 1
    for i, pid in enumerate(ids):
        parts.conn.execute("INSERT INTO products (id, name, sku, description, price) VALUES (%s, %s, %s, %s, %s)",
                           (pid, f"New Thing {i}", f"NEW-{i}", f"a different product, number {i}", 10 + i))

    wait_until(lambda: all(parts.holds_description(pid, f"a different product, number {i}") for i, pid in enumerate(ids)),
               120, what="the new rows indexed over the old ones")
    now_held = parts.index.newest_versions([str(i) for i in ids])
    assert all(now_held[str(pid)] > held[str(pid)] for pid in ids)
    assert all(sync(parts, pid).searchable for pid in ids)
    converge(parts, stack)


def test_point_in_time_restore_then_edits_and_repair_converge(parts, stack, tmp_path):
    start_apps(stack)
    rolled_a = parts.insert("Lantern", "a brass oil lantern")
    rolled_b = parts.insert("Kettle", "a copper camping kettle")
    deleted_later = parts.insert("Compass", "a liquid-filled hiking compass")
    parts.insert("Rope", "thirty metres of climbing rope")
    converge(parts, stack)
    dump = tmp_path / "products.dump"
    pg_dump(stack, dump)

    # After the backup: edits, a deletion and a new row, all indexed.
    for pid in (rolled_a, rolled_b):
        parts.conn.execute("UPDATE products SET description = description || ', edited after the backup' WHERE id = %s", (pid,))
    parts.conn.execute("DELETE FROM products WHERE id = %s", (deleted_later,))
    created_later = parts.insert("Stove", "a stove added after the backup")
    converge(parts, stack)
    held = parts.index.newest_versions([str(i) for i in (rolled_a, rolled_b, deleted_later, created_later)])
    sequence_before = outbox_sequence(parts)

    stop_apps(stack)
    restore(parts, stack, dump)
    row_a = parts.conn.execute("SELECT description, version FROM products WHERE id = %s", (rolled_a,)).fetchone()
    assert row_a["description"] == "a brass oil lantern" and row_a["version"] < held[str(rolled_a)]
    assert outbox_sequence(parts) < sequence_before, "the restore did not move the outbox sequence back"

    assert reconcile_line(stack) == "missing=1 stale=2 orphaned=1"
    # The index holds a newer version of text the table no longer has: not searchable.
    state = sync(parts, rolled_a)
    assert not state.searchable and state.indexed_version == held[str(rolled_a)]

    # An edit after the restore outranks what the index holds, and is searchable once indexed, not before.
    edit = editing.apply_edit(OwnConnection(parts), rolled_a, {"description": "a brass lantern, edited after the restore"}, "tester",
                              DEFAULT_TEXT_TEMPLATE)
    assert edit.version > held[str(rolled_a)]
    assert not sync(parts, rolled_a, edit.version).searchable  # pelican is stopped: nothing has shipped it
    start_apps(stack)
    wait_until(lambda: sync(parts, rolled_a, edit.version).searchable, 90, what="the edit after the restore searchable")
    assert parts.holds_description(rolled_a, "a brass lantern, edited after the restore")

    assert reconcile_line(stack) == "missing=1 stale=1 orphaned=1"
    assert reconcile_line(stack, "--repair").startswith("missing=1 stale=1 orphaned=1 repaired=3")
    converge(parts, stack)
    assert reconcile_line(stack) == CLEAN
    assert parts.holds_description(rolled_b, "a copper camping kettle")
    # The row deleted after the backup is back, indexed over its own newer tombstone.
    assert parts.holds_description(deleted_later, "a liquid-filled hiking compass")
    assert parts.vector(deleted_later).metadata["version"] > held[str(deleted_later)]
    assert parts.vector(created_later) is None
    assert sync(parts, rolled_b).searchable and sync(parts, deleted_later).searchable


def test_repair_wins_over_index_versions_ahead_of_the_clock(parts, stack):
    start_apps(stack)
    stale, buried = parts.insert("Hammock", "a nylon hammock"), parts.insert("Tarp", "a waterproof tarp")
    converge(parts, stack)

    # An index written by a database whose clock ran ahead (or one restored to a machine
    # whose clock is behind): versions past anything this database's clock will stamp soon.
    ahead = max(parts.index.newest_versions([str(stale), str(buried)]).values()) + 10**12  # ~11.6 days in µs
    row = parts.conn.execute("SELECT id, name, sku, description, price, category FROM products WHERE id = %s", (stale,)).fetchone()
    record = IndexRecord(id=str(stale), text="from elsewhere",
                         metadata=metadata({**row, "description": "text from a clock that ran ahead"}, ahead, DEFAULT_TEXT_TEMPLATE))
    unit = np.zeros((1, 384), dtype=np.float32)
    unit[0, 0] = 1.0
    parts.index.upsert([record], unit)
    parts.index.delete({str(buried): ahead})

    assert reconcile_line(stack) == "missing=1 stale=1 orphaned=0"
    assert not sync(parts, stale).searchable
    assert reconcile_line(stack, "--repair").startswith("missing=1 stale=1 orphaned=0 repaired=2")
    converge(parts, stack)
    assert parts.holds_description(stale, "a nylon hammock") and parts.holds_description(buried, "a waterproof tarp")
    assert all(parts.vector(pid).metadata["version"] > ahead for pid in (stale, buried))
    assert sync(parts, stale).searchable
