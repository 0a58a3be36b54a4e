"""The migration and the catalog loader against a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

import psycopg
import pytest

from devstack.waiting import wait_until
from productsearch import db, migrations
from tests.system.conftest import scratch_database

pytestmark = pytest.mark.stack


@pytest.fixture
def fresh_database(stack):
    with scratch_database(stack, "migration_check") as url:
        yield url


def test_migration_is_safe_twice_and_from_two_processes_at_once(stack, fresh_database):
    env = {**stack.app_env(), "DATABASE_URL": fresh_database}
    racers = [subprocess.Popen([sys.executable, "-m", "pelican", "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in racers]
    assert [p.returncode for p in racers] == [0, 0], outputs
    applied = sorted(out for out, _ in outputs)
    assert "nothing to apply" in applied[1] and f"schema migrated (applied now: {migrations.BASELINE}" in applied[0], applied
    again = subprocess.run([sys.executable, "-m", "pelican", "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "schema up to date (nothing to apply)" in again.stdout
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(migrations.migration_files())
        triggers = {r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'products'::regclass AND NOT tgisinternal")}
        assert {"products_capture_insert_delete", "products_capture_update", "products_capture_truncate"} <= triggers
        # A captured write maintains every index on the outbox; only the primary key is read
        # (pelican claims and deletes by id), so it is the only one.
        outbox_indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'product_changes'")}
        assert outbox_indexes == {"product_changes_pkey"}


def test_loader_reports_bad_rows_with_line_numbers_and_loads_the_rest(parts, stack, tmp_path):
    csv_path = tmp_path / "catalog.csv"
    csv_path.write_text(
        "name,sku,description,price,last_updated\n"
        "Pro System,SKU-A,Good row,$344.87,2023-09-20\n"
        "Bad Price,SKU-B,Broken,about ten,2023-09-20\n"
        "Lite Device,SKU-C,Another good row,\"$1,200.00\",2023-09-20\n"
    )
    done = subprocess.run([sys.executable, "-m", "pelican", "load-catalog", str(csv_path)], env=stack.app_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "loaded=2 skipped=1" in done.stdout
    assert f"{csv_path}:3: skipped: price 'about ten'" in done.stderr
    rows = parts.conn.execute("SELECT sku, price::text AS price, category FROM products ORDER BY sku").fetchall()
    assert [(r["sku"], r["price"], r["category"]) for r in rows] == [("SKU-A", "344.87", "system"), ("SKU-C", "1200.00", "device")]


def test_reloading_the_catalog_keeps_edits_unless_asked_to_update(parts, stack, tmp_path):
    csv_path = tmp_path / "catalog.csv"
    csv_path.write_text("name,sku,description,price\n"
                        "Pro System,SKU-A,As in the file,10.00\n"
                        "Lite Device,SKU-C,Also from the file,20.00\n")

    def load(*flags: str) -> str:
        done = subprocess.run([sys.executable, "-m", "pelican", "load-catalog", str(csv_path), *flags],
                              env=stack.app_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "loaded=2 skipped=0 kept=0" in load()
    parts.conn.execute("UPDATE products SET description = 'Edited in the UI', price = 12.50 WHERE sku = 'SKU-A'")
    csv_path.write_text(csv_path.read_text() + "New Gadget,SKU-D,Added to the file later,30.00\n")

    again = load()
    assert "loaded=1 skipped=0 kept=2" in again and "--update-existing" in again

    def rows():
        return {r["sku"]: (r["description"], r["price"]) for r in parts.conn.execute(
            "SELECT sku, description, price::text AS price FROM products").fetchall()}

    assert rows() == {"SKU-A": ("Edited in the UI", "12.50"), "SKU-C": ("Also from the file", "20.00"),
                      "SKU-D": ("Added to the file later", "30.00")}
    assert "loaded=3 skipped=0 kept=0" in load("--update-existing")
    assert rows()["SKU-A"] == ("As in the file", "10.00")


def test_pelican_exits_cleanly_on_sigterm(parts, stack):
    name = "pelican-sigterm"
    stack.log_path(name).unlink(missing_ok=True)
    stack.start_app("pelican", options={"poll_interval_seconds": 1}, instance=name)
    wait_until(lambda: "pelican started" in stack.log_path(name).read_text(), 60, what="pelican started")
    parts.insert_many(200, prefix="sigterm")
    assert stack.stop(name, signal.SIGTERM, timeout=30) == 0
    assert "pelican stopped" in stack.log_path(name).read_text()


# -- row versions (current.sql: product_next_version) --------------------------------------------------
# Versions are microseconds on the database's clock; any value stamped today is above this.
CLOCK_FLOOR = 1_600_000_000 * 1_000_000


def version_of(parts, pid: int) -> int:
    return parts.conn.execute("SELECT version FROM products WHERE id = %s", (pid,)).fetchone()["version"]


def captured(parts, pid: int) -> list[tuple[str, int | None]]:
    rows = parts.conn.execute("SELECT operation, version FROM product_changes WHERE product_id = %s ORDER BY id", (pid,))
    return [(r["operation"], r["version"]) for r in rows]


def test_indexed_changes_raise_the_row_version_and_nothing_else_does(parts):
    pid = parts.insert("Tent", "A two-person tent")
    inserted = version_of(parts, pid)
    assert inserted > CLOCK_FLOOR and captured(parts, pid) == [("insert", inserted)]

    parts.conn.execute("UPDATE products SET description = 'A three-person tent' WHERE id = %s", (pid,))
    updated = version_of(parts, pid)
    assert updated > inserted and captured(parts, pid)[-1] == ("update", updated)

    parts.conn.execute("UPDATE products SET updated_at = now() - interval '1 day' WHERE id = %s", (pid,))
    parts.conn.execute("UPDATE products SET price = price WHERE id = %s", (pid,))
    assert version_of(parts, pid) == updated and len(captured(parts, pid)) == 2

    # A repair's bump sets the version and nothing else: kept as given, not captured.
    parts.conn.execute("UPDATE products SET version = %s WHERE id = %s", (updated + 1000, pid))
    assert version_of(parts, pid) == updated + 1000 and len(captured(parts, pid)) == 2

    # A version ahead of the clock (the clock stepped back): the next edit still rises by one.
    ahead = updated + 10**12
    parts.conn.execute("UPDATE products SET version = %s WHERE id = %s", (ahead, pid))
    parts.conn.execute("UPDATE products SET price = 7 WHERE id = %s", (pid,))
    assert version_of(parts, pid) == ahead + 1 and captured(parts, pid)[-1] == ("update", ahead + 1)

    parts.conn.execute("DELETE FROM products WHERE id = %s", (pid,))
    operation, deleted = captured(parts, pid)[-1]
    assert operation == "delete" and deleted > ahead + 1


def test_an_insert_given_a_version_still_gets_a_newer_one(parts):
    ahead = 10**16  # past any clock value this century
    pid = parts.conn.execute("INSERT INTO products (name, sku, description, price, version) "
                             "VALUES ('Mug', 'MUG-1', 'A mug', 5, %s) RETURNING id", (ahead,)).fetchone()["id"]
    assert version_of(parts, pid) == ahead + 1


def test_key_changes_and_truncate_record_deletions_above_the_rows_versions(parts):
    ids = parts.insert_many(3, prefix="ver")
    before = {pid: version_of(parts, pid) for pid in ids}
    parts.conn.execute("DELETE FROM product_changes")

    moved = max(ids) + 100
    parts.conn.execute("UPDATE products SET id = %s WHERE id = %s", (moved, ids[0]))
    [(op_old, v_old)] = captured(parts, ids[0])
    [(op_new, v_new)] = captured(parts, moved)
    assert op_old == "delete" and v_old > before[ids[0]]
    assert op_new == "insert" and v_new == version_of(parts, moved) > before[ids[0]]

    versions = {r["id"]: r["version"] for r in parts.conn.execute("SELECT id, version FROM products")}
    parts.conn.execute("DELETE FROM product_changes")
    parts.conn.execute("TRUNCATE products")
    rows = parts.conn.execute("SELECT product_id, operation, version FROM product_changes").fetchall()
    assert {r["product_id"] for r in rows} == set(versions) and {r["operation"] for r in rows} == {"truncate"}
    assert all(r["version"] > versions[r["product_id"]] for r in rows)


# -- one-time migrations frozen, current definitions in one file ----------------------------
GOLDEN = Path(__file__).parent / "golden"
# "<sha256 of the statements>  NNN_name.sql" lines: a released one-time migration's
# statements never change (statement_hash).
FROZEN = GOLDEN / "migrations.sha256"
# What the catalog reports for every table, function and trigger after a migration:
# expected output, as in PostgreSQL's own regression tests (expected/*.out).
DEFINITIONS = GOLDEN / "schema.out"
# Set to rewrite DEFINITIONS from a freshly migrated database (then review its diff).
UPDATE_GOLDEN = "UPDATE_GOLDEN"


def statement_hash(sql: str) -> str:
    """SHA-256 of a migration's statements: its text without whole-line `--` comments,
    blank lines and trailing blanks. A comment may be corrected after release; what
    runs may not."""
    lines = [line.rstrip() for line in sql.splitlines()]
    return hashlib.sha256("\n".join(line for line in lines if line and not line.lstrip().startswith("--")).encode()).hexdigest()


def test_one_time_migrations_are_frozen_by_hash():
    """A database that applied a file never runs it again, so an edit to a released
    one-time migration would reach only new databases: the change belongs in
    current.sql or in a new numbered file. A new file gets its line in FROZEN."""
    schema = resources.files("productsearch") / "schema"
    frozen = dict(reversed(line.split()) for line in FROZEN.read_text().splitlines() if line.strip())
    actual = {name: statement_hash(sql) for name, sql in migrations.migration_files()}
    changed = sorted(name for name in frozen.keys() & actual.keys() if frozen[name] != actual[name])
    assert not changed, f"the statements of released one-time migrations changed: {changed}"
    new = sorted(actual.keys() - frozen.keys())
    assert not new, f"add to {FROZEN}: " + "; ".join(f"{actual[name]}  {name}" for name in new)
    assert frozen.keys() <= actual.keys(), f"released migrations deleted or renamed: {sorted(frozen.keys() - actual.keys())}"
    # Any other .sql file would be neither applied once nor re-applied: a typo in a name.
    stray = {p.name for p in schema.iterdir() if p.name.endswith(".sql")} - actual.keys() - {migrations.CURRENT_DEFINITIONS}
    assert not stray, f"schema files that are neither NNN_name.sql nor {migrations.CURRENT_DEFINITIONS}: {sorted(stray)}"


TABLES_SQL = """
SELECT c.relname AS relation, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS default, a.attidentity
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
ORDER BY c.relname, a.attnum"""
IDENTITY = {"a": " GENERATED ALWAYS AS IDENTITY", "d": " GENERATED BY DEFAULT AS IDENTITY", "": ""}


def definitions(url: str) -> str:
    """Every table (its columns in order, constraints, indexes and storage parameters),
    function and trigger in the database's current schema as the catalog reports them
    (format_type, pg_get_constraintdef, pg_get_indexdef, pg_get_functiondef,
    pg_get_triggerdef), in name order, and which functions PUBLIC may execute."""
    with psycopg.connect(url) as conn:
        tables = [f"{r[0]}.{r[1]} {r[2]}{' NOT NULL' if r[3] else ''}{f' DEFAULT {r[4]}' if r[4] else ''}{IDENTITY[r[5]]}"
                  for r in conn.execute(TABLES_SQL)]
        tables += [f"{r[0]} CONSTRAINT {r[1]} {r[2]}" for r in conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = current_schema()::regnamespace AND conrelid <> 0 ORDER BY 1, 2")]
        tables += [r[0] for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY tablename, indexname")]
        tables += [f"{r[0]} WITH ({', '.join(r[1])})" for r in conn.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
            "AND reloptions IS NOT NULL ORDER BY relname")]
        functions = [r[0].strip() for r in conn.execute(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p "
            "WHERE p.pronamespace = current_schema()::regnamespace "
            "ORDER BY p.proname, pg_get_function_identity_arguments(p.oid)")]
        # Owners' names differ between servers; whether PUBLIC may call a function does not.
        tables += [f"PUBLIC may execute {r[0]}(): {r[1]}" for r in conn.execute(
            "SELECT p.proname, p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) e "
            "WHERE e.grantee = 0 AND e.privilege_type = 'EXECUTE') FROM pg_proc p "
            "WHERE p.pronamespace = current_schema()::regnamespace ORDER BY p.proname")]
        triggers = [r[0] for r in conn.execute(
            "SELECT pg_get_triggerdef(t.oid, true) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal "
            "ORDER BY c.relname, t.tgname")]
        # pg_get_triggerdef leaves out whether a trigger fires; 'O' (origin) is the default.
        states = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}
        triggers += [f"ALTER TABLE {r[0]} {states[r[2]]} TRIGGER {r[1]}" for r in conn.execute(
            "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal AND t.tgenabled <> 'O' "
            "ORDER BY c.relname, t.tgname")]
        seeded = conn.execute("SELECT count(*) FROM lexical_corpus").fetchone()[0]
    tables.append(f"lexical_corpus rows: {seeded}")
    return "\n".join(tables) + "\n\n" + "".join(f"{d};\n\n" for d in functions + triggers)


def golden_definitions() -> str:
    text = DEFINITIONS.read_text()
    return text[text.index("\n\n") + 2:]  # after the header comment


def assert_matches_golden(url: str, *, may_update: bool = False) -> None:
    got = definitions(url)
    if may_update and os.environ.get(UPDATE_GOLDEN):
        DEFINITIONS.write_text("-- Written by tests/system/test_schema.py (UPDATE_GOLDEN=1) from a freshly migrated\n"
                               "-- database: its tables, and what schema/current.sql defines, as the catalog reports them.\n\n" + got)
    assert got == golden_definitions(), (
        f"the schema differs from {DEFINITIONS}; if a migration or schema/current.sql changed on purpose, "
        f"rerun with {UPDATE_GOLDEN}=1 and commit the diff")


def assert_capture_works(url: str) -> None:
    """An insert, an indexed update, an unindexed update and a delete each land in the
    outbox as they should, with the versions the row held."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM product_changes")
        pid, inserted = conn.execute("INSERT INTO products (name, sku, price) VALUES ('Lamp', 'LAMP-1', 20) "
                                     "RETURNING id, version").fetchone()
        updated = conn.execute("UPDATE products SET price = 25 WHERE id = %s RETURNING version", (pid,)).fetchone()[0]
        conn.execute("UPDATE products SET updated_at = now() WHERE id = %s", (pid,))
        conn.execute("DELETE FROM products WHERE id = %s", (pid,))
        rows = conn.execute("SELECT product_id, operation, version FROM product_changes ORDER BY id").fetchall()
    assert inserted > CLOCK_FLOOR and updated > inserted
    assert rows[:2] == [(pid, "insert", inserted), (pid, "update", updated)]
    assert [(r[0], r[1]) for r in rows[2:]] == [(pid, "delete")] and rows[2][2] > updated


def test_a_fresh_database_gets_the_golden_schema(fresh_database):
    """Any change to a table, function or trigger, on purpose or by a migration, is a visible
    diff of the golden file. Re-applying current.sql on every migrate also puts back a
    definition changed by hand."""
    assert migrations.migrate(fresh_database) == [name for name, _ in migrations.migration_files()]
    assert_matches_golden(fresh_database, may_update=True)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("CREATE OR REPLACE TRIGGER products_capture_update BEFORE UPDATE ON products "
                     "FOR EACH ROW EXECUTE FUNCTION products_capture_update()")
        conn.execute("ALTER FUNCTION products_capture_change() SECURITY INVOKER")
        conn.execute("ALTER TABLE products DISABLE TRIGGER products_capture_truncate")
    assert definitions(fresh_database) != golden_definitions()
    assert migrations.migrate(fresh_database) == []
    assert_matches_golden(fresh_database)
    assert_capture_works(fresh_database)


def as_before_the_baseline(url: str, applied: tuple[str, ...]) -> None:
    """Makes a migrated database's schema_migrations read as the files BASELINE replaces
    left it: `applied` listed, BASELINE not. Its tables are already theirs:
    golden/schema.out was written from a database those files migrated."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations")
        for name in applied:
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))


def applied_names(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}


def test_a_database_that_applied_every_replaced_file_keeps_its_rows_and_ends_as_a_fresh_install(stack, parts, fresh_database):
    """Such a database records the baseline without running it (its CREATE TABLEs would
    fail over the tables there), keeps its rows and pending changes, ends with the
    catalog of a fresh install, and captures as before. A change captured before rows
    had versions still ships, at its change id."""
    from pelican.outbox import ship_batch

    assert migrations.migrate(fresh_database) == [migrations.BASELINE]
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        a = conn.execute("INSERT INTO products (name, sku, price) VALUES ('Old A', 'OLD-A', 1), ('Old B', 'OLD-B', 2) "
                         "RETURNING id").fetchone()[0]
        conn.execute("DELETE FROM product_changes")
        unversioned = conn.execute("INSERT INTO product_changes (product_id, operation) VALUES (%s, 'update') "
                                   "RETURNING id", (a,)).fetchone()[0]
        conn.execute("UPDATE products SET version = 0 WHERE id = %s", (a,))
    as_before_the_baseline(fresh_database, migrations.BASELINE_REPLACES)

    assert migrations.migrate(fresh_database) == []
    assert applied_names(fresh_database) == {migrations.BASELINE, *migrations.BASELINE_REPLACES}
    assert_matches_golden(fresh_database)
    assert migrations.migrate(fresh_database) == [] and len(applied_names(fresh_database)) == len(migrations.BASELINE_REPLACES) + 1

    upgraded = db.connect(fresh_database, autocommit=True)
    try:
        assert {r["sku"] for r in upgraded.execute("SELECT sku FROM products")} == {"OLD-A", "OLD-B"}
        queue = stack.env()["SQS_QUEUE_URL"]
        ship_batch(upgraded, parts.sqs, queue, claim_limit=100, changes_per_message=10)
        assert {c["id"]: c["v"] for body in parts.drain_queue(queue) for c in body["changes"]} == {a: unversioned}
        upgraded.execute("UPDATE products SET price = 3 WHERE id = %s", (a,))
        assert upgraded.execute("SELECT version FROM products WHERE id = %s", (a,)).fetchone()["version"] > CLOCK_FLOOR
    finally:
        upgraded.close()
    assert_capture_works(fresh_database)


def test_a_database_that_applied_only_some_replaced_files_is_refused_unchanged(stack, fresh_database):
    """The baseline cannot run over the tables such a database holds, and the files that
    would finish it are gone: `pelican migrate` says which are missing and which
    version applies them, and changes nothing."""
    migrations.migrate(fresh_database)
    some = migrations.BASELINE_REPLACES[:9]
    as_before_the_baseline(fresh_database, some)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("ALTER TABLE products DROP CONSTRAINT products_sku_nfc")  # as before the SKU rule

    refused = subprocess.run([sys.executable, "-m", "pelican", "migrate"], env={**stack.app_env(), "DATABASE_URL": fresh_database},
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    missing = ", ".join(migrations.BASELINE_REPLACES[9:])
    assert f"not {missing}" in refused.stderr and migrations.BASELINE_PREDECESSOR in refused.stderr
    assert "nothing was applied" in refused.stderr
    assert applied_names(fresh_database) == set(some)
    with psycopg.connect(fresh_database) as conn:
        assert not conn.execute("SELECT 1 FROM pg_constraint WHERE conname = 'products_sku_nfc'").fetchone()


REFUSING_MIGRATION = """
DO $$
BEGIN
    RAISE WARNING '% product(s) checked', (SELECT count(*) FROM products);
    IF EXISTS (SELECT 1 FROM products WHERE sku LIKE 'BAD-%') THEN
        RAISE EXCEPTION 'products with a BAD- SKU: %', (SELECT string_agg(id::text, ', ') FROM products WHERE sku LIKE 'BAD-%')
            USING HINT = 'rename them, then run the migration again';
    END IF;
END;
$$;
"""


def test_a_migration_that_refuses_the_data_names_itself_and_applies_nothing(fresh_database, tmp_path, monkeypatch, caplog):
    """What the runner promises a one-time migration that checks the rows it finds: its
    RAISE WARNING reaches the operator's log, and its RAISE EXCEPTION (with the HINT)
    becomes MigrationRefused naming the file, with nothing of that run applied."""
    migrations.migrate(fresh_database)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        bad = conn.execute("INSERT INTO products (name, sku, price) VALUES ('x', 'BAD-1', 1) RETURNING id").fetchone()[0]
    schema = tmp_path / "schema"
    schema.mkdir()
    for name in (migrations.BASELINE, migrations.CURRENT_DEFINITIONS):
        (schema / name).write_text((resources.files("productsearch") / "schema" / name).read_text())
    (schema / "014_check_skus.sql").write_text(REFUSING_MIGRATION)
    monkeypatch.setattr(migrations, "_schema_dir", lambda: schema)

    with pytest.raises(migrations.MigrationRefused) as refused:
        migrations.migrate(fresh_database)
    assert str(refused.value) == (f"014_check_skus.sql: products with a BAD- SKU: {bad} "
                                  "(rename them, then run the migration again)")
    assert "014_check_skus.sql" not in applied_names(fresh_database)

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("UPDATE products SET sku = 'GOOD-1' WHERE id = %s", (bad,))
    caplog.clear()
    with caplog.at_level("WARNING", logger="productsearch.migrations"):
        assert migrations.migrate(fresh_database) == ["014_check_skus.sql"]
    assert [r.notice for r in caplog.records if r.getMessage() == "migration notice"] == ["1 product(s) checked"]
