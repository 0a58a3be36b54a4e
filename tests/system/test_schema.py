"""The migration and the catalog loader against a real PostgreSQL server."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from devstack.waiting import wait_until

pytestmark = pytest.mark.stack


@pytest.fixture
def fresh_database(stack):
    admin_url = stack.database_url.replace("/products?", "/postgres?")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS migration_check")
        admin.execute("CREATE DATABASE migration_check")
    yield stack.database_url.replace("/products?", "/migration_check?")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS migration_check WITH (FORCE)")


def test_migration_is_safe_twice_and_from_two_processes_at_once(stack, fresh_database):
    env = {**stack.app_env(), "DATABASE_URL": fresh_database}
    racers = [subprocess.Popen([sys.executable, "-m", "pelican", "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in racers]
    assert [p.returncode for p in racers] == [0, 0], outputs
    applied = sorted(out for out, _ in outputs)
    assert "applied now: nothing" in applied[1] and "001_products.sql" in applied[0], applied
    again = subprocess.run([sys.executable, "-m", "pelican", "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "applied now: nothing" in again.stdout
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == 1
        triggers = {r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'products'::regclass AND NOT tgisinternal")}
        assert {"products_capture_insert_delete", "products_capture_update", "products_capture_truncate"} <= triggers


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


def test_pelican_exits_cleanly_on_sigterm(parts, stack):
    name = "pelican-sigterm"
    stack.log_path(name).unlink(missing_ok=True)
    stack.start_app("pelican", {"PELICAN_POLL_INTERVAL_SECONDS": "1"}, instance=name)
    wait_until(lambda: "pelican started" in stack.log_path(name).read_text(), 60, what="pelican started")
    parts.insert_many(200, prefix="sigterm")
    assert stack.stop(name, signal.SIGTERM, timeout=30) == 0
    assert "pelican stopped" in stack.log_path(name).read_text()
